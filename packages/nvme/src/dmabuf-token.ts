import { DmaDirection } from "@dmasim/dma";
import { DmaBuf, DmaBufImportMap, DmaBufPhysListDma, DmaResvUsage, MAX_SCHEDULE_TIMEOUT, dmaBufDetach, dmaBufDynamicAttach } from "@dmasim/dmabuf";
import type { DmaBufAttachment, DmaBufPhysList } from "@dmasim/dmabuf";
import type { SgTable } from "@dmasim/scatterlist";
import { pickErrno } from "@dmasim/trace";
import { NvmeInputError } from "./errors.js";
import { kCreateDmabufMap, kGetMap, kPutMap } from "./internal.js";
import { NVME_CTRL_PAGE_SIZE } from "./nvme-defs.js";
import { NvmeDriver } from "./driver.js";

/** The errnos a dma-buf token returns (negated), as nvme_create_dmabuf_token and the map path do. */
export const NvmeDmabufErrno = pickErrno("EINVAL", "ETIME", "ENODEV", "EDEADLK");

/** How the drive maps a registered dma-buf: the exporter's sg_table, or the physical-range list it maps itself. */
export type NvmeDmabufMapping = "sgt" | "phys";

/** Options of `NvmeDmabufToken.create`. */
export interface NvmeDmabufTokenOptions {
  /** "sgt" (default): dma_buf_map_attachment, as the series does; "phys": the physical-range list mapped with the two-step API. */
  readonly mapping?: NvmeDmabufMapping;
  /** The direction the buffer is mapped for (token->dir); default BIDIRECTIONAL (reads and writes). */
  readonly dir?: DmaDirection;
}

/**
 * struct nvme_dmabuf_map (with io_dmabuf_map): one mapping of the buffer for the drive — the sg_table or
 * the range list and its DMA mapping — and `dmaList`, the DMA address of every controller page of the
 * buffer, from which requests build their PRPs. Requests in flight hold a reference.
 */
export class NvmeDmabufMap {
  /** dma_list: the DMA address of each 4 KiB controller page of the buffer, in buffer order. */
  readonly dmaList: Float64Array;
  /** The exporter's sg_table (mapping "sgt"). */
  readonly sgt: SgTable | undefined;
  /** The range list and the drive's own DMA mapping of it (mapping "phys"). */
  readonly phys: { readonly list: DmaBufPhysList; readonly dma: DmaBufPhysListDma } | undefined;
  /** Requests in flight that use this mapping. */
  refs = 0;
  /** False once invalidated: no new request takes it. */
  live = true;
  /** True once unmapped: the drive must not reach the addresses of `dmaList` any more. */
  unmapped = false;

  /** Made by the token's map path. */
  static [kCreateDmabufMap](dmaList: Float64Array, sgt: SgTable | undefined, phys: { readonly list: DmaBufPhysList; readonly dma: DmaBufPhysListDma } | undefined): NvmeDmabufMap {
    return new NvmeDmabufMap(dmaList, sgt, phys);
  }

  private constructor(dmaList: Float64Array, sgt: SgTable | undefined, phys: { readonly list: DmaBufPhysList; readonly dma: DmaBufPhysListDma } | undefined) {
    this.dmaList = dmaList;
    this.sgt = sgt;
    this.phys = phys;
  }
}

/**
 * A dma-buf registered with the NVMe drive for I/O — io_dmabuf_token with nvme-pci's dev_priv, as the
 * 2026 "dmabuf read/write via io_uring" series adds them (nvme_create_dmabuf_token,
 * nvme_dmabuf_token_map/unmap/release, io_dmabuf_token_invalidate_mappings). The drive is a dynamic
 * importer that allows P2P: a GPU's VRAM is reached by bus address below a shared switch and through an
 * IOVA mapped with DMA_ATTR_MMIO across the host bridge. The mapping is made on the first request after
 * registration or after an invalidation, once every fence of the buffer (a move's copy) has signalled;
 * requests take a reference on it. An invalidation (the exporter moving or revoking the buffer) detaches
 * the mapping from the token, the commands still using it finish, and it is unmapped; the next request
 * maps the new backing.
 */
export class NvmeDmabufToken {
  /** The registered buffer. */
  readonly dmabuf: DmaBuf;
  /** The driver (and drive) the buffer is registered with. */
  readonly driver: NvmeDriver;
  /** The drive's dynamic attachment (importer ops: invalidate_mappings, allow_peer2peer). */
  readonly attach: DmaBufAttachment;
  /** How the buffer is mapped. */
  readonly mapping: NvmeDmabufMapping;
  /** token->dir. */
  readonly dir: DmaDirection;
  /**
   * What the token did: maps made, unmaps, invalidations received, commands the controller finished
   * inside an invalidation (they used the old mapping), map failures and the last errno.
   */
  readonly stats = { maps: 0, unmaps: 0, invalidations: 0, drainedCommands: 0, mapErrors: 0, lastError: 0 };
  /** The attachment's mapping (either type, in `dir`); no IOVA is kept across invalidations. */
  readonly importMap: DmaBufImportMap;
  #map: NvmeDmabufMap | undefined;
  #released = false;

  private constructor(dmabuf: DmaBuf, driver: NvmeDriver, attach: DmaBufAttachment, mapping: NvmeDmabufMapping, dir: DmaDirection) {
    this.dmabuf = dmabuf;
    this.driver = driver;
    this.attach = attach;
    this.mapping = mapping;
    this.dir = dir;
    this.importMap = new DmaBufImportMap(attach, mapping, dir);
  }

  /**
   * nvme_create_dmabuf_token: the buffer's size must be a multiple of the controller page (-EINVAL);
   * dma_buf_dynamic_attach with the drive's importer ops (its errno when the exporter refuses: VFIO
   * -EOPNOTSUPP for an importer that is not revocable, -ENODEV for a revoked buffer). Nothing is mapped
   * yet. Bad arguments throw NvmeInputError before anything changes.
   */
  static create(driver: NvmeDriver, dmabuf: DmaBuf, options: NvmeDmabufTokenOptions = {}): NvmeDmabufToken | number {
    const fn = "nvme_create_dmabuf_token";
    if (!(driver instanceof NvmeDriver)) throw new NvmeInputError(fn, "driver", driver, "an NvmeDriver");
    if (!(dmabuf instanceof DmaBuf)) throw new NvmeInputError(fn, "dmabuf", dmabuf, "a DmaBuf");
    if ((options as unknown) === null || typeof (options as unknown) !== "object") throw new NvmeInputError(fn, "options", options, "an object { mapping?, dir? }");
    const mapping = options.mapping ?? "sgt";
    if ((mapping as string) !== "sgt" && (mapping as string) !== "phys") throw new NvmeInputError(fn, "options.mapping", mapping, '"sgt" or "phys"');
    const dir = options.dir ?? DmaDirection.BIDIRECTIONAL;
    if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) throw new NvmeInputError(fn, "options.dir", dir, "a DmaDirection other than NONE");
    if (dmabuf.size % NVME_CTRL_PAGE_SIZE !== 0) return -NvmeDmabufErrno.EINVAL;
    const box: { token?: NvmeDmabufToken } = {};
    const attach = dmaBufDynamicAttach(dmabuf, driver.dev, {
      allowPeer2peer: true,
      invalidateMappings: () => {
        box.token?.invalidateMappings();
      },
    });
    if (typeof attach === "number") return attach;
    box.token = new NvmeDmabufToken(dmabuf, driver, attach, mapping, dir);
    return box.token;
  }

  /** The token's current mapping, if any (for checks). */
  get currentMap(): NvmeDmabufMap | undefined {
    return this.#map;
  }

  /** True once released: no request may use it. */
  get released(): boolean {
    return this.#released;
  }

  /**
   * blk_rq_assign_dma_map (the driver's, through its package-private key): the live mapping with a reference taken for a request, or a new one
   * (blk_mq_create_dma_map: under the reservation lock, wait for every fence (BOOKKEEP) — a move's copy
   * among them — then nvme_dmabuf_token_map). A negative errno when the exporter refuses (-ENODEV for a
   * revoked VFIO buffer), -EDEADLK when the lock is held, -ETIME when a fence never signals.
   */
  [kGetMap](): NvmeDmabufMap | number {
    let map = this.#map;
    if (map === undefined) {
      const m = this.#createMap();
      if (typeof m === "number") {
        this.stats.mapErrors++;
        this.stats.lastError = m;
        return m;
      }
      map = m;
      this.#map = map;
    }
    map.refs++;
    return map;
  }

  /** blk_rq_drop_dma_map: a request that held `map` completed (or was not submitted). */
  [kPutMap](map: NvmeDmabufMap): void {
    map.refs--;
  }

  #createMap(): NvmeDmabufMap | number {
    const resv = this.dmabuf.resv;
    const err = resv.lock();
    if (err !== 0) return err;
    try {
      if (resv.waitTimeout(DmaResvUsage.BOOKKEEP, true, MAX_SCHEDULE_TIMEOUT) === 0) return -NvmeDmabufErrno.ETIME;
      return this.#tokenMap();
    } finally {
      resv.unlock();
    }
  }

  /**
   * nvme_dmabuf_token_map (resv held): map the buffer and list the DMA address of every controller page.
   * A DMA segment that is not a whole number of controller pages cannot be described by PRPs: -EINVAL.
   */
  #tokenMap(): NvmeDmabufMap | number {
    const P = NVME_CTRL_PAGE_SIZE;
    const dmaList = new Float64Array(this.dmabuf.size / P);
    let n = 0;
    const fill = (addr: number, len: number): boolean => {
      if (len % P !== 0 || addr % P !== 0) return false;
      for (let off = 0; off < len && n < dmaList.length; off += P) dmaList[n++] = addr + off;
      return true;
    };
    const im = this.importMap;
    const err = im.mapLocked();
    if (err !== 0) return err;
    const addrs = im.segmentDmaAddr;
    const lens = im.segmentDmaLen;
    for (let i = 0; i < im.nrSegments; i++) {
      if (!fill(addrs?.[i] ?? 0, lens?.[i] ?? 0)) {
        im.unmapLocked(false);
        return -NvmeDmabufErrno.EINVAL;
      }
    }
    this.stats.maps++;
    const list = im.physList;
    const dma = im.physDma;
    return NvmeDmabufMap[kCreateDmabufMap](dmaList, im.sgt, list !== undefined && dma !== undefined ? { list, dma } : undefined);
  }

  /** nvme_dmabuf_token_unmap (resv held). */
  #tokenUnmap(map: NvmeDmabufMap): void {
    if (map.unmapped) return;
    // The token's one mapping at a time: the map being dropped is the import map's current one.
    this.importMap.unmapLocked(false);
    map.unmapped = true;
    this.stats.unmaps++;
  }

  /**
   * The importer's invalidate_mappings callback (nvme_dmabuf_invalidate_mappings →
   * io_dmabuf_token_invalidate_mappings), resv held: the token lets go of its mapping, so the next
   * request maps again. Commands still using the mapping must finish before the exporter moves the
   * memory: the series adds the mapping's fence (KERNEL usage) to the reservation, signalled when the
   * last such request completes, and the exporter's copy waits for it. dmasim's fences are scheduled when
   * they are made, so the wait is done here instead: the controller executes the commands it was given
   * (their completions wait in the completion queue for the next poll), and the mapping is unmapped at
   * once — nothing can use it any more, and the exporter sees no mapping left.
   */
  private invalidateMappings(): void {
    this.stats.invalidations++;
    const map = this.#map;
    if (map === undefined) return;
    this.#map = undefined;
    map.live = false;
    if (map.refs > 0) this.stats.drainedCommands += this.driver.controller.service(1);
    this.#tokenUnmap(map);
  }

  /**
   * nvme_dmabuf_token_release (io_dmabuf token put): commands still using the buffer finish, the
   * mapping is dropped and the drive detaches. Returns 0, or -EDEADLK when the reservation lock is held
   * (nothing changes then).
   */
  release(): number {
    if (this.#released) return 0;
    const resv = this.dmabuf.resv;
    const err = resv.lock();
    if (err !== 0) return err;
    try {
      const map = this.#map;
      if (map !== undefined) {
        this.#map = undefined;
        map.live = false;
        if (map.refs > 0) this.stats.drainedCommands += this.driver.controller.service(1);
        this.#tokenUnmap(map);
      }
    } finally {
      resv.unlock();
    }
    dmaBufDetach(this.dmabuf, this.attach);
    this.#released = true;
    return 0;
  }
}
