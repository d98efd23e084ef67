import { DmaDevice } from "@dmasim/dma";
import { DmaBuf, DmaBufAttachment, DmaBufErrno, DmaBufImportMap, DmaResvUsage, MAX_SCHEDULE_TIMEOUT, dmaBufDetach, dmaBufDynamicAttach, dmaBufPin, dmaBufPut, dmaBufUnpin, getDmaBuf } from "@dmasim/dmabuf";
import type { DmaBufAttachOps, DmaBufPhysList, DmaBufPhysListDma } from "@dmasim/dmabuf";
import { PAGE_SIZE } from "@dmasim/memory";
import type { SgTable } from "@dmasim/scatterlist";
import { IB_ACCESS_WRITABLE, RdmaErrno } from "./constants.js";
import { kCreateUmemDmabuf } from "./dmabuf-internal.js";
import { RdmaInputError } from "./errors.js";

/**
 * How a dmabuf umem reaches the buffer: "sgt" — the exporter's sg_table (dma_buf_map_attachment), or
 * "phys" — the exporter's physical-range list, which the umem DMA-maps itself with the two-step API (one
 * IOVA, a link per range; on invalidation the links go and the IOVA stays for the next map).
 */
export type UmemDmabufMapping = "sgt" | "phys";

/**
 * How the umem was made: "dynamic" (ib_umem_dmabuf_get: mapped on demand, unmapped by the invalidate
 * callback), "pinned" (ib_umem_dmabuf_get_pinned: pinned and mapped for its whole life), "revocable"
 * (ib_umem_dmabuf_get_pinned_revocable_and_lock: pinned and mapped, and an invalidation revokes it for
 * good).
 */
export type UmemDmabufKind = "dynamic" | "pinned" | "revocable";

/** What the constructor of IbUmemDmabuf is given. */
interface UmemDmabufInit {
  readonly dev: DmaDevice;
  readonly dmabuf: DmaBuf;
  readonly attach: DmaBufAttachment;
  readonly address: number;
  readonly length: number;
  readonly access: number;
  readonly mapping: UmemDmabufMapping;
  readonly kind: UmemDmabufKind;
}

/**
 * struct ib_umem_dmabuf: a window [address, address + length) of a dma-buf (umem.address is the offset
 * into the buffer), its dynamic attachment, the current mapping (an sg_table or a physical-range list
 * and the umem's own DMA mapping of it), and the `pinned` / `revoked` bits.
 */
export class IbUmemDmabuf {
  /** The device the buffer is mapped for (the NIC's DMA device). */
  readonly dev: DmaDevice;
  /** The buffer (one reference held from get to release, as dma_buf_get / dma_buf_put). */
  readonly dmabuf: DmaBuf;
  /** The dynamic attachment (importer_priv is this umem). */
  readonly attach: DmaBufAttachment;
  /** umem.address: the byte offset of the window in the buffer. */
  readonly address: number;
  /** umem.length: bytes in the window. */
  readonly length: number;
  /** umem.writable: ib_access_writable(access). */
  readonly writable: boolean;
  /** The mapping type. */
  readonly mapping: UmemDmabufMapping;
  /** How the umem was made. */
  readonly kind: UmemDmabufKind;
  /** umem_dmabuf->pinned: dma_buf_pin is held. */
  pinned = false;
  /** umem_dmabuf->revoked: map_pages refuses with -EINVAL from now on. */
  revoked = false;
  /** umem_dmabuf->private: the driver's MR; cleared by the driver before release (mlx5_revoke_mr). */
  private: unknown = undefined;
  /** The pinned-revocable driver callback (ib_umem_dmabuf_set_revoke_locked). */
  revokeCb: ((priv: unknown) => void) | undefined = undefined;
  /** The argument the revoke callback is called with (the driver's MR). */
  revokePriv: unknown = undefined;
  /** Times map_pages made a new mapping (registration and every re-map after an invalidation). */
  maps = 0;
  /** True once released (detached, reference put). */
  released = false;
  /** umem_dmabuf->sgt generalised: the attachment's mapping of either type (the IOVA kept across invalidations). */
  readonly importMap: DmaBufImportMap;

  /** Made by ibUmemDmabufGet and its pinned variants. */
  static [kCreateUmemDmabuf](init: UmemDmabufInit): IbUmemDmabuf {
    return new IbUmemDmabuf(init);
  }

  private constructor(init: UmemDmabufInit) {
    this.dev = init.dev;
    this.dmabuf = init.dmabuf;
    this.attach = init.attach;
    this.address = init.address;
    this.length = init.length;
    this.writable = (init.access & IB_ACCESS_WRITABLE) !== 0;
    this.mapping = init.mapping;
    this.kind = init.kind;
    this.importMap = new DmaBufImportMap(init.attach, init.mapping);
  }

  /** ALIGN_DOWN(address, PAGE_SIZE): the buffer offset of the first page. */
  get start(): number {
    return Math.floor(this.address / PAGE_SIZE) * PAGE_SIZE;
  }

  /** ALIGN(address + length, PAGE_SIZE). */
  get end(): number {
    return Math.ceil((this.address + this.length) / PAGE_SIZE) * PAGE_SIZE;
  }

  /** ib_umem_num_pages. */
  get npages(): number {
    return (this.end - this.start) / PAGE_SIZE;
  }

  /** umem_dmabuf->sgt != NULL: the buffer is mapped for the device now. */
  get mapped(): boolean {
    return this.importMap.mapped;
  }

  /** The current sg_table ("sgt" mapping), if mapped. */
  get sgt(): SgTable | undefined {
    return this.importMap.sgt;
  }

  /** The current physical-range list ("phys" mapping), if mapped. */
  get physList(): DmaBufPhysList | undefined {
    return this.importMap.physList;
  }

  /** The umem's own DMA mapping of that list (its IOVA, bus addresses), if mapped. */
  get physDma(): DmaBufPhysListDma | undefined {
    return this.importMap.physDma;
  }

  /** True while an unlinked IOVA is kept for the next map ("phys" mapping only). */
  get keptIova(): boolean {
    return this.importMap.keptIova;
  }
}

/** What a dmabuf umem is made with besides the buffer window. */
export interface UmemDmabufOptions {
  /** The mapping type (default "sgt"). */
  readonly mapping?: UmemDmabufMapping;
}

function checkUmem(fn: string, u: unknown): asserts u is IbUmemDmabuf {
  if (!(u instanceof IbUmemDmabuf) || u.released) throw new RdmaInputError(fn, "umem_dmabuf", u, "a live IbUmemDmabuf");
}

/**
 * ib_umem_dmabuf_get_with_dma_device, with the ops the caller gives: -EINVAL when offset + size overflows,
 * runs past the buffer or covers no page; dma_buf_get (a reference), then dma_buf_dynamic_attach (the
 * exporter's errno is returned and the reference dropped).
 */
function umemDmabufGet(fn: string, dev: DmaDevice, dmabuf: DmaBuf, offset: number, size: number, access: number, ops: DmaBufAttachOps, options: UmemDmabufOptions, kind: UmemDmabufKind, bind: (u: IbUmemDmabuf) => void): IbUmemDmabuf | number {
  if (!(dev instanceof DmaDevice)) throw new RdmaInputError(fn, "dev", dev, "a DmaDevice");
  if (!(dmabuf instanceof DmaBuf) || dmabuf.released) throw new RdmaInputError(fn, "dmabuf", dmabuf, "a live DmaBuf (dma_buf_get of a closed fd)");
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RdmaInputError(fn, "offset", offset, "a byte offset into the buffer: a safe integer >= 0");
  if (!Number.isSafeInteger(size) || size < 0) throw new RdmaInputError(fn, "size", size, "a byte count: a safe integer >= 0");
  const mapping: unknown = options.mapping ?? "sgt";
  if (mapping !== "sgt" && mapping !== "phys") throw new RdmaInputError(fn, "options.mapping", mapping, '"sgt" or "phys"');
  const end = offset + size;
  if (!Number.isSafeInteger(end) || dmabuf.size < end || size === 0) return -RdmaErrno.EINVAL;
  getDmaBuf(dmabuf);
  const box: { umem?: IbUmemDmabuf } = {};
  const attach = dmaBufDynamicAttach(dmabuf, dev, ops, box);
  if (typeof attach === "number") {
    dmaBufPut(dmabuf);
    return attach;
  }
  const umem = IbUmemDmabuf[kCreateUmemDmabuf]({ dev, dmabuf, attach, address: offset, length: size, access, mapping, kind });
  box.umem = umem;
  bind(umem);
  return umem;
}

/**
 * ib_umem_dmabuf_get: a dynamic umem whose attachment calls `invalidate(umem)` (with the reservation
 * lock held) when the exporter moves or revokes the buffer. Nothing is mapped yet. Returns the umem or
 * -EINVAL (bad window, or no callback: a dynamic importer must follow moves), or the exporter's errno.
 */
export function ibUmemDmabufGet(dev: DmaDevice, dmabuf: DmaBuf, offset: number, size: number, access: number, invalidate: (umem: IbUmemDmabuf) => void, options: UmemDmabufOptions = {}): IbUmemDmabuf | number {
  const fn = "ib_umem_dmabuf_get";
  if (typeof invalidate !== "function") return -RdmaErrno.EINVAL;
  const box: { umem?: IbUmemDmabuf } = {};
  const ops: DmaBufAttachOps = {
    allowPeer2peer: true,
    invalidateMappings: () => {
      if (box.umem !== undefined) invalidate(box.umem);
    },
  };
  return umemDmabufGet(fn, dev, dmabuf, offset, size, access, ops, options, "dynamic", (u) => {
    box.umem = u;
  });
}

/** Releases a umem whose registration failed part way (resv not held). */
function abandon(umem: IbUmemDmabuf): void {
  ibUmemDmabufRelease(umem);
}

/**
 * The pin-and-map step of both pinned variants, with the reservation lock held: dma_buf_pin, pinned = 1,
 * map_pages (which waits for KERNEL fences). 0 or -errno, undone on failure.
 */
function pinAndMapLocked(umem: IbUmemDmabuf): number {
  const p = dmaBufPin(umem.attach);
  if (p < 0) return p;
  umem.pinned = true;
  const err = ibUmemDmabufMapPages(umem);
  if (err < 0) {
    dmaBufUnpin(umem.attach);
    umem.pinned = false;
  }
  return err;
}

/**
 * ib_umem_dmabuf_get_pinned: attach with the pinned ops (7.1: no invalidate callback at all, so the
 * exporter sees an importer it cannot revoke; 6.19: a stub that only warns), pin (the buffer never moves:
 * a migration is refused with -EBUSY) and map. Returns the mapped umem or -errno (the exporter's attach,
 * pin or map error).
 */
export function ibUmemDmabufGetPinned(dev: DmaDevice, dmabuf: DmaBuf, offset: number, size: number, access: number, options: UmemDmabufOptions = {}): IbUmemDmabuf | number {
  const fn = "ib_umem_dmabuf_get_pinned";
  const ops: DmaBufAttachOps =
    dmabuf instanceof DmaBuf && dmabuf.system.version === "6.19"
      ? {
          allowPeer2peer: true,
          // ib_umem_dmabuf_unsupported_move_notify: "Invalidate callback should not be called when memory is pinned".
          moveNotify: () => undefined,
        }
      : { allowPeer2peer: true };
  const umem = umemDmabufGet(fn, dev, dmabuf, offset, size, access, ops, options, "pinned", () => undefined);
  if (typeof umem === "number") return umem;
  const resv = dmabuf.resv;
  const l = resv.lock();
  if (l !== 0) {
    abandon(umem);
    return l;
  }
  let err: number;
  try {
    err = pinAndMapLocked(umem);
  } finally {
    resv.unlock();
  }
  if (err < 0) {
    abandon(umem);
    return err;
  }
  return umem;
}

/**
 * ib_umem_dmabuf_get_pinned_revocable_and_lock (rdma tree, 2026): attach with a working invalidate
 * callback (so dma_buf_attach_revocable is true and VFIO accepts it), pin and map, and return with the
 * reservation lock HELD, so the driver can create its MR and install its revoke callback
 * (ibUmemDmabufSetRevokeLocked) before any revoke can run. On invalidation the umem is revoked: the
 * driver's callback stops the hardware, then the pages are unmapped and unpinned, and `revoked` is set.
 */
export function ibUmemDmabufGetPinnedRevocableAndLock(dev: DmaDevice, dmabuf: DmaBuf, offset: number, size: number, access: number, options: UmemDmabufOptions = {}): IbUmemDmabuf | number {
  const fn = "ib_umem_dmabuf_get_pinned_revocable_and_lock";
  const box: { umem?: IbUmemDmabuf } = {};
  const ops: DmaBufAttachOps = {
    allowPeer2peer: true,
    invalidateMappings: () => {
      if (box.umem !== undefined) ibUmemDmabufRevokeLocked(box.umem);
    },
  };
  const umem = umemDmabufGet(fn, dev, dmabuf, offset, size, access, ops, options, "revocable", (u) => {
    box.umem = u;
  });
  if (typeof umem === "number") return umem;
  const resv = dmabuf.resv;
  const l = resv.lock();
  if (l !== 0) {
    abandon(umem);
    return l;
  }
  const err = pinAndMapLocked(umem);
  if (err < 0) {
    resv.unlock();
    abandon(umem);
    return err;
  }
  return umem;
}

/** ib_umem_dmabuf_set_revoke_locked: the driver's revoke callback (reservation lock held). */
export function ibUmemDmabufSetRevokeLocked(umem: IbUmemDmabuf, cb: (priv: unknown) => void, priv: unknown): void {
  const fn = "ib_umem_dmabuf_set_revoke_locked";
  checkUmem(fn, umem);
  if (typeof cb !== "function") throw new RdmaInputError(fn, "cb", cb, "a function");
  umem.dmabuf.resv.assertHeld(fn, umem.dev.bdf);
  umem.revokeCb = cb;
  umem.revokePriv = priv;
}

/**
 * ib_umem_dmabuf_map_pages (reservation lock held): -EINVAL once revoked; maps the buffer when it is not
 * mapped (the exporter's errno, e.g. -ENODEV for a revoked VFIO buffer), then ALWAYS waits for the KERNEL
 * fences — the exporter's move copy may still be running — before the caller may program the device:
 * -ETIMEDOUT when the wait times out. 0 on success.
 */
export function ibUmemDmabufMapPages(umem: IbUmemDmabuf, timeout: number = MAX_SCHEDULE_TIMEOUT): number {
  const fn = "ib_umem_dmabuf_map_pages";
  checkUmem(fn, umem);
  const resv = umem.dmabuf.resv;
  resv.assertHeld(fn, umem.dev.bdf);
  if (umem.revoked) return -RdmaErrno.EINVAL;
  if (!umem.mapped) {
    const err = umem.importMap.mapLocked();
    if (err < 0) return err;
    umem.maps++;
  }
  if (resv.waitTimeout(DmaResvUsage.KERNEL, false, timeout) === 0) return -DmaBufErrno.ETIMEDOUT;
  return 0;
}

/** ib_umem_dmabuf_unmap_pages (reservation lock held): gives the mapping back; nothing when not mapped. */
export function ibUmemDmabufUnmapPages(umem: IbUmemDmabuf): void {
  const fn = "ib_umem_dmabuf_unmap_pages";
  checkUmem(fn, umem);
  umem.dmabuf.resv.assertHeld(fn, umem.dev.bdf);
  umem.importMap.unmapLocked(true);
}

/**
 * The revoke step (reservation lock held): once only — the driver's revoke callback (it must stop the
 * hardware before it returns), unmap, unpin, revoked = 1.
 */
export function ibUmemDmabufRevokeLocked(umem: IbUmemDmabuf): void {
  if (umem.revoked) return;
  umem.revokeCb?.(umem.revokePriv);
  umem.importMap.unmapLocked(true);
  if (umem.pinned) {
    dmaBufUnpin(umem.attach);
    umem.pinned = false;
  }
  umem.revoked = true;
}

/** ib_umem_dmabuf_revoke: takes the reservation lock around the revoke step. 0 or -EDEADLK. */
export function ibUmemDmabufRevoke(umem: IbUmemDmabuf): number {
  checkUmem("ib_umem_dmabuf_revoke", umem);
  const resv = umem.dmabuf.resv;
  const l = resv.lock();
  if (l !== 0) return l;
  try {
    ibUmemDmabufRevokeLocked(umem);
  } finally {
    resv.unlock();
  }
  return 0;
}

/**
 * ib_umem_dmabuf_release: revoke (unmap, unpin), give back an IOVA the physical-range mapping kept,
 * dma_buf_detach, dma_buf_put.
 */
export function ibUmemDmabufRelease(umem: IbUmemDmabuf): void {
  checkUmem("ib_umem_dmabuf_release", umem);
  ibUmemDmabufRevoke(umem);
  umem.importMap.freeKeptIova();
  dmaBufDetach(umem.dmabuf, umem.attach);
  dmaBufPut(umem.dmabuf);
  umem.released = true;
}

/**
 * The DMA address of every page of the umem's window, from the current mapping (the driver's
 * rdma_umem_for_each_dma_block after ib_umem_find_best_pgsz at PAGE_SIZE): 0, or -EINVAL when the
 * umem is not mapped or a page does not sit whole and aligned in one DMA segment (no usable page size).
 */
export function ibUmemDmabufDmaBlocks(umem: IbUmemDmabuf, out: Float64Array): number {
  const m = umem.importMap;
  const nseg = m.nrSegments;
  const addrs = m.segmentDmaAddr;
  const lens = m.segmentDmaLen;
  if (!m.mapped || addrs === undefined || lens === undefined) return -RdmaErrno.EINVAL;
  const start = umem.start;
  const n = umem.npages;
  let j = 0;
  let cur = 0;
  for (let s = 0; s < nseg && j < n; s++) {
    const addr = addrs[s] ?? 0;
    const segEnd = cur + (lens[s] ?? 0);
    for (let pos = start + j * PAGE_SIZE; j < n && pos < segEnd; pos += PAGE_SIZE) {
      if (pos < cur || pos + PAGE_SIZE > segEnd) return -RdmaErrno.EINVAL;
      const a = addr + (pos - cur);
      if (a % PAGE_SIZE !== 0) return -RdmaErrno.EINVAL;
      out[j++] = a;
    }
    cur = segEnd;
  }
  return j === n ? 0 : -RdmaErrno.EINVAL;
}

/**
 * The dma-buf rule checks of one device access through the umem's mapping (the NIC reads its MTT, not
 * the sg_table, so the core cannot see it): a mapping must be live ("dma-after-unmap") and every KERNEL
 * fence signalled ("dma-before-kernel-fence"); the access is also the first DMA after any pending
 * invalidation in the buffer's log.
 */
export function ibUmemDmabufDeviceAccess(umem: IbUmemDmabuf): void {
  const sys = umem.dmabuf.system;
  const debug = sys.debug;
  if (debug.enabled) {
    if (!umem.mapped) {
      debug.report("dma-after-unmap", umem.dev.bdf, `an RDMA access through an MR of "${umem.dmabuf.expName}" whose mapping was unmapped: the MTT still held a stale address`);
    } else if (!umem.dmabuf.resv.testSignaled(DmaResvUsage.KERNEL)) {
      debug.report("dma-before-kernel-fence", umem.dev.bdf, `an RDMA access through an MR of "${umem.dmabuf.expName}" before its KERNEL fence signalled`);
    }
  }
  sys.invalidations.deviceAccess();
}
