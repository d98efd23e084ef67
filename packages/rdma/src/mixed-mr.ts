import { DmaDevice, dmaUseIova } from "@dmasim/dma";
import { DmaBuf, dmaBufDynamicAttach } from "@dmasim/dmabuf";
import type { DmaBufAttachment, DmaBufPhysList } from "@dmasim/dmabuf";
import { HmmDmaMap, HmmRange, MmuIntervalNotifier, Mm, UserLock, hmmDmaMapAlloc, hmmDmaMapFree, mmuIntervalNotifierInsert } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import { IB_ACCESS_HUGETLB, IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_ATOMIC, IB_ACCESS_REMOTE_WRITE, IB_ACCESS_SUPPORTED, IB_ACCESS_WRITABLE, RdmaErrno } from "./constants.js";
import { RdmaInputError } from "./errors.js";
import { mixedDmabufFault, mixedDmabufInvalidate, mixedDmabufRelease } from "./mixed-dmabuf.js";
import { MixedEventLog } from "./mixed-events.js";
import type { MixedEvent } from "./mixed-events.js";
import { mixedVaFault, mixedVaInvalidate, mixedVaLive, mixedVaRelease } from "./mixed-va.js";
import { IbMr, IbPd } from "./mr.js";
import type { IbUmemMixedHooks } from "./mr.js";
import type { Mlx5Nic } from "./nic.js";
import { kAdoptMkey, kEventDeviceAccess, kLogEvent, kRecordEvent, kSegAttach, kSegRange, kSegRuns, kSegList } from "./internal.js";

/**
 * One segment of a mixed MR, as registered: user memory of a process (faulted through hmm_range_fault,
 * invalidated by the mm's interval notifier) or a range of a dma-buf (mapped on access, invalidated by
 * the exporter's invalidate_mappings). Addresses, offsets and lengths are page-aligned. `name` labels the
 * segment's source in the latency report (default: the mm's name, or the buffer's exporter name).
 */
export type MixedSegmentSpec =
  | { readonly kind: "va"; readonly mm: Mm; readonly addr: number; readonly length: number; readonly name?: string }
  | { readonly kind: "dmabuf"; readonly buf: DmaBuf; readonly offset: number; readonly length: number; readonly name?: string };

/** State common to both kinds of segment of a registered mixed MR. */
export interface MixedSegmentBase {
  /** Position in the MR's segment list. */
  readonly index: number;
  /** The source's label in the latency report. */
  readonly source: string;
  /** First page of the segment, counted from the MR's start (its MTT index and IOVA page). */
  readonly first: number;
  /** Pages in the segment. */
  readonly pages: number;
}

/** A user-VA segment: its own interval notifier and hmm_range over the one shared pfn list. */
export interface MixedVaSegment extends MixedSegmentBase {
  /** A user-VA segment. */
  readonly kind: "va";
  /** The process whose memory the segment maps. */
  readonly mm: Mm;
  /** The user address of the segment's first page. */
  readonly addr: number;
  /** The segment's interval notifier over its user range. */
  readonly notifier: MmuIntervalNotifier;
  /** Package-private (keyed by a symbol `.` does not export): the segment's hmm_range over the MR's pfn list. */
  readonly [kSegRange]: HmmRange;
}

/** A dma-buf segment: its own dynamic attachment and, while mapped, the physical-range list behind it. */
export interface MixedDmabufSegment extends MixedSegmentBase {
  /** A dma-buf segment. */
  readonly kind: "dmabuf";
  /** The buffer the segment maps a range of. */
  readonly buf: DmaBuf;
  /** Byte offset of the segment in the buffer. */
  readonly offset: number;
  /** Package-private (keyed by a symbol `.` does not export): the attachment (dma_buf_dynamic_attach). */
  [kSegAttach]: DmaBufAttachment | undefined;
  /** Package-private (keyed by a symbol `.` does not export): the list mapped now (undefined while not mapped). */
  [kSegList]: DmaBufPhysList | undefined;
  /** Package-private (keyed by a symbol `.` does not export): IOVA runs linked now (offset, length, attrs triples). */
  [kSegRuns]: number[];
}

/** A segment of a registered mixed MR. */
export type MixedSegment = MixedVaSegment | MixedDmabufSegment;

/**
 * ★ dmasim's proposal: the umem of ONE MR made of segments of different sources — user VA (anonymous,
 * THP, file, a P2P BAR mmap, device-private pages, through hmm-odp) and dma-buf ranges (GPU VRAM that
 * migrates, a VFIO BAR that can be revoked) — behind ONE IOVA reservation (hmm_dma_map_alloc of the whole
 * MR: one dma_iova_try_alloc) and one MTT. Each page of the MR has one slot in the one pfn list, one IOVA
 * page and one MTT entry. Each segment is invalidated by its own source through its own contract (the
 * mm's interval notifier, the exporter's invalidate_mappings), and each invalidation zaps only its slice
 * of the MTT and unlinks only its slice of the IOVA. Upstream cannot build this: an ib_umem is ODP or
 * dmabuf, never both.
 */
export class IbUmemMixed implements IbUmemMixedHooks {
  /** The NIC (and its driver) the MR belongs to. */
  readonly nic: Mlx5Nic;
  /** The NIC's DMA device: every segment is mapped for it, into the one IOVA. */
  readonly dev: DmaDevice;
  /** The MR's access flags (IB_ACCESS_*). */
  readonly access: number;
  /** IB_ACCESS_WRITABLE: faults ask for write and MTT entries get MLX5_IB_MTT_WRITE. */
  readonly writable: boolean;
  /** The one pfn list and the one IOVA reservation of the whole MR (map.state). */
  readonly map = new HmmDmaMap();
  /** The umem mutex: the user lock of every VA segment's notifier and of the pfn list. */
  readonly umemMutex: UserLock;
  /** The segments in MR order. */
  readonly segments: MixedSegment[] = [];
  /** What each source did to the MR and how fast the MR followed (quiescence, first DMA after). */
  readonly events: MixedEventLog;
  /** The MR this umem backs (set once the MR is built). */
  mr: IbMr | undefined = undefined;
  /** Pages of the whole MR. */
  readonly pages: number;
  /** True once deregistration released every segment and the IOVA. */
  released = false;

  /** Made by regMixedMr (`.` exports the class as a type only). */
  constructor(nic: Mlx5Nic, access: number, pages: number, name: string) {
    this.nic = nic;
    this.dev = nic.dev;
    this.access = access;
    this.writable = (access & IB_ACCESS_WRITABLE) !== 0;
    this.pages = pages;
    this.umemMutex = new UserLock(`${name}.umem_mutex`);
    this.events = new MixedEventLog(nic.clock);
  }

  /** First MR page past each segment, in MR order (built once the segments are all in: they never change). */
  #ends = new Float64Array(0);

  /** Index of the segment holding MR page `page` (binary search over the segment ends), or -1. */
  #indexAt(page: number): number {
    const segs = this.segments;
    let ends = this.#ends;
    if (ends.length !== segs.length) {
      ends = new Float64Array(segs.length);
      for (const [k, s] of segs.entries()) ends[k] = s.first + s.pages;
      this.#ends = ends;
    }
    if (!(page >= 0)) return -1;
    let lo = 0;
    let hi = ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((ends[mid] ?? 0) <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo < ends.length ? lo : -1;
  }

  /** The segment holding MR page `page`, or undefined. */
  segmentAt(page: number): MixedSegment | undefined {
    const k = this.#indexAt(page);
    const s = k < 0 ? undefined : this.segments[k];
    return s !== undefined && page >= s.first ? s : undefined;
  }

  /**
   * The NIC's page fault over [va, va + bcnt) of the MR: each segment the range crosses is faulted by its
   * own path (hmm_range_fault for VA; map + KERNEL fence wait for a dma-buf). Pages mapped, or the first
   * segment's -errno.
   */
  pageFault(va: number, bcnt: number): number {
    const mr = this.mr;
    if (mr === undefined || this.released) return -RdmaErrno.EFAULT;
    if (va < mr.addr || va + bcnt > mr.addr + mr.length) return -RdmaErrno.EFAULT;
    const lo = Math.floor((va - mr.addr) / PAGE_SIZE);
    const hi = Math.ceil((va + bcnt - mr.addr) / PAGE_SIZE);
    let total = 0;
    const segs = this.segments;
    // From the segment holding the first page, through each segment the range crosses, in MR order.
    for (let k = this.#indexAt(lo); k >= 0 && k < segs.length; k++) {
      const s = segs[k];
      if (s === undefined || s.first >= hi) break;
      const a = Math.max(lo, s.first);
      const b = Math.min(hi, s.first + s.pages);
      if (a >= b) continue;
      const ret = s.kind === "va" ? mixedVaFault(this, mr, s, a, b - a) : mixedDmabufFault(this, mr, s);
      if (ret < 0) return ret;
      total += ret;
    }
    return total;
  }

  /**
   * A successful device access at MR address `va`: the first after an event of its segment is recorded,
   * here and in the source's InvalidationLog (its tFirstDmaAfter).
   */
  deviceAccess(va: number): void {
    if (this.events.awaiting === 0) return;
    const mr = this.mr;
    if (mr === undefined) return;
    const s = this.segmentAt(Math.floor((va - mr.addr) / PAGE_SIZE));
    // The source's own log (the one invalidation contract) learns of the first DMA after its event too.
    if (s !== undefined && this.events[kEventDeviceAccess](s.index)) (s.kind === "va" ? s.mm.invalidations : s.buf.system.invalidations).deviceAccess();
  }

  /** ib_umem release of every segment (unmap, notifier removal, detach), then the one IOVA. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const s of this.segments) {
      if (s.kind === "va") mixedVaRelease(this, s);
      else mixedDmabufRelease(this, s);
    }
    hmmDmaMapFree(this.dev, this.map);
  }

  /** Package-private (keyed by a symbol `.` does not export): an event of segment `s` (the caller zapped and unmapped it): recorded with its times. */
  [kLogEvent](s: MixedSegment, reason: string, tStart: number, dmaUnmapNs: number): MixedEvent {
    return this.events[kRecordEvent](s.index, s.kind, s.source, reason, tStart, dmaUnmapNs);
  }
}

/** Options of regMixedMr. */
export interface MixedMrOptions {
  /** The MR's start as the peer addresses it (ibv_reg_mr's iova); default 0. Page-aligned. */
  readonly iova?: number;
}

function checkSegments(fn: string, segments: readonly MixedSegmentSpec[]): Mm {
  const arr: unknown = segments;
  if (!Array.isArray(arr) || segments.length === 0) throw new RdmaInputError(fn, "segments", segments, "a non-empty array of { kind: \"va\" | \"dmabuf\", … }");
  let mm: Mm | undefined;
  let total = 0;
  segments.forEach((s, i) => {
    const at = `segments[${i}]`;
    if ((s as unknown) === null || typeof s !== "object") throw new RdmaInputError(fn, at, s, "a segment object");
    const len = s.length;
    if (!Number.isSafeInteger(len) || len <= 0 || len % PAGE_SIZE !== 0) throw new RdmaInputError(fn, `${at}.length`, len, "a positive multiple of PAGE_SIZE");
    if (s.kind === "va") {
      if (!(s.mm instanceof Mm)) throw new RdmaInputError(fn, `${at}.mm`, s.mm, "an Mm");
      if (!Number.isSafeInteger(s.addr) || s.addr < 0 || s.addr % PAGE_SIZE !== 0) throw new RdmaInputError(fn, `${at}.addr`, s.addr, "a page-aligned user address");
      mm ??= s.mm;
    } else if ((s.kind as string) === "dmabuf") {
      if (!(s.buf instanceof DmaBuf)) throw new RdmaInputError(fn, `${at}.buf`, s.buf, "a DmaBuf");
      if (!Number.isSafeInteger(s.offset) || s.offset < 0 || s.offset % PAGE_SIZE !== 0) throw new RdmaInputError(fn, `${at}.offset`, s.offset, "a page-aligned byte offset");
      if (s.offset + len > s.buf.size) throw new RdmaInputError(fn, `${at}.length`, len, `offset + length <= the buffer's ${s.buf.size} bytes`);
    } else {
      throw new RdmaInputError(fn, `${at}.kind`, (s as { kind?: unknown }).kind, '"va" or "dmabuf"');
    }
    total += len;
  });
  if (!Number.isSafeInteger(total) || total > 2 ** 48) throw new RdmaInputError(fn, "segments", total, "a total length below 2^48");
  if (mm === undefined) throw new RdmaInputError(fn, "segments", "no VA segment", "at least one VA segment (an MR of dma-bufs only is upstream's ib_umem_dmabuf)");
  return mm;
}

/**
 * ★ dmasim's proposal (no upstream verb): register ONE MR over `segments` back to back — user VA and
 * dma-buf ranges in any order — with one mkey, one MTT and one IOVA reservation for the whole MR
 * (hmm_dma_map_alloc: dma_iova_try_alloc of every page). Nothing is mapped at registration: every page
 * faults on first access, through its segment's own path. VA segments insert an interval notifier each;
 * dma-buf segments attach dynamically with an invalidate_mappings callback (so VFIO accepts them: they are
 * revocable). Returns the MR, or -EINVAL (REMOTE_WRITE/ATOMIC without LOCAL_WRITE; HUGETLB; an exited
 * process), -EOPNOTSUPP (a device without the IOVA path: the one reservation is the point), an exporter's
 * attach errno (-ENODEV for a revoked VFIO buffer), -ENOMEM. A refusal leaves nothing behind. Throws
 * RdmaInputError for bad arguments.
 */
export function regMixedMr(nic: Mlx5Nic, pd: IbPd, segments: readonly MixedSegmentSpec[], access: number, options: MixedMrOptions = {}): IbMr | number {
  const fn = "dmasim_reg_mixed_mr";
  if (!(pd instanceof IbPd) || pd.nic !== nic || pd.deallocated) throw new RdmaInputError(fn, "pd", pd, `a live protection domain of ${nic.bdf}`);
  if (!Number.isInteger(access) || (access & ~IB_ACCESS_SUPPORTED) !== 0) throw new RdmaInputError(fn, "access", access, `IB_ACCESS_* bits (unknown: ${hex((access | 0) & ~IB_ACCESS_SUPPORTED)})`);
  const mm = checkSegments(fn, segments);
  const iova = options.iova ?? 0;
  if (!Number.isSafeInteger(iova) || iova < 0 || iova % PAGE_SIZE !== 0) throw new RdmaInputError(fn, "options.iova", iova, "a page-aligned address >= 0");
  const length = segments.reduce((n, s) => n + s.length, 0);
  if (!Number.isSafeInteger(iova + length)) throw new RdmaInputError(fn, "options.iova", iova, "iova + length a safe integer");
  if ((access & (IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC)) !== 0 && (access & IB_ACCESS_LOCAL_WRITE) === 0) return -RdmaErrno.EINVAL;
  if ((access & IB_ACCESS_HUGETLB) !== 0) return -RdmaErrno.EINVAL;
  for (const s of segments) if (s.kind === "va" && s.mm.users <= 0) return -RdmaErrno.EINVAL;
  const pages = length / PAGE_SIZE;
  return nic[kAdoptMkey]((key) => {
    const name = `${nic.bdf}.mixed${hex(key)}`;
    const umem = new IbUmemMixed(nic, access, pages, name);
    // The one IOVA reservation of the whole MR, and the one pfn list.
    const ret = hmmDmaMapAlloc(nic.dev, umem.map, pages, PAGE_SIZE);
    if (ret !== 0) return ret;
    if (!dmaUseIova(umem.map.state)) {
      hmmDmaMapFree(nic.dev, umem.map);
      return -RdmaErrno.EOPNOTSUPP;
    }
    umem.map.userLock = umem.umemMutex;
    const mr = new IbMr({ pd, key, addr: iova, length, access, mm, mttStart: iova, mttEntries: pages });
    umem.mr = mr;
    let first = 0;
    for (const [i, spec] of segments.entries()) {
      const n = spec.length / PAGE_SIZE;
      const err = spec.kind === "va" ? addVaSegment(umem, mr, spec, i, first, n) : addDmabufSegment(umem, mr, spec, i, first, n);
      if (err !== 0) {
        umem.release();
        return err;
      }
      first += n;
    }
    mr.mixed = umem;
    mr.enabled = true;
    return mr;
  });
}

function addVaSegment(umem: IbUmemMixed, mr: IbMr, spec: Extract<MixedSegmentSpec, { kind: "va" }>, index: number, first: number, pages: number): number {
  const notifier = new MmuIntervalNotifier();
  notifier.owner = `${umem.umemMutex.name.replace(".umem_mutex", "")}.seg${index}`;
  const range = new HmmRange({ notifier, start: spec.addr, end: spec.addr + PAGE_SIZE, pfns: umem.map.pfns, flags: umem.map.flags, index: first });
  const seg: MixedVaSegment = { kind: "va", index, source: spec.name ?? `mm:${spec.mm.name}`, first, pages, mm: spec.mm, addr: spec.addr, notifier, [kSegRange]: range };
  const ret = mmuIntervalNotifierInsert(notifier, spec.mm, spec.addr, spec.length, {
    invalidate: (sub, r, curSeq) => mixedVaInvalidate(umem, mr, seg, sub, r, curSeq),
    liveTranslations: (_sub, start, end) => mixedVaLive(mr, seg, start, end),
  });
  if (ret !== 0) return ret;
  umem.segments.push(seg);
  return 0;
}

function addDmabufSegment(umem: IbUmemMixed, mr: IbMr, spec: Extract<MixedSegmentSpec, { kind: "dmabuf" }>, index: number, first: number, pages: number): number {
  const seg: MixedDmabufSegment = { kind: "dmabuf", index, source: spec.name ?? spec.buf.expName, first, pages, buf: spec.buf, offset: spec.offset, [kSegAttach]: undefined, [kSegList]: undefined, [kSegRuns]: [] };
  // ib_umem_dmabuf_get's attach: dynamic, P2P allowed, the MR's invalidate_mappings (so it is revocable).
  const a = dmaBufDynamicAttach(spec.buf, umem.dev, { allowPeer2peer: true, invalidateMappings: () => { mixedDmabufInvalidate(umem, mr, seg); } });
  if (typeof a === "number") return a;
  seg[kSegAttach] = a;
  umem.segments.push(seg);
  return 0;
}

/** The mixed umem of an MR made by regMixedMr, or undefined for any other MR. */
export function ibUmemMixedOf(mr: IbMr): IbUmemMixed | undefined {
  const m = mr.mixed;
  return m instanceof IbUmemMixed ? m : undefined;
}
