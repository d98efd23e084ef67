import { emitDmaBuf } from "./events.js";
import { DmaDevice, DmaDirection } from "@dmasim/dma";
import type { InvalidationRecord } from "@dmasim/hmm-odp";
import { SgTable } from "@dmasim/scatterlist";
import { DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT } from "./constants.js";
import { DmaBufCounter } from "./counters.js";
import { DmaBufInputError, DmaBufStateError } from "./errors.js";
import { DmaBufPhysList } from "./phys-list.js";
import { DmaResv } from "./resv.js";
import { DmaBufSystem } from "./system.js";
import { kAddAttachment, kAwaitQuiesce, kCreate, kDead, kDmaMappings, kGet, kInvalidateCallback, kMarkDetached, kNextInode, kPut, kRecords, kRemoveAttachment, kSetInInvalidate, kUnmappedAfter } from "./internal.js";

/**
 * struct dma_buf_ops: the exporter's side. `mapDmaBuf` / `unmapDmaBuf` hand out an sg_table (upstream's
 * only mapping type); `mapPhysList` / `unmapPhysList` hand out dmasim's physical-range list (the PAL type
 * of the 2026 mapping-type series, offered here to any importer). An exporter offers at least one pair.
 * Errors are negative errnos, as ERR_PTR would carry them.
 */
export interface DmaBufOps {
  /** attach: the exporter checks a new importer device (P2P reachability); returns 0 or -errno. */
  attach?: (dmabuf: DmaBuf, attach: DmaBufAttachment) => number;
  /** detach: the exporter forgets an importer. */
  detach?: (dmabuf: DmaBuf, attach: DmaBufAttachment) => void;
  /** pin: keep the buffer where it is until unpin (no move_notify meanwhile); 0 or -errno. */
  pin?: (attach: DmaBufAttachment) => number;
  /** unpin: the buffer may move again. */
  unpin?: (attach: DmaBufAttachment) => void;
  /** map_dma_buf: an sg_table DMA-mapped for the importer's device, or -errno. */
  mapDmaBuf?: (attach: DmaBufAttachment, dir: DmaDirection) => SgTable | number;
  /** unmap_dma_buf: undoes mapDmaBuf. */
  unmapDmaBuf?: (attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection) => void;
  /** The physical-address form of map_dma_buf: the buffer's ranges, not yet DMA-mapped, or -errno. */
  mapPhysList?: (attach: DmaBufAttachment) => DmaBufPhysList | number;
  /** Undoes mapPhysList. */
  unmapPhysList?: (attach: DmaBufAttachment, list: DmaBufPhysList) => void;
  /** release: the last reference is gone; the exporter frees the buffer. */
  release?: (dmabuf: DmaBuf) => void;
}

/** struct dma_buf_export_info. */
export interface DmaBufExportInfo {
  /** exp_name: the exporter's name, for messages. */
  readonly expName: string;
  /** Bytes in the buffer. */
  readonly size: number;
  /** The exporter's callbacks. */
  readonly ops: DmaBufOps;
  /** The exporter's private data (mandatory, as upstream). */
  readonly priv: unknown;
  /** A reservation object to share (absent: the buffer gets its own). */
  readonly resv?: DmaResv;
}

/**
 * struct dma_buf_attach_ops: the importer's side. 7.1 names the callback `invalidateMappings`;
 * `moveNotify` is the name up to 7.0 and is accepted as the same callback. Both are optional since 7.1
 * ("Make .invalidate_mapping() truly optional"); without one the importer cannot be revoked.
 */
export interface DmaBufAttachOps {
  /** allow_peer2peer: the importer can take P2P (BAR) addresses. */
  readonly allowPeer2peer: boolean;
  /** invalidate_mappings (7.1): the buffer moves or is revoked; drop every mapping and re-map later. */
  invalidateMappings?: (attach: DmaBufAttachment) => void;
  /** move_notify: the name of invalidateMappings up to 7.0, accepted as the same callback. */
  moveNotify?: (attach: DmaBufAttachment) => void;
}

/** What the core knows about one mapping an importer holds. */
interface MappingRecord {
  readonly kind: "sgt" | "phys";
  readonly dir: DmaDirection;
  readonly pinnedByMap: boolean;
  /** invalidate_mappings ran after this mapping was made: only speculative reads until unmap. */
  invalidated: InvalidationRecord | undefined;
}

/** struct dma_buf. */
export class DmaBuf {
  /** The host the buffer lives on. */
  readonly system: DmaBufSystem;
  /** Bytes in the buffer. */
  readonly size: number;
  /** The exporter's callbacks. */
  readonly ops: DmaBufOps;
  /** The exporter's private data. */
  readonly priv: unknown;
  /** The reservation object: its lock serialises mapping and moves, its fences order access. */
  readonly resv: DmaResv;
  /** exp_name: the exporter's name, for messages. */
  readonly expName: string;
  /** A unique number of the buffer, as its inode number in the kernel. */
  readonly inode: number;
  readonly #attachments: DmaBufAttachment[] = [];
  #refs = 1;
  #released = false;
  /** The invalidation records whose mappings are not all unmapped yet. */
  readonly #pendingQuiesce = new Map<InvalidationRecord, number>();

  /** Made by dmaBufExport. */
  static [kCreate](system: DmaBufSystem, info: DmaBufExportInfo): DmaBuf {
    return new DmaBuf(system, info);
  }

  private constructor(system: DmaBufSystem, info: DmaBufExportInfo) {
    this.system = system;
    this.size = info.size;
    this.ops = info.ops;
    this.priv = info.priv;
    this.expName = info.expName;
    this.resv = info.resv ?? new DmaResv(system.trace, system.debug);
    this.inode = system[kNextInode]();
  }

  /** The importers attached now. */
  get attachments(): readonly DmaBufAttachment[] {
    return this.#attachments;
  }

  /** References to the buffer (the file's refcount). */
  get refs(): number {
    return this.#refs;
  }

  /** True once the last reference was dropped and release ran. */
  get released(): boolean {
    return this.#released;
  }

  /** The core adds an importer (dma_buf_attach). */
  [kAddAttachment](a: DmaBufAttachment): void {
    this.#attachments.push(a);
  }

  /** The core removes an importer (dma_buf_detach). */
  [kRemoveAttachment](a: DmaBufAttachment): void {
    const i = this.#attachments.indexOf(a);
    if (i >= 0) this.#attachments.splice(i, 1);
  }

  /** get_dma_buf's reference. */
  [kGet](): void {
    this.#refs++;
  }

  /** dma_buf_put's reference drop: true when it was the last. */
  [kPut](): boolean {
    this.#refs--;
    if (this.#refs > 0) return false;
    this.#released = true;
    return true;
  }

  /** An invalidation waits for `n` mappings to be unmapped before it is quiesced. */
  [kAwaitQuiesce](r: InvalidationRecord, n: number): void {
    if (n === 0) this.system.invalidations.quiesced(r);
    else this.#pendingQuiesce.set(r, n);
  }

  /** One mapping invalidated by `r` was unmapped. */
  [kUnmappedAfter](r: InvalidationRecord): void {
    const n = this.#pendingQuiesce.get(r);
    if (n === undefined) return;
    if (n <= 1) {
      this.#pendingQuiesce.delete(r);
      this.system.invalidations.quiesced(r);
    } else {
      this.#pendingQuiesce.set(r, n - 1);
    }
  }
}

/** struct dma_buf_attachment. */
export class DmaBufAttachment {
  /** The buffer attached to. */
  readonly dmabuf: DmaBuf;
  /** The importer's device. */
  readonly dev: DmaDevice;
  /** importer_ops->allow_peer2peer; false for a static importer. */
  readonly peer2peer: boolean;
  /** The importer's callbacks; undefined for a pinned-only importer. */
  readonly importerOps: DmaBufAttachOps | undefined;
  /** The importer's private data. */
  readonly importerPriv: unknown;
  /** The exporter's per-attachment data. */
  priv: unknown = undefined;
  /** dma_buf_pin calls not yet undone by dma_buf_unpin. */
  pinCount = 0;
  #detached = false;
  /** Live mappings, by the object handed out (an SgTable or a DmaBufPhysList). */
  readonly [kRecords] = new Map<object, MappingRecord>();
  /** Mappings that were unmapped (for "dma-after-unmap"). */
  readonly [kDead] = new WeakSet<object>();

  /** Made by dmaBufDynamicAttach / dmaBufAttach. */
  static [kCreate](dmabuf: DmaBuf, dev: DmaDevice, importerOps: DmaBufAttachOps | undefined, importerPriv: unknown): DmaBufAttachment {
    return new DmaBufAttachment(dmabuf, dev, importerOps, importerPriv);
  }

  private constructor(dmabuf: DmaBuf, dev: DmaDevice, importerOps: DmaBufAttachOps | undefined, importerPriv: unknown) {
    this.dmabuf = dmabuf;
    this.dev = dev;
    this.importerOps = importerOps;
    this.importerPriv = importerPriv;
    this.peer2peer = importerOps?.allowPeer2peer ?? false;
  }

  /** dma_buf_attachment_is_dynamic: the importer gave ops (and so handles moves). */
  get isDynamic(): boolean {
    return this.importerOps !== undefined;
  }

  /** True once dma_buf_detach has run; the attachment may no longer be used. */
  get detached(): boolean {
    return this.#detached;
  }

  /** Mappings made and not yet unmapped. */
  get liveMappings(): number {
    return this[kRecords].size;
  }

  /** dma_buf_detach ran. */
  [kMarkDetached](): void {
    this.#detached = true;
  }

  /** The importer's invalidate callback (7.1 name first, then the older one). */
  [kInvalidateCallback](): ((a: DmaBufAttachment) => void) | undefined {
    const ops = this.importerOps;
    if (ops === undefined) return undefined;
    return ops.invalidateMappings ?? ops.moveNotify;
  }
}

// ---------------------------------------------------------------------------------------------------
// Argument checks (bad input is a typed error, thrown before anything changes).

function checkBuf(fn: string, dmabuf: unknown): asserts dmabuf is DmaBuf {
  if (!(dmabuf instanceof DmaBuf)) throw new DmaBufInputError(fn, "dmabuf", dmabuf, "a DmaBuf from dmaBufExport");
  if (dmabuf.released) throw new DmaBufStateError("EINVAL", `${fn}: the dma-buf "${dmabuf.expName}" was released (its last reference was put)`);
}

function checkAttach(fn: string, attach: unknown): asserts attach is DmaBufAttachment {
  if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError(fn, "attach", attach, "a DmaBufAttachment from dmaBufDynamicAttach or dmaBufAttach");
  if (attach.detached) throw new DmaBufInputError(fn, "attach", attach.dev.bdf, "an attachment that was not detached");
  checkBuf(fn, attach.dmabuf);
}

export function checkDirection(fn: string, dir: unknown): asserts dir is DmaDirection {
  if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
    throw new DmaBufInputError(fn, "dir", dir, "DmaDirection.BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE");
  }
}

function isErr(v: unknown): v is number {
  return typeof v === "number";
}

// ---------------------------------------------------------------------------------------------------
// Export and references.

/**
 * dma_buf_export: -EINVAL (with the core's WARN) when `priv` is missing, when no mapping pair is given
 * (map_dma_buf + unmap_dma_buf, or dmasim's mapPhysList + unmapPhysList, as the 2026 mapping-type series
 * lets an exporter offer only non-SGT types), when `release` is missing, or when only one of pin/unpin is.
 * The buffer starts with one reference (the file's).
 */
export function dmaBufExport(system: DmaBufSystem, info: DmaBufExportInfo): DmaBuf | number {
  const fn = "dma_buf_export";
  if (!(system instanceof DmaBufSystem)) throw new DmaBufInputError(fn, "system", system, "a DmaBufSystem");
  if ((info as unknown) === null || typeof (info as unknown) !== "object") throw new DmaBufInputError(fn, "info", info, "an object { expName, size, ops, priv, resv? }");
  if (!Number.isSafeInteger(info.size) || info.size <= 0) throw new DmaBufInputError(fn, "info.size", info.size, "a byte count > 0");
  if (typeof info.expName !== "string") throw new DmaBufInputError(fn, "info.expName", info.expName, "the exporter's name");
  if (info.resv !== undefined && !(info.resv instanceof DmaResv)) throw new DmaBufInputError(fn, "info.resv", info.resv, "a DmaResv or absent");
  const ops = info.ops as DmaBufOps | undefined;
  const sgt = typeof ops?.mapDmaBuf === "function" && typeof ops.unmapDmaBuf === "function";
  const phys = typeof ops?.mapPhysList === "function" && typeof ops.unmapPhysList === "function";
  let why: string | undefined;
  if (info.priv === undefined || info.priv === null) why = "priv is missing";
  else if ((ops as unknown) == null) why = "ops is missing";
  else if (!sgt && !phys) why = "neither map_dma_buf/unmap_dma_buf nor mapPhysList/unmapPhysList is given";
  else if (typeof ops.release !== "function") why = "release is missing";
  else if ((typeof ops.pin === "function") !== (typeof ops.unpin === "function")) why = "only one of pin and unpin is given";
  if (why !== undefined) {
    system.debug.report("api-warn", "", `dma_buf_export of "${info.expName}": ${why}`);
    return -DmaBufErrno.EINVAL;
  }
  const buf = DmaBuf[kCreate](system, info);
  system.buffers.add(buf);
  system.trace.counters.add(DmaBufCounter.DmaBufExports);
  return buf;
}

/** get_dma_buf: one more reference (an fd duplicated, an importer keeping the file). */
export function getDmaBuf(dmabuf: DmaBuf): void {
  checkBuf("get_dma_buf", dmabuf);
  dmabuf[kGet]();
}

/**
 * dma_buf_put: drops a reference; the last one releases the buffer (the exporter's release). Releasing
 * a buffer that still has attachments is the "leak" finding (upstream's file release would WARN on the
 * attachment list).
 */
export function dmaBufPut(dmabuf: DmaBuf): void {
  const fn = "dma_buf_put";
  checkBuf(fn, dmabuf);
  if (dmabuf.refs === 1 && dmabuf.attachments.length > 0) {
    dmabuf.system.debug.report("leak", "", `${fn}: the last reference of "${dmabuf.expName}" dropped with ${dmabuf.attachments.length} attachment(s) left`);
  }
  if (!dmabuf[kPut]()) return;
  dmabuf.system.buffers.delete(dmabuf);
  dmabuf.ops.release?.(dmabuf);
}

// ---------------------------------------------------------------------------------------------------
// Attach and detach.

/**
 * dma_buf_dynamic_attach: peer2peer = importerOps?.allowPeer2peer; the exporter's attach may refuse
 * (its errno is returned, nothing is added); the attachment joins the list under the reservation lock.
 * Since 6.15 attach maps nothing.
 */
export function dmaBufDynamicAttach(dmabuf: DmaBuf, dev: DmaDevice, importerOps?: DmaBufAttachOps, importerPriv?: unknown): DmaBufAttachment | number {
  const fn = "dma_buf_dynamic_attach";
  checkBuf(fn, dmabuf);
  if (!(dev instanceof DmaDevice)) throw new DmaBufInputError(fn, "dev", dev, "a DmaDevice (kernel.device(bdf))");
  if (dev.kernel !== dmabuf.system.kernel) throw new DmaBufInputError(fn, "dev", dev.bdf, "a device of the kernel the dma-buf system belongs to");
  if (importerOps !== undefined) {
    const o = importerOps as unknown;
    if (o === null || typeof o !== "object" || typeof (o as { allowPeer2peer?: unknown }).allowPeer2peer !== "boolean") {
      throw new DmaBufInputError(fn, "importerOps", importerOps, "undefined (a static importer) or { allowPeer2peer: boolean, invalidateMappings? }");
    }
  }
  // Up to 7.0 an importer with ops had to give move_notify (WARN and -EINVAL).
  if (importerOps !== undefined && dmabuf.system.version === "6.19" && typeof importerOps.moveNotify !== "function" && typeof importerOps.invalidateMappings !== "function") {
    dmabuf.system.debug.report("api-warn", dev.bdf, `${fn}: importer ops without move_notify (6.19)`);
    return -DmaBufErrno.EINVAL;
  }
  const attach = DmaBufAttachment[kCreate](dmabuf, dev, importerOps, importerPriv);
  const ret = dmabuf.ops.attach?.(dmabuf, attach) ?? 0;
  if (ret < 0) return ret;
  // list_add under dma_resv_lock: the lock is taken and dropped here, so a caller holding it deadlocks.
  if (dmabuf.resv.lock() !== 0) {
    dmabuf.ops.detach?.(dmabuf, attach);
    return -DmaBufErrno.EDEADLK;
  }
  dmabuf[kAddAttachment](attach);
  dmabuf.resv.unlock();
  dmabuf.system.trace.counters.add(DmaBufCounter.DmaBufAttaches);
  return attach;
}

/** dma_buf_attach: a static importer (no ops: never moved under it, no P2P). */
export function dmaBufAttach(dmabuf: DmaBuf, dev: DmaDevice): DmaBufAttachment | number {
  return dmaBufDynamicAttach(dmabuf, dev, undefined, undefined);
}

/**
 * dma_buf_detach: leaves the list and calls the exporter's detach. Every mapping must be unmapped first
 * ("detach-mapped" otherwise; in "collect" mode the mappings are then forgotten, as upstream would leak
 * them). An attachment of another buffer is bad input.
 */
export function dmaBufDetach(dmabuf: DmaBuf, attach: DmaBufAttachment): void {
  const fn = "dma_buf_detach";
  checkBuf(fn, dmabuf);
  checkAttach(fn, attach);
  if (attach.dmabuf !== dmabuf) throw new DmaBufInputError(fn, "attach", attach.dev.bdf, `an attachment of "${dmabuf.expName}" (this one belongs to "${attach.dmabuf.expName}")`);
  if (attach.liveMappings > 0) dmabuf.system.debug.report("detach-mapped", attach.dev.bdf, `${fn} with ${attach.liveMappings} mapping(s) not unmapped`);
  if (dmabuf.resv.lock() !== 0) return;
  dmabuf[kRemoveAttachment](attach);
  dmabuf.resv.unlock();
  attach[kMarkDetached]();
  dmabuf.ops.detach?.(dmabuf, attach);
}

/** dma_buf_attach_revocable (7.1): the importer can be told to drop its mappings. */
export function dmaBufAttachRevocable(attach: DmaBufAttachment): boolean {
  if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError("dma_buf_attach_revocable", "attach", attach, "a DmaBufAttachment");
  return attach[kInvalidateCallback]() !== undefined;
}

// ---------------------------------------------------------------------------------------------------
// Pin.

/**
 * dma_buf_pin: the reservation lock must be held; a static importer is WARNed (it is pinned at map time
 * already). Calls the exporter's pin if it has one (a pinned buffer does not move, but can be revoked).
 */
export function dmaBufPin(attach: DmaBufAttachment): number {
  const fn = "dma_buf_pin";
  checkAttach(fn, attach);
  const buf = attach.dmabuf;
  buf.resv.assertHeld(fn, attach.dev.bdf);
  if (!attach.isDynamic) buf.system.debug.report("api-warn", attach.dev.bdf, `${fn} of a static importer's attachment (WARN_ON(!dma_buf_attachment_is_dynamic))`);
  const ret = buf.ops.pin?.(attach) ?? 0;
  if (ret === 0) attach.pinCount++;
  return ret;
}

/** dma_buf_unpin. */
export function dmaBufUnpin(attach: DmaBufAttachment): void {
  const fn = "dma_buf_unpin";
  checkAttach(fn, attach);
  const buf = attach.dmabuf;
  buf.resv.assertHeld(fn, attach.dev.bdf);
  if (attach.pinCount === 0) {
    buf.system.debug.report("api-warn", attach.dev.bdf, `${fn} of an attachment that is not pinned`);
    return;
  }
  attach.pinCount--;
  buf.ops.unpin?.(attach);
}

// ---------------------------------------------------------------------------------------------------
// Map and unmap.

/**
 * pin_on_map: in 7.1 (MOVE_NOTIFY always on) when the exporter can pin and the importer cannot follow
 * moves; in 6.19 (CONFIG_DMABUF_MOVE_NOTIFY off by default) dynamic importers are pinned too.
 */
function pinOnMap(attach: DmaBufAttachment): boolean {
  const buf = attach.dmabuf;
  return typeof buf.ops.pin === "function" && (!attach.isDynamic || buf.system.version === "6.19");
}

/**
 * The common part of both mapping types: pin on map, the exporter's map, the static importer's wait for
 * KERNEL fences, the record. `doMap` returns the handed-out object or an errno.
 */
function mapCommon<T extends object>(fn: string, attach: DmaBufAttachment, dir: DmaDirection, kind: "sgt" | "phys", doMap: () => T | number): T | number {
  const buf = attach.dmabuf;
  buf.resv.assertHeld(fn, attach.dev.bdf);
  const pin = pinOnMap(attach);
  if (pin) {
    const ret = buf.ops.pin?.(attach) ?? 0;
    if (ret === -DmaBufErrno.EBUSY) buf.system.debug.report("api-warn", attach.dev.bdf, `${fn}: the exporter's pin returned -EBUSY`);
    if (ret < 0) return ret;
  }
  const out = doMap();
  if (isErr(out)) {
    if (pin) buf.ops.unpin?.(attach);
    return out;
  }
  // A static importer cannot wait for a move's copy itself: the core does (interruptible, no limit).
  if (!attach.isDynamic) buf.resv.waitTimeout(DmaResvUsage.KERNEL, true, MAX_SCHEDULE_TIMEOUT);
  attach[kRecords].set(out, { kind, dir, pinnedByMap: pin, invalidated: undefined });
  const trace = buf.system.trace;
  trace.counters.add(DmaBufCounter.DmaBufMaps);
  if (trace.events.active) emitDmaBuf(trace, { type: "dmabuf.map", t: trace.clock.now, buf: buf.inode, exporter: buf.expName, device: attach.dev.bdf, kind, size: buf.size });
  return out;
}

/**
 * dma_buf_map_attachment (resv held): the exporter's sg_table for this importer, or a negative errno
 * (a NULL table is -ENOMEM). A dynamic importer must itself wait for the KERNEL fences before its device
 * touches the memory (dmaResvWaitTimeout, as ib_umem_dmabuf_map_pages does).
 */
export function dmaBufMapAttachment(attach: DmaBufAttachment, dir: DmaDirection): SgTable | number {
  const fn = "dma_buf_map_attachment";
  checkAttach(fn, attach);
  checkDirection(fn, dir);
  const ops = attach.dmabuf.ops;
  const map = ops.mapDmaBuf;
  if (typeof map !== "function") return -DmaBufErrno.EOPNOTSUPP;
  return mapCommon(fn, attach, dir, "sgt", () => {
    const sgt = map(attach, dir);
    if (isErr(sgt)) return sgt < 0 ? sgt : -DmaBufErrno.ENOMEM;
    return sgt instanceof SgTable ? sgt : -DmaBufErrno.ENOMEM;
  });
}

/** dma_buf_map_attachment_unlocked: takes the reservation lock around the map (static importers). */
export function dmaBufMapAttachmentUnlocked(attach: DmaBufAttachment, dir: DmaDirection): SgTable | number {
  const fn = "dma_buf_map_attachment_unlocked";
  checkAttach(fn, attach);
  checkDirection(fn, dir);
  const resv = attach.dmabuf.resv;
  const err = resv.lock();
  if (err !== 0) return err;
  try {
    return dmaBufMapAttachment(attach, dir);
  } finally {
    resv.unlock();
  }
}

/** The record of a mapping `obj` of `attach`, or a typed error for one it does not hold. */
function recordOf(fn: string, attach: DmaBufAttachment, obj: object, what: string): MappingRecord {
  const rec = attach[kRecords].get(obj);
  if (rec !== undefined) return rec;
  if (attach[kDead].has(obj)) throw new DmaBufStateError("EINVAL", `${fn}: this ${what} of ${attach.dev.bdf} was unmapped already`);
  throw new DmaBufInputError(fn, what, obj, `a ${what} that this attachment mapped (a foreign or unknown one)`);
}

function unmapCommon(fn: string, attach: DmaBufAttachment, obj: object, rec: MappingRecord, doUnmap: () => void): void {
  const buf = attach.dmabuf;
  buf.resv.assertHeld(fn, attach.dev.bdf);
  doUnmap();
  attach[kRecords].delete(obj);
  attach[kDead].add(obj);
  if (rec.pinnedByMap) buf.ops.unpin?.(attach);
  if (rec.invalidated !== undefined) buf[kUnmappedAfter](rec.invalidated);
  const trace = buf.system.trace;
  trace.counters.add(DmaBufCounter.DmaBufUnmaps);
  if (trace.events.active) emitDmaBuf(trace, { type: "dmabuf.unmap", t: trace.clock.now, buf: buf.inode, exporter: buf.expName, device: attach.dev.bdf, kind: rec.kind });
}

/** dma_buf_unmap_attachment (resv held): the exporter's unmap, then unpin if the map pinned. */
export function dmaBufUnmapAttachment(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const fn = "dma_buf_unmap_attachment";
  checkAttach(fn, attach);
  checkDirection(fn, dir);
  const rec = recordOf(fn, attach, sgt, "sgt");
  if (rec.kind !== "sgt") throw new DmaBufInputError(fn, "sgt", sgt, "an sg_table (this is a physical-range list: use dmaBufUnmapPhysList)");
  const ops = attach.dmabuf.ops;
  unmapCommon(fn, attach, sgt, rec, () => ops.unmapDmaBuf?.(attach, sgt, dir));
}

/** dma_buf_unmap_attachment_unlocked. */
export function dmaBufUnmapAttachmentUnlocked(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const fn = "dma_buf_unmap_attachment_unlocked";
  checkAttach(fn, attach);
  const resv = attach.dmabuf.resv;
  if (resv.lock() !== 0) return;
  try {
    dmaBufUnmapAttachment(attach, sgt, dir);
  } finally {
    resv.unlock();
  }
}

/**
 * dmasim's non-scatterlist mapping type (resv held): the exporter's physical-range list, which the
 * importer maps itself (dmaBufPhysListDmaMap). -EOPNOTSUPP when the exporter offers only sg_tables.
 */
export function dmaBufMapPhysList(attach: DmaBufAttachment): DmaBufPhysList | number {
  const fn = "dma_buf_map_phys_list";
  checkAttach(fn, attach);
  const ops = attach.dmabuf.ops;
  const map = ops.mapPhysList;
  if (typeof map !== "function") return -DmaBufErrno.EOPNOTSUPP;
  return mapCommon(fn, attach, DmaDirection.BIDIRECTIONAL, "phys", () => {
    const list = map(attach);
    if (isErr(list)) return list < 0 ? list : -DmaBufErrno.ENOMEM;
    return list;
  });
}

/** Gives a physical-range list back (resv held); the importer must have unmapped its own DMA of it. */
export function dmaBufUnmapPhysList(attach: DmaBufAttachment, list: DmaBufPhysList): void {
  const fn = "dma_buf_unmap_phys_list";
  checkAttach(fn, attach);
  const rec = recordOf(fn, attach, list, "list");
  if (rec.kind !== "phys") throw new DmaBufInputError(fn, "list", list, "a physical-range list (this is an sg_table)");
  if (list[kDmaMappings] > 0) throw new DmaBufStateError("EBUSY", `${fn}: the importer still has ${list[kDmaMappings]} DMA mapping(s) of this list: dmaBufPhysListDmaUnmap them first`);
  const ops = attach.dmabuf.ops;
  unmapCommon(fn, attach, list, rec, () => ops.unmapPhysList?.(attach, list));
}

// ---------------------------------------------------------------------------------------------------
// Invalidation.

/**
 * dma_buf_invalidate_mappings (7.1; dma_buf_move_notify up to 7.0), resv held: every importer with a
 * callback is told to drop its mappings, and the callback runs with the lock held (taking it again is
 * the "resv-relock-in-invalidate" finding). Each live mapping is marked invalidated: until it is
 * unmapped only speculative reads may reach it. The invalidation is logged (InvalidationLog) and
 * quiesced when the last of those mappings is unmapped.
 */
export function dmaBufInvalidateMappings(dmabuf: DmaBuf, reason = "invalidate"): void {
  const fn = "dma_buf_invalidate_mappings";
  checkBuf(fn, dmabuf);
  dmabuf.resv.assertHeld(fn, "");
  const sys = dmabuf.system;
  sys.trace.counters.add(DmaBufCounter.DmaBufInvalidations);
  const rec = sys.invalidations.begin(reason, 0, dmabuf.size);
  let pending = 0;
  for (const a of dmabuf.attachments.slice()) {
    const cb = a[kInvalidateCallback]();
    if (cb === undefined) continue;
    rec.subscribers++;
    for (const r of a[kRecords].values()) r.invalidated ??= rec;
    dmabuf.resv[kSetInInvalidate](true);
    try {
      cb(a);
    } finally {
      dmabuf.resv[kSetInInvalidate](false);
    }
  }
  for (const a of dmabuf.attachments) for (const r of a[kRecords].values()) if (r.invalidated === rec) pending++;
  const trace = sys.trace;
  if (trace.events.active) emitDmaBuf(trace, { type: "dmabuf.invalidate", t: trace.clock.now, buf: dmabuf.inode, exporter: dmabuf.expName, reason, importers: rec.subscribers, pending });
  dmabuf[kAwaitQuiesce](rec, pending);
}

/** dma_buf_move_notify: the name of dmaBufInvalidateMappings up to 7.0. */
export function dmaBufMoveNotify(dmabuf: DmaBuf): void {
  dmaBufInvalidateMappings(dmabuf, "move");
}

/** Mappings of `dmabuf` invalidated and not yet unmapped (what a revoke waits for). */
export function dmaBufInvalidatedMappings(dmabuf: DmaBuf): number {
  let n = 0;
  for (const a of dmabuf.attachments) for (const r of a[kRecords].values()) if (r.invalidated !== undefined) n++;
  return n;
}

/** Package-private (not in index.ts): the record of a live mapping (for the device-access checks), or undefined. */
export function mappingRecord(attach: DmaBufAttachment, obj: object): { dir: DmaDirection; invalidated: boolean } | undefined {
  const r = attach[kRecords].get(obj);
  return r === undefined ? undefined : { dir: r.dir, invalidated: r.invalidated !== undefined };
}
