import { PAGE_SIZE } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import {
  HMM_PFN_DEFINED,
  HMM_PFN_ERROR,
  HMM_PFN_INOUT_FLAGS,
  HMM_PFN_ORDER_SHIFT,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  HmmErrno,
  VM_FAULT_ERROR,
  VM_IO,
  VM_PFNMAP,
  VM_READ,
  VM_WRITE,
} from "./constants.js";
import { HmmInputError } from "./errors.js";
import type { HmmOdpEvent } from "./events.js";
import { FAULT_FLAG_REMOTE, FAULT_FLAG_WRITE } from "./mm.js";
import type { Mm } from "./mm.js";
import { mmuIntervalCheckRetry } from "./notifier.js";
import type { MmuIntervalNotifier } from "./notifier.js";
import { PTE_KIND_MASK, PTE_PMD, PTE_WRITE, PteKind } from "./pte.js";
import type { Vma } from "./vma.js";
import { kStaleSeqs } from "./internal.js";

const VALID = HMM_PFN_VALID;
const WRITE = HMM_PFN_WRITE;
const INOUT = HMM_PFN_INOUT_FLAGS;
const REQ = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
const PMD_ORDER_FLAGS = HPAGE_PMD_ORDER << HMM_PFN_ORDER_SHIFT;
const K_NONE = PteKind.NONE;
const K_PRESENT = PteKind.PRESENT;
const NEED_FAULT = 1;
const NEED_WRITE_FAULT = 2;
const EBUSY = -HmmErrno.EBUSY;

/**
 * struct hmm_range. The pfn words live in two arrays the caller owns (the frame in `pfns`, the flags in
 * `flags`, see constants.ts), from entry `index` on: an hmm_dma_map's list can be handed over as is.
 */
export class HmmRange {
  /** The interval notifier that covers the range; its sequence decides whether the result is still valid. */
  notifier: MmuIntervalNotifier;
  /** notifier_seq: the mmuIntervalReadBegin value the caller retries against. */
  notifierSeq = 0;
  /** First address to fault (page-aligned). */
  start: number;
  /** Address just past the range. */
  end: number;
  /** hmm_pfns, pfn part: the page frame of each page (valid where its flags say HMM_PFN_VALID). */
  pfns: Uint32Array;
  /** hmm_pfns, flag part: HMM_PFN_* in and out for each page (see constants). */
  flags: Uint16Array;
  /** Entry of the arrays that holds `start`. */
  index = 0;
  /** default_flags: HMM_PFN_REQ_* requested for every page. */
  defaultFlags = 0;
  /** pfn_flags_mask: which per-page request bits of `flags` apply on top of defaultFlags. */
  pfnFlagsMask = 0;
  /** dev_private_owner: device-private pages of this owner are returned as they are instead of migrated back. */
  devPrivateOwner: unknown = undefined;
  /** Model only: a race point called after each VMA is walked (an injected invalidation goes here). */
  onWalk: ((addr: number) => void) | undefined = undefined;

  constructor(init: { notifier: MmuIntervalNotifier; start: number; end: number; pfns?: Uint32Array; flags?: Uint16Array; index?: number; defaultFlags?: number; pfnFlagsMask?: number; devPrivateOwner?: unknown }) {
    this.notifier = init.notifier;
    this.start = init.start;
    this.end = init.end;
    const n = Math.max(0, Math.ceil((init.end - init.start) / PAGE_SIZE));
    this.pfns = init.pfns ?? new Uint32Array(n);
    this.flags = init.flags ?? new Uint16Array(n);
    this.index = init.index ?? 0;
    this.defaultFlags = init.defaultFlags ?? 0;
    this.pfnFlagsMask = init.pfnFlagsMask ?? 0;
    this.devPrivateOwner = init.devPrivateOwner;
  }
}

function checkRange(range: HmmRange): Mm {
  const fn = "hmm_range_fault";
  const sub = range.notifier;
  const mm = sub.mm as Mm | undefined;
  if (mm === undefined) throw new HmmInputError(fn, "range.notifier", sub, "an inserted mmu_interval_notifier");
  const { start, end } = range;
  // For a safe integer x, (x >>> 0) & (PAGE_SIZE - 1) is x mod PAGE_SIZE: ToUint32 reduces modulo 2^32
  // exactly, and 2^32 is a multiple of PAGE_SIZE. `%` on addresses past 2^31 is a floating-point remainder.
  if (!Number.isSafeInteger(start) || ((start >>> 0) & (PAGE_SIZE - 1)) !== 0) throw new HmmInputError(fn, "range.start", start, "a page-aligned address");
  if (!Number.isSafeInteger(end) || ((end >>> 0) & (PAGE_SIZE - 1)) !== 0 || end <= start) throw new HmmInputError(fn, "range.end", end, `a page-aligned address above start (${hex(start)})`);
  if (start < sub.start || end - 1 > sub.last) throw new HmmInputError(fn, "range", `[${hex(start)}, ${hex(end)})`, `a range inside the notifier's [${hex(sub.start)}, ${hex(sub.last + 1)})`);
  const n = (end - start) / PAGE_SIZE;
  if (!Number.isSafeInteger(range.index) || range.index < 0 || range.index + n > range.pfns.length || range.index + n > range.flags.length) {
    throw new HmmInputError(fn, "range.index", range.index, `an index with room for ${n} entries in pfns (${range.pfns.length}) and flags (${range.flags.length})`);
  }
  if ((range.defaultFlags & ~REQ) !== 0) throw new HmmInputError(fn, "range.defaultFlags", range.defaultFlags, "HMM_PFN_REQ_FAULT and/or HMM_PFN_REQ_WRITE");
  if ((range.pfnFlagsMask & ~HMM_PFN_DEFINED) !== 0) throw new HmmInputError(fn, "range.pfnFlagsMask", range.pfnFlagsMask, "defined HMM_PFN_* bits");
  return mm;
}

/**
 * hmm_range_fault: fills the range's pfn words from the CPU page table, faulting pages in where the
 * request asks (per-entry decision of mm/hmm.c). Returns 0, -EBUSY (invalidated: read_begin again and
 * retry), -EFAULT (a requested page cannot be made valid), -EPERM (write requested on a read-only VMA).
 * The mmap lock must be held for read.
 */
export function hmmRangeFault(range: HmmRange): number {
  const mm = checkRange(range);
  const sub = range.notifier;
  if (!mm.mmapLocked) mm.debug.report("hmm-range-fault-unlocked", sub.owner, `hmm_range_fault without the mmap read lock of ${mm.name} (mmap_assert_locked)`);
  const staleSeqs = sub[kStaleSeqs];
  if (staleSeqs.size !== 0 && staleSeqs.has(range.notifierSeq)) {
    mm.debug.report("hmm-stale-seq", sub.owner, `hmm_range_fault with notifier_seq ${range.notifierSeq}, which an invalidation already overtook: call mmu_interval_read_begin again on every retry (each attempt would return -EBUSY until the timeout)`);
  }
  const ctx = { last: range.start, migrationWait: false };
  for (;;) {
    if (mmuIntervalCheckRetry(sub, range.notifierSeq)) return traced(mm, range, EBUSY);
    const ret = walk(mm, range, ctx);
    // migration_entry_wait sleeps until the migration ends; a single-threaded model cannot, so the
    // -EBUSY goes to the caller, whose retry loop is the wait.
    if (ret !== EBUSY || ctx.migrationWait) return traced(mm, range, ret);
  }
}

/** Reports the call's result as `hmm.range-fault` when someone listens; returns it. */
function traced(mm: Mm, range: HmmRange, result: number): number {
  const trace = mm.trace;
  if (trace.events.active) trace.events.view<HmmOdpEvent>().emit({ type: "hmm.range-fault", t: trace.clock.now, mm: mm.name, start: range.start, end: range.end, result });
  return result;
}

function fill(range: HmmRange, from: number, to: number, value: number): void {
  const f = range.flags;
  const p = range.pfns;
  const o = range.index + (from - range.start) / PAGE_SIZE;
  const n = (to - from) / PAGE_SIZE;
  for (let j = 0; j < n; j++) {
    f[o + j] = ((f[o + j] ?? 0) & INOUT) | value;
    p[o + j] = 0;
  }
}

/** hmm_range_need_fault over [from, to) with no CPU flags: does any entry ask for a fault? */
function anyNeedsFault(range: HmmRange, from: number, to: number): boolean {
  if ((range.defaultFlags & HMM_PFN_REQ_FAULT) !== 0) return true;
  if ((range.pfnFlagsMask & HMM_PFN_REQ_FAULT) === 0) return false;
  const f = range.flags;
  const o = range.index + (from - range.start) / PAGE_SIZE;
  const n = (to - from) / PAGE_SIZE;
  for (let j = 0; j < n; j++) if (((f[o + j] ?? 0) & range.pfnFlagsMask & HMM_PFN_REQ_FAULT) !== 0) return true;
  return false;
}

function walk(mm: Mm, range: HmmRange, ctx: { last: number; migrationWait: boolean }): number {
  const end = range.end;
  let addr = ctx.last;
  const vmas = mm.vmas;
  let vi = mm.vmaIndexFrom(addr);
  while (addr < end) {
    const v = vmas[vi];
    if (v === undefined || v.start >= end) {
      if (anyNeedsFault(range, addr, end)) return -HmmErrno.EFAULT;
      fill(range, addr, end, HMM_PFN_ERROR);
      return 0;
    }
    if (v.start > addr) {
      if (anyNeedsFault(range, addr, v.start)) return -HmmErrno.EFAULT;
      fill(range, addr, v.start, HMM_PFN_ERROR);
      addr = v.start;
    }
    const vEnd = Math.min(v.end, end);
    if ((v.flags & (VM_IO | VM_PFNMAP)) !== 0 || (v.flags & VM_READ) === 0) {
      // hmm_vma_walk_test: a VMA hmm cannot use is all ERROR, or -EFAULT if a fault is wanted.
      if (anyNeedsFault(range, addr, vEnd)) return -HmmErrno.EFAULT;
      fill(range, addr, vEnd, HMM_PFN_ERROR);
    } else {
      const ret = walkVma(mm, range, v, addr, vEnd, ctx);
      if (ret !== 0) return ret;
    }
    range.onWalk?.(addr);
    addr = vEnd;
    vi++;
  }
  return 0;
}

/** The PTE walk of one VMA: the per-entry decision table of hmm_vma_handle_pte / _pmd. */
function walkVma(mm: Mm, range: HmmRange, v: Vma, from: number, to: number, ctx: { last: number; migrationWait: boolean }): number {
  const base = (from - v.start) / PAGE_SIZE;
  const n = (to - from) / PAGE_SIZE;
  const out = range.index + (from - range.start) / PAGE_SIZE;
  const pte = v.pte;
  const vpfn = v.pfn;
  const pfns = range.pfns;
  const flags = range.flags;
  const mask = range.pfnFlagsMask;
  const def = range.defaultFlags;
  for (let j = 0; j < n; j++) {
    const e = pte[base + j] ?? 0;
    const o = out + j;
    const inFlags = flags[o] ?? 0;
    const req = ((inFlags & mask) | def) & REQ;
    const k = e & PTE_KIND_MASK;
    if (k === K_PRESENT) {
      // pte_to_hmm_pfn_flags, plus the order of a PMD-mapped page.
      const cpu = (e & PTE_WRITE) !== 0 ? VALID | WRITE : VALID;
      if (req !== 0 && (req & HMM_PFN_REQ_FAULT) !== 0 && (req & HMM_PFN_REQ_WRITE) !== 0 && (cpu & WRITE) === 0) {
        return fault(mm, v, from + j * PAGE_SIZE, to, NEED_FAULT | NEED_WRITE_FAULT, ctx);
      }
      flags[o] = (inFlags & INOUT) | cpu | ((e & PTE_PMD) !== 0 ? PMD_ORDER_FLAGS : 0);
      pfns[o] = vpfn[base + j] ?? 0;
      continue;
    }
    let newFlags = 0;
    let newPfn = 0;
    let need = 0;
    switch (k) {
      case K_NONE:
      case PteKind.SWAP:
      case PteKind.DEVICE_EXCLUSIVE:
        need = needFault(req, 0);
        break;
      case PteKind.ZERO:
        need = needFault(req, VALID);
        newFlags = VALID;
        newPfn = vpfn[base + j] ?? 0;
        break;
      case PteKind.PROTNONE:
        // The frame is reported with VALID clear (pte_to_hmm_pfn_flags is 0 for protnone).
        need = needFault(req, 0);
        newPfn = vpfn[base + j] ?? 0;
        break;
      case PteKind.DEVICE_PRIVATE: {
        const dpfn = vpfn[base + j] ?? 0;
        if (mm.sys.pagemapOf(dpfn)?.owner === range.devPrivateOwner && range.devPrivateOwner !== undefined) {
          // Owned by the caller: reported, never faulted, even with REQ_WRITE on a read-only entry; a
          // device-private THP (v6.19 hmm_vma_handle_absent_pmd) with its PMD order.
          newFlags = ((e & PTE_WRITE) !== 0 ? VALID | WRITE : VALID) | ((e & PTE_PMD) !== 0 ? PMD_ORDER_FLAGS : 0);
          newPfn = dpfn;
        } else {
          need = needFault(req, 0);
        }
        break;
      }
      case PteKind.MIGRATION:
        if (needFault(req, 0) !== 0) {
          // migration_entry_wait, then the walk restarts here.
          ctx.last = from + j * PAGE_SIZE;
          ctx.migrationWait = true;
          return EBUSY;
        }
        break;
      default:
        // Special entries (not vm_normal_page) and anything else non-present.
        if (needFault(req, 0) !== 0) return -HmmErrno.EFAULT;
        newFlags = HMM_PFN_ERROR;
    }
    if (need !== 0) return fault(mm, v, from + j * PAGE_SIZE, to, need, ctx);
    flags[o] = (inFlags & INOUT) | newFlags;
    pfns[o] = newPfn;
  }
  return 0;
}

/** hmm_pte_need_fault. */
function needFault(req: number, cpu: number): number {
  if ((req & HMM_PFN_REQ_FAULT) === 0) return 0;
  if ((req & HMM_PFN_REQ_WRITE) !== 0 && (cpu & WRITE) === 0) return NEED_FAULT | NEED_WRITE_FAULT;
  if ((cpu & VALID) === 0) return NEED_FAULT;
  return 0;
}

/**
 * hmm_vma_fault: handle_mm_fault on every page from `addr` to the end of the walked PMD chunk, then -EBUSY
 * so the walk restarts at `addr`. -EPERM for a write fault on a VMA without VM_WRITE.
 */
function fault(mm: Mm, v: Vma, addr: number, to: number, need: number, ctx: { last: number; migrationWait: boolean }): number {
  ctx.last = addr;
  let flags = FAULT_FLAG_REMOTE;
  if ((need & NEED_WRITE_FAULT) !== 0) {
    if ((v.flags & VM_WRITE) === 0) return -HmmErrno.EPERM;
    flags |= FAULT_FLAG_WRITE;
  }
  const chunkEnd = Math.min(to, (Math.floor(addr / (HPAGE_PMD_NR * PAGE_SIZE)) + 1) * HPAGE_PMD_NR * PAGE_SIZE);
  for (let a = addr; a < chunkEnd; a += PAGE_SIZE) {
    if ((mm.handleMmFault(a, flags) & VM_FAULT_ERROR) !== 0) return -HmmErrno.EFAULT;
  }
  return EBUSY;
}
