import { DmaDevice } from "@dmasim/dma";
import type { SgTable } from "@dmasim/scatterlist";
import { DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT } from "./constants.js";
import { dmaBufDeviceRead, dmaBufDeviceWrite } from "./device-access.js";
import { DmaBuf, DmaBufAttachment, dmaBufDetach, dmaBufDynamicAttach, dmaBufPin, dmaBufUnpin } from "./dma-buf.js";
import { DmaBufInputError } from "./errors.js";
import { DmaBufImportMap } from "./import-map.js";
import type { DmaBufPhysList, DmaBufPhysListDma } from "./phys-list.js";

/** How a `DmaBufImporter` attaches and maps: sg_table or physical ranges, P2P, revocable, pinned. */
export interface DmaBufImporterOptions {
  /** "sgt": the exporter's sg_table; "phys": the physical-range list, mapped by the importer itself. */
  readonly mapping?: "sgt" | "phys";
  /** importer_ops.allow_peer2peer (default true). */
  readonly allowPeer2peer?: boolean;
  /** Give an invalidate_mappings callback (default true): without one the importer is not revocable. */
  readonly revocable?: boolean;
  /**
   * Pin the buffer at first map and treat an invalidation as a permanent revoke (the pinned RDMA MR
   * pattern); default false (a faulting importer: unmap on invalidate, map again on the next access).
   */
  readonly pinned?: boolean;
  /** A broken importer that ignores invalidations (for the revoke checks); default false. */
  readonly ignoreInvalidate?: boolean;
}

/**
 * A dynamic importer in the shape of mlx5's dmabuf MR (umem_dmabuf.c): it maps on its device's first
 * access (under the reservation lock, then waits for the KERNEL fences as ib_umem_dmabuf_map_pages
 * does), and its invalidate_mappings callback zaps and unmaps synchronously, so the next access maps
 * again. Pinned, an invalidation is a revoke: later accesses get -EINVAL (umem_dmabuf's `revoked`).
 */
export class DmaBufImporter {
  /** The buffer imported. */
  readonly dmabuf: DmaBuf;
  /** The importing device. */
  readonly dev: DmaDevice;
  /** The importer's attachment to the buffer. */
  readonly attach: DmaBufAttachment;
  /** How it maps the buffer: the exporter's sg_table or the physical-range list. */
  readonly mapping: "sgt" | "phys";
  /** Pinned at first map; an invalidation then revokes it for good. */
  readonly pinned: boolean;
  /** invalidate_mappings callbacks received. */
  invalidations = 0;
  /** Times the buffer was mapped (first access and every re-map after an invalidation). */
  maps = 0;
  /** True once a pinned importer was invalidated: later accesses get -EINVAL. */
  revoked = false;
  /** The attachment's mapping (either type; the IOVA kept across invalidations when not pinned). */
  readonly importMap: DmaBufImportMap;
  #pinnedNow = false;
  readonly #ignore: boolean;

  /** Attaches; throws DmaBufInputError when the exporter refuses (the errno is in `.value`). Use `DmaBufImporter.attach` for the errno. */
  private constructor(dmabuf: DmaBuf, dev: DmaDevice, attach: DmaBufAttachment, options: DmaBufImporterOptions) {
    this.dmabuf = dmabuf;
    this.dev = dev;
    this.attach = attach;
    this.mapping = options.mapping ?? "sgt";
    this.pinned = options.pinned ?? false;
    this.#ignore = options.ignoreInvalidate ?? false;
    this.importMap = new DmaBufImportMap(attach, this.mapping);
  }

  /** dma_buf_dynamic_attach with this importer's ops: the importer, or the exporter's errno. */
  static attach(dmabuf: DmaBuf, dev: DmaDevice, options: DmaBufImporterOptions = {}): DmaBufImporter | number {
    if (!(dmabuf instanceof DmaBuf)) throw new DmaBufInputError("DmaBufImporter.attach", "dmabuf", dmabuf, "a DmaBuf");
    if (!(dev instanceof DmaDevice)) throw new DmaBufInputError("DmaBufImporter.attach", "dev", dev, "a DmaDevice");
    const box: { self?: DmaBufImporter } = {};
    const ops =
      options.revocable === false
        ? { allowPeer2peer: options.allowPeer2peer ?? true }
        : {
            allowPeer2peer: options.allowPeer2peer ?? true,
            invalidateMappings: () => {
              box.self?.onInvalidate();
            },
          };
    const a = dmaBufDynamicAttach(dmabuf, dev, ops);
    if (typeof a === "number") return a;
    box.self = new DmaBufImporter(dmabuf, dev, a, options);
    return box.self;
  }

  /** True while the buffer is mapped for the device. */
  get isMapped(): boolean {
    return this.importMap.mapped;
  }

  /** The current device mapping (for checks), if any. */
  get deviceMapping(): SgTable | DmaBufPhysListDma | undefined {
    return this.importMap.deviceMapping;
  }

  /** The physical ranges behind the current mapping (phys mapping type only). */
  get physList(): DmaBufPhysList | undefined {
    return this.importMap.physList;
  }

  /** The invalidate_mappings callback: runs with the reservation lock held. */
  private onInvalidate(): void {
    this.invalidations++;
    if (this.#ignore) return;
    this.#unmapLocked(!this.pinned);
    if (this.pinned) this.revoked = true;
  }

  /** Drops the mapping; `keepIova`: a physical-range mapping keeps its IOVA for the next map. */
  #unmapLocked(keepIova = false): void {
    this.importMap.unmapLocked(keepIova);
    if (this.#pinnedNow) {
      dmaBufUnpin(this.attach);
      this.#pinnedNow = false;
    }
  }

  /** ib_umem_dmabuf_map_pages: 0, or -EINVAL when revoked, the exporter's errno, -ETIMEDOUT. */
  ensureMapped(timeout: number = MAX_SCHEDULE_TIMEOUT): number {
    if (this.revoked) return -DmaBufErrno.EINVAL;
    const resv = this.dmabuf.resv;
    const err = resv.lock();
    if (err !== 0) return err;
    try {
      if (!this.isMapped) {
        if (this.pinned && !this.#pinnedNow) {
          const p = dmaBufPin(this.attach);
          if (p < 0) return p;
          this.#pinnedNow = true;
        }
        const m = this.importMap.mapLocked();
        if (m !== 0) return m;
        this.maps++;
      }
      // The exporter's move copy may still run: wait for the KERNEL fences before any DMA.
      if (resv.waitTimeout(DmaResvUsage.KERNEL, true, timeout) === 0) return -DmaBufErrno.ETIMEDOUT;
      return 0;
    } finally {
      resv.unlock();
    }
  }

  /** A device read of the buffer (mapping on demand): the bytes, or an errno. */
  read(offset: number, len: number): Uint8Array | number {
    const err = this.ensureMapped();
    if (err !== 0) return err;
    const m = this.deviceMapping;
    if (m === undefined) return -DmaBufErrno.ENODEV;
    const out = new Uint8Array(len);
    dmaBufDeviceRead(this.attach, m, offset, out);
    return out;
  }

  /** A device write into the buffer (mapping on demand): 0 or an errno. */
  write(offset: number, bytes: Uint8Array): number {
    const err = this.ensureMapped();
    if (err !== 0) return err;
    const m = this.deviceMapping;
    if (m === undefined) return -DmaBufErrno.ENODEV;
    dmaBufDeviceWrite(this.attach, m, offset, bytes);
    return 0;
  }

  /** Drops the mapping (under the lock). */
  unmap(): void {
    if (this.dmabuf.resv.lock() !== 0) return;
    try {
      this.#unmapLocked();
    } finally {
      this.dmabuf.resv.unlock();
    }
  }

  /** Unmaps and detaches. */
  close(): void {
    this.unmap();
    dmaBufDetach(this.dmabuf, this.attach);
  }
}
