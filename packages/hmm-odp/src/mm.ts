import type { DmaDebugChecker } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { hex, type Trace } from "@dmasim/trace";
import {
  HPAGE_PMD_NR,
  HmmErrno,
  MmuNotifyEvent,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VM_HUGEPAGE,
  VM_MIXEDMAP,
  VM_HUGETLB,
  VM_IO,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
} from "./constants.js";
import { InvalidationLog } from "./contract.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import type { MmFile, MmSystem } from "./mm-system.js";
import {
  MMU_NOTIFIER_RANGE_BLOCKABLE,
  MmuNotifierSubscriptions,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  mmuNotifierRelease,
} from "./notifier.js";
import type { MmuNotifierRange, NotifierMm } from "./notifier.js";
import { PTE_DIRTY, PTE_KIND_MASK, PTE_PMD, PTE_WRITE, PteKind } from "./pte.js";
import { Vma } from "./vma.js";
import { kClearLazyFree, kFileInUse, kFilePage, kMarkLazyFree, kNextPid, kPageTableBytes, kSwapFree, kSwapOutPage, kSwapRead, kSwapReadCached, kSwapWrite } from "./internal.js";

/** FAULT_FLAG_WRITE / FAULT_FLAG_REMOTE of handle_mm_fault. */
export const FAULT_FLAG_WRITE = 0x1;
/** FAULT_FLAG_REMOTE: the fault is on behalf of another context (a device), not the process itself. */
export const FAULT_FLAG_REMOTE = 0x80;

/** MADV_DONTNEED. */
export const MADV_DONTNEED = 4;
/** MADV_HUGEPAGE: later faults may map whole 2 MiB THPs. */
export const MADV_HUGEPAGE = 14;
/** MADV_FREE: private anonymous pages become lazily freeable (reclaim drops them unless written again). */
export const MADV_FREE = 8;
/** MREMAP_DONTUNMAP: mremap moves the pages but leaves the old range mapped, empty (Linux 5.7). */
export const MREMAP_DONTUNMAP = 4;

/** mmap options: what the flags and the fd of mmap(2) say. */
export interface MmapOptions {
  /** PROT_READ | PROT_WRITE, or PROT_NONE. Default read/write. */
  prot?: number;
  /** MAP_SHARED (default MAP_PRIVATE). */
  shared?: boolean;
  /** A file mapping (shared or private) of this file from `offset`. */
  file?: MmFile;
  /** Byte offset in `file` of the mapping's first page; page-aligned. */
  offset?: number;
  /** MAP_FIXED address. */
  addr?: number;
  /** madvise(MADV_HUGEPAGE): faults map whole 2 MiB THPs where they fit. */
  hugepage?: boolean;
  /** MAP_HUGETLB: 2 MiB hugetlb pages (length must be a multiple of 2 MiB). */
  hugetlb?: boolean;
  /** VM_IO | VM_PFNMAP: a driver's remap_pfn_range of physical frames from `pfnmapPhys`. */
  pfnmapPhys?: number;
  /** An mmap of a peer's P2P BAR memory (p2pmem_alloc_mmap): pages of this provider from `offset`. */
  p2p?: P2pdmaProvider;
}

const EMPTY = PteKind.NONE;
const PRESENT = PteKind.PRESENT;

/** A process address space (struct mm_struct): VMAs with their page tables, the mmap lock, notifiers. */
export class Mm implements NotifierMm {
  /** The mm core this process's pages come from. */
  readonly sys: MmSystem;
  /** Process id, for messages and the checker's reports. */
  readonly pid: number;
  /** A name for the checker's reports (the process's comm). */
  readonly name: string;
  users = 1;
  /** mm->notifier_subscriptions: the interval notifiers devices registered on this mm. */
  readonly subscriptions = new MmuNotifierSubscriptions();
  /** Every invalidation of this mm, for the checker and for tests. */
  readonly invalidations: InvalidationLog;
  /** VMAs sorted by address, not overlapping. */
  readonly vmas: Vma[] = [];
  #readers = 0;
  #writer = false;
  #nextAddr = 0x10000000;

  /** The DMA kernel's trace: this process's invalidations, faults and migrations are reported there. */
  get trace(): Trace {
    return this.sys.kernel.trace;
  }

  constructor(sys: MmSystem) {
    this.sys = sys;
    this.pid = sys[kNextPid]();
    this.name = `mm[${this.pid}]`;
    this.invalidations = new InvalidationLog(sys.kernel.trace.clock, this.name);
    sys.mms.add(this);
  }

  /** The DMA kernel's debug checker, which also checks the notifier protocol. */
  get debug(): DmaDebugChecker {
    return this.sys.kernel.debug;
  }

  // ---- mmap lock -------------------------------------------------------------------------------
  /** mmap_read_lock: faults and hmm_range_fault run under it. */
  mmapReadLock(): void {
    if (this.#writer) throw new HmmStateError("EDEADLK", `${this.name}: mmap_read_lock while the write lock is held`);
    this.#readers++;
  }
  /** mmap_read_unlock. */
  mmapReadUnlock(): void {
    if (this.#readers === 0) throw new HmmStateError("EPERM", `${this.name}: mmap_read_unlock without the lock`);
    this.#readers--;
  }
  /** mmap_write_lock: mmap, munmap and mprotect run under it. */
  mmapWriteLock(): void {
    if (this.#writer || this.#readers > 0) throw new HmmStateError("EDEADLK", `${this.name}: mmap_write_lock while the lock is held`);
    this.#writer = true;
  }
  /** mmap_write_unlock. */
  mmapWriteUnlock(): void {
    if (!this.#writer) throw new HmmStateError("EPERM", `${this.name}: mmap_write_unlock without the lock`);
    this.#writer = false;
  }
  /** mmap_assert_locked. */
  get mmapLocked(): boolean {
    return this.#readers > 0 || this.#writer;
  }

  // ---- VMAs ------------------------------------------------------------------------------------
  /** find_vma: the VMA containing `addr`, or undefined. */
  findVma(addr: number): Vma | undefined {
    const i = this.vmaIndexFrom(addr);
    const v = this.vmas[i];
    return v !== undefined && v.start <= addr ? v : undefined;
  }

  /** Index of the first VMA ending above `addr` (vmas.length if none). */
  vmaIndexFrom(addr: number): number {
    const v = this.vmas;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((v[mid]?.end ?? 0) <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #checkRange(fn: string, addr: number, len: number): void {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) throw new HmmInputError(fn, "addr", addr, "a page-aligned user address");
    if (!Number.isSafeInteger(len) || len <= 0 || addr + len > TASK_SIZE) throw new HmmInputError(fn, "len", len, `a positive length with addr + len <= ${hex(TASK_SIZE)}`);
  }

  /** mmap: returns the address of the new mapping. */
  mmap(length: number, options: MmapOptions = {}): number {
    const fn = "mmap";
    const prot = options.prot ?? PROT_READ | PROT_WRITE;
    if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) throw new HmmInputError(fn, "prot", prot, "PROT_NONE or PROT_READ and/or PROT_WRITE");
    if (!Number.isSafeInteger(length) || length <= 0) throw new HmmInputError(fn, "length", length, "a positive number of bytes");
    const huge = options.hugetlb === true;
    const align = huge || options.hugepage === true || length >= HPAGE_PMD_NR * PAGE_SIZE ? HPAGE_PMD_NR * PAGE_SIZE : PAGE_SIZE;
    const len = Math.ceil(length / (huge ? align : PAGE_SIZE)) * (huge ? align : PAGE_SIZE);
    if (this.users <= 0) throw new HmmStateError("EFAULT", `${fn}: ${this.name} has exited`);
    const file = options.file;
    const offset = options.offset ?? 0;
    if (file !== undefined && (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0 || offset + len > Math.ceil(file.size / PAGE_SIZE) * PAGE_SIZE)) {
      throw new HmmInputError(fn, "offset", offset, "a page-aligned file offset with the mapping inside the file");
    }
    let flags = (prot & PROT_READ ? VM_READ : 0) | (prot & PROT_WRITE ? VM_WRITE : 0);
    if (options.shared === true) flags |= VM_SHARED;
    if (options.hugepage === true) flags |= VM_HUGEPAGE;
    if (huge) flags |= VM_HUGETLB;
    let pfnBase = 0;
    if (options.pfnmapPhys !== undefined) {
      const p = options.pfnmapPhys;
      if (!Number.isSafeInteger(p) || p < 0 || p % PAGE_SIZE !== 0) throw new HmmInputError(fn, "pfnmapPhys", p, "a page-aligned physical address");
      flags |= VM_IO | VM_PFNMAP;
      pfnBase = p / PAGE_SIZE;
    }
    const p2p = options.p2p;
    if (p2p !== undefined && (offset + len > p2p.size)) throw new HmmInputError(fn, "length", length, `a length with offset + length inside the provider's ${p2p.size} bytes`);
    let addr: number;
    if (options.addr !== undefined) {
      this.#checkRange(fn, options.addr, len);
      addr = options.addr;
      this.#unmap(addr, addr + len);
    } else {
      addr = Math.ceil(this.#nextAddr / align) * align;
      this.#nextAddr = addr + len + align;
      if (this.#nextAddr > TASK_SIZE) throw new HmmStateError("ENOMEM", `${fn}: address space exhausted`);
    }
    let shmem = file;
    if (options.shared === true && file === undefined && options.pfnmapPhys === undefined && p2p === undefined) shmem = this.sys.createFile(`shmem@${hex(addr)}`, len);
    const vma = new Vma({ start: addr, end: addr + len, flags, file: shmem, pgoff: offset / PAGE_SIZE, pfnBase, p2p });
    if (options.pfnmapPhys !== undefined) {
      // remap_pfn_range fills the whole mapping with special entries at mmap time.
      vma.pte.fill(PteKind.SPECIAL | (flags & VM_WRITE ? PTE_WRITE : 0));
      for (let i = 0; i < vma.pages; i++) vma.pfn[i] = pfnBase + i;
    } else if (p2p !== undefined) {
      // p2pmem_alloc_mmap inserts the provider's pages (vm_insert_page): normal, present pages.
      const base = (p2p.phys + offset) / PAGE_SIZE;
      vma.pte.fill(PRESENT | (flags & VM_WRITE ? PTE_WRITE : 0));
      for (let i = 0; i < vma.pages; i++) vma.pfn[i] = base + i;
    }
    this.#insertVma(vma);
    return addr;
  }

  #insertVma(vma: Vma): void {
    const i = this.vmaIndexFrom(vma.start);
    this.vmas.splice(i, 0, vma);
  }

  /** Splits VMAs so that `addr` is a boundary. */
  #splitAt(addr: number): void {
    const v = this.findVma(addr);
    if (v === undefined || v.start === addr) return;
    if (v.flags & VM_HUGETLB && addr % (HPAGE_PMD_NR * PAGE_SIZE) !== 0) throw new HmmInputError("munmap", "addr", addr, "a 2 MiB-aligned address inside a hugetlb mapping");
    // A THP mapped across the split point is split first.
    const i = (addr - v.start) / PAGE_SIZE;
    if (((v.pte[i] ?? 0) & PTE_PMD) !== 0) this.#splitPmd(v, i);
    const tail = v.splitAt(addr);
    this.vmas.splice(this.vmas.indexOf(v) + 1, 0, tail);
  }

  /** VMAs inside [start, end) after splitting at both ends. */
  #vmasIn(start: number, end: number): Vma[] {
    this.#splitAt(start);
    this.#splitAt(end);
    const out: Vma[] = [];
    for (let i = this.vmaIndexFrom(start); i < this.vmas.length; i++) {
      const v = this.vmas[i];
      if (v === undefined || v.start >= end) break;
      out.push(v);
    }
    return out;
  }

  /** Fires one invalidation around `fn` (invalidate_range_start, the PTE change, invalidate_range_end). */
  notify(event: MmuNotifyEvent, start: number, end: number, fn: () => void, owner?: unknown, blockable = true): number {
    const range: MmuNotifierRange = { start, end, flags: blockable ? MMU_NOTIFIER_RANGE_BLOCKABLE : 0, event, owner, mm: this };
    this.sys.stats.invalidations++;
    const ret = mmuNotifierInvalidateRangeStart(range);
    if (ret !== 0) return ret;
    try {
      fn();
    } finally {
      mmuNotifierInvalidateRangeEnd(range);
    }
    return 0;
  }

  /** Drops the entry at `i` of `v`, releasing what it references. */
  #zapEntry(v: Vma, i: number): void {
    const e = v.pte[i] ?? 0;
    const k = e & PTE_KIND_MASK;
    const pfn = v.pfn[i] ?? 0;
    if (k === PRESENT || k === PteKind.DEVICE_EXCLUSIVE || k === PteKind.PROTNONE) {
      if ((e & PTE_DIRTY) !== 0 && v.file !== undefined) v.file.dirty[v.pgoff + i] = 1;
      if (v.p2p === undefined) this.sys.putPage(pfn);
    } else if (k === PteKind.SWAP) {
      this.sys[kSwapFree](pfn);
    } else if (k === PteKind.DEVICE_PRIVATE) {
      this.sys.pagemapOf(pfn)?.putPage(pfn);
    } else if (k === PteKind.MIGRATION) {
      throw new HmmStateError("EBUSY", `${this.name}: zap of a migration entry at ${hex(v.start + i * PAGE_SIZE)}: finish the migration first`);
    }
    v.pte[i] = EMPTY;
    v.pfn[i] = 0;
  }

  #zap(v: Vma, from: number, to: number): void {
    if (v.flags & VM_PFNMAP) return;
    for (let i = from; i < to; i++) if ((v.pte[i] ?? 0) !== EMPTY) this.#zapEntry(v, i);
  }

  #unmap(start: number, end: number): void {
    const vmas = this.#vmasIn(start, end);
    if (vmas.length === 0) return;
    this.notify(MmuNotifyEvent.UNMAP, start, end, () => {
      for (const v of vmas) this.#zap(v, 0, v.pages);
    });
    for (const v of vmas) {
      this.vmas.splice(this.vmas.indexOf(v), 1);
      if (v.file !== undefined && v.file.name.startsWith("shmem@") && !this.#fileMapped(v.file)) this.sys.dropFile(v.file);
    }
  }

  #fileMapped(f: MmFile): boolean {
    return this.vmas.some((v) => v.file === f) || this.sys[kFileInUse](f, this);
  }

  /** munmap: fires UNMAP, zaps and removes the mappings in [addr, addr + len). 0 or -EINVAL. */
  munmap(addr: number, len: number): number {
    if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0 || !Number.isSafeInteger(len) || len <= 0) return -HmmErrno.EINVAL;
    this.#unmap(addr, addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE);
    return 0;
  }

  /**
   * mremap(MREMAP_MAYMOVE[|MREMAP_FIXED][|MREMAP_DONTUNMAP]): moves [addr, addr + oldLen) to a new place of
   * newLen bytes (its page-table entries move with it: move_page_tables) and fires UNMAP over the old
   * range. Returns the new address. With MREMAP_DONTUNMAP the old VMA stays, emptied: its next access
   * faults in fresh memory (a zero page, or the file's page); the kernel refuses it (-EINVAL) for a change
   * of length and for VM_PFNMAP or hugetlb mappings (vma_to_resize, resize_is_valid).
   */
  mremap(addr: number, oldLen: number, newLen: number, newAddr?: number, flags = 0): number {
    this.#checkRange("mremap", addr, oldLen);
    if (!Number.isSafeInteger(newLen) || newLen <= 0 || newLen % PAGE_SIZE !== 0) throw new HmmInputError("mremap", "newLen", newLen, "a positive multiple of PAGE_SIZE");
    if (flags !== 0 && flags !== MREMAP_DONTUNMAP) throw new HmmInputError("mremap", "flags", flags, "0 or MREMAP_DONTUNMAP (4)");
    const dontUnmap = flags === MREMAP_DONTUNMAP;
    if (dontUnmap && newLen !== oldLen) return -HmmErrno.EINVAL;
    const vmas = this.#vmasIn(addr, addr + oldLen);
    const first = vmas[0];
    if (first === undefined || vmas.length !== 1 || first.start !== addr || first.end !== addr + oldLen) return -HmmErrno.EFAULT;
    if (dontUnmap && (first.flags & (VM_PFNMAP | VM_HUGETLB)) !== 0) return -HmmErrno.EINVAL;
    const dst = newAddr ?? Math.ceil(this.#nextAddr / (HPAGE_PMD_NR * PAGE_SIZE)) * HPAGE_PMD_NR * PAGE_SIZE;
    this.#checkRange("mremap", dst, newLen);
    if (newAddr === undefined) this.#nextAddr = dst + newLen + HPAGE_PMD_NR * PAGE_SIZE;
    else this.#unmap(dst, dst + newLen);
    const keep = Math.min(oldLen, newLen) / PAGE_SIZE;
    const moved = new Vma({ start: dst, end: dst + newLen, flags: first.flags, file: first.file, pgoff: first.pgoff, pfnBase: first.pfnBase, p2p: first.p2p });
    this.notify(MmuNotifyEvent.UNMAP, addr, addr + oldLen, () => {
      // A THP moved to an address that is not 2 MiB aligned relative to its old place is split.
      const shift = (dst - addr) % (HPAGE_PMD_NR * PAGE_SIZE) !== 0;
      for (let i = 0; i < keep; i++) {
        moved.pte[i] = shift ? (first.pte[i] ?? 0) & ~PTE_PMD : (first.pte[i] ?? 0);
        moved.pfn[i] = first.pfn[i] ?? 0;
        first.pte[i] = EMPTY;
        first.pfn[i] = 0;
      }
      this.#zap(first, keep, first.pages);
    });
    if (!dontUnmap) this.vmas.splice(this.vmas.indexOf(first), 1);
    this.#insertVma(moved);
    return dst;
  }

  /** mprotect: fires PROTECTION_VMA; removing write also write-protects the entries. 0 or -ENOMEM (hole). */
  mprotect(addr: number, len: number, prot: number): number {
    this.#checkRange("mprotect", addr, len);
    if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) throw new HmmInputError("mprotect", "prot", prot, "PROT_NONE or PROT_READ and/or PROT_WRITE");
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    if (!this.#covered(addr, end)) return -HmmErrno.ENOMEM;
    const vmas = this.#vmasIn(addr, end);
    const vmFlags = (prot & PROT_READ ? VM_READ : 0) | (prot & PROT_WRITE ? VM_WRITE : 0);
    this.notify(MmuNotifyEvent.PROTECTION_VMA, addr, end, () => {
      for (const v of vmas) {
        v.flags = (v.flags & ~(VM_READ | VM_WRITE)) | vmFlags;
        if ((vmFlags & VM_WRITE) === 0) for (let i = 0; i < v.pages; i++) v.pte[i] = (v.pte[i] ?? 0) & ~PTE_WRITE;
      }
    });
    return 0;
  }

  #covered(start: number, end: number): boolean {
    let at = start;
    for (let i = this.vmaIndexFrom(start); i < this.vmas.length && at < end; i++) {
      const v = this.vmas[i];
      if (v === undefined || v.start > at) return false;
      at = v.end;
    }
    return at >= end;
  }

  /** madvise(MADV_DONTNEED): fires CLEAR and zaps; the next access faults in a zero or new page. */
  madvise(addr: number, len: number, advice: number): number {
    this.#checkRange("madvise", addr, len);
    if (advice !== MADV_DONTNEED && advice !== MADV_HUGEPAGE && advice !== MADV_FREE) throw new HmmInputError("madvise", "advice", advice, "MADV_DONTNEED (4), MADV_FREE (8) or MADV_HUGEPAGE (14)");
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    if (!this.#covered(addr, end)) return -HmmErrno.ENOMEM;
    const vmas = this.#vmasIn(addr, end);
    if (advice === MADV_HUGEPAGE) {
      for (const v of vmas) v.flags |= VM_HUGEPAGE;
      return 0;
    }
    if (vmas.some((v) => (v.flags & VM_PFNMAP) !== 0 || (v.flags & VM_HUGETLB) !== 0)) return -HmmErrno.EINVAL;
    if (advice === MADV_FREE) return this.#madviseFree(vmas, addr, end);
    this.notify(MmuNotifyEvent.CLEAR, addr, end, () => {
      for (const v of vmas) this.#zap(v, 0, v.pages);
    });
    return 0;
  }

  /**
   * madvise_free_single_vma: fires CLEAR; swap entries are dropped (the data is not needed any more),
   * present pages of this process alone lose their dirty bit and become lazily freeable, and leave the
   * swap cache (madvise_free_pte_range). Device entries (device-private, and coherent pages, which are
   * zone-device folios) are left as they are, as is a THP the range does not cover whole (the kernel
   * splits it and frees its covered part; the model keeps it). -EINVAL for a mapping that is not
   * private anonymous.
   */
  #madviseFree(vmas: Vma[], addr: number, end: number): number {
    if (vmas.some((v) => v.file !== undefined || (v.flags & VM_SHARED) !== 0 || v.p2p !== undefined || (v.flags & VM_MIXEDMAP) !== 0)) return -HmmErrno.EINVAL;
    const sys = this.sys;
    this.notify(MmuNotifyEvent.CLEAR, addr, end, () => {
      for (const v of vmas) {
        for (let i = 0; i < v.pages; i++) {
          const e = v.pte[i] ?? 0;
          const k = e & PTE_KIND_MASK;
          const pfn = v.pfn[i] ?? 0;
          if (k === PteKind.SWAP) {
            sys[kSwapFree](pfn);
            v.pte[i] = EMPTY;
            v.pfn[i] = 0;
          } else if (k === PRESENT && sys.refCount(pfn) === 1 && sys.coherentPagemapOf(pfn) === undefined) {
            if ((e & PTE_PMD) !== 0) {
              const head = i - ((v.start / PAGE_SIZE + i) % HPAGE_PMD_NR);
              if (head < 0 || v.start + head * PAGE_SIZE < addr || v.start + (head + HPAGE_PMD_NR) * PAGE_SIZE > end) continue;
            }
            v.pte[i] = e & ~PTE_DIRTY;
            sys[kMarkLazyFree](pfn);
          }
        }
      }
    });
    return 0;
  }

  /**
   * The OOM reaper's unmap of private anonymous memory (__oom_reap_task_mm): a CLEAR that may not block.
   * -EAGAIN, with nothing changed, when a subscriber cannot take its lock without sleeping.
   */
  oomReap(addr: number, len: number): number {
    this.#checkRange("oomReap", addr, len);
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    const vmas = this.#vmasIn(addr, end).filter((v) => v.file === undefined && (v.flags & (VM_PFNMAP | VM_HUGETLB)) === 0 && v.p2p === undefined);
    return this.notify(
      MmuNotifyEvent.CLEAR,
      addr,
      end,
      () => {
        for (const v of vmas) this.#zap(v, 0, v.pages);
      },
      undefined,
      false,
    );
  }

  /** The VMA and entry index of a mapped address, or throws (bad input: not mapped). */
  #at(fn: string, addr: number): { v: Vma; i: number } {
    if (!Number.isSafeInteger(addr) || addr < 0) throw new HmmInputError(fn, "addr", addr, "a user address");
    const v = this.findVma(addr);
    if (v === undefined) throw new HmmInputError(fn, "addr", addr, `an address mapped in ${this.name}`);
    return { v, i: Math.floor((addr - v.start) / PAGE_SIZE) };
  }

  /** Splits the PMD mapping around entry `i` into 512 PTEs (no notifier: callers fire CLEAR). */
  #splitPmd(v: Vma, i: number): void {
    const base = i - (((v.start / PAGE_SIZE) + i) % HPAGE_PMD_NR);
    for (let j = Math.max(0, base); j < Math.min(v.pages, base + HPAGE_PMD_NR); j++) v.pte[j] = (v.pte[j] ?? 0) & ~PTE_PMD;
    this.sys.stats.thpSplits++;
  }

  /** split_huge_pmd of the THP around `addr`: fires CLEAR over the 2 MiB; 0, or -EINVAL if not a THP. */
  splitHugePage(addr: number): number {
    const { v, i } = this.#at("splitHugePage", addr);
    if (((v.pte[i] ?? 0) & PTE_PMD) === 0 || (v.flags & VM_HUGETLB) !== 0) return -HmmErrno.EINVAL;
    const start = Math.floor(addr / (HPAGE_PMD_NR * PAGE_SIZE)) * HPAGE_PMD_NR * PAGE_SIZE;
    this.notify(MmuNotifyEvent.CLEAR, start, start + HPAGE_PMD_NR * PAGE_SIZE, () => {
      this.#splitPmd(v, i);
    });
    return 0;
  }

  /** Reclaim of one private page (try_to_unmap + swap-out): fires CLEAR; 0, or -EBUSY if not swappable. */
  swapOut(addr: number): number {
    const { v, i } = this.#at("swapOut", addr);
    const e = v.pte[i] ?? 0;
    const pfn = v.pfn[i] ?? 0;
    // A coherent device page is not on an LRU list: reclaim never picks it.
    if ((e & PTE_KIND_MASK) !== PRESENT || v.file !== undefined || v.p2p !== undefined || this.sys.refCount(pfn) !== 1 || this.sys.coherentPagemapOf(pfn) !== undefined) return -HmmErrno.EBUSY;
    const page = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    if ((e & PTE_PMD) !== 0) this.splitHugePage(page);
    if (((v.pte[i] ?? 0) & PTE_DIRTY) === 0 && this.sys.lazyFree(pfn)) {
      // A lazily freed page not written since MADV_FREE is discarded, not swapped (try_to_unmap_one).
      this.notify(MmuNotifyEvent.CLEAR, page, page + PAGE_SIZE, () => {
        v.pte[i] = EMPTY;
        v.pfn[i] = 0;
        this.sys.putPage(pfn);
      });
      return 0;
    }
    this.notify(MmuNotifyEvent.CLEAR, page, page + PAGE_SIZE, () => {
      // try_to_unmap_one moves a dirty pte's bit to the page; pageout writes only what is not in swap.
      if (((v.pte[i] ?? 0) & PTE_DIRTY) !== 0) this.sys.setPageDirty(pfn);
      const slot = this.sys[kSwapOutPage](pfn);
      v.pte[i] = PteKind.SWAP | ((v.pte[i] ?? 0) & PTE_DIRTY);
      v.pfn[i] = slot;
      this.sys.putPage(pfn);
    });
    this.sys.stats.swapOuts++;
    return 0;
  }

  /**
   * NUMA or compaction migration of one private page (try_to_migrate): fires CLEAR, leaves a migration
   * entry while `during` runs (a race point: faults then see -EBUSY), copies to a new page. 0 or -EBUSY.
   */
  migratePage(addr: number, during?: () => void): number {
    return this.#migrateOne("migratePage", addr, false, during);
  }

  /**
   * migrate_device_coherent_folio, as get_user_pages(FOLL_LONGTERM) calls it
   * (check_and_migrate_movable_pages): a coherent device page may not be pinned for long, so it moves to
   * a system page first (fires CLEAR, like try_to_migrate). 0, or -EBUSY when it is not a coherent page
   * mapped only here.
   */
  migrateDeviceCoherentPage(addr: number): number {
    return this.#migrateOne("migrateDeviceCoherentPage", addr, true);
  }

  #migrateOne(fn: string, addr: number, coherent: boolean, during?: () => void): number {
    const { v, i } = this.#at(fn, addr);
    const e = v.pte[i] ?? 0;
    const pfn = v.pfn[i] ?? 0;
    if ((e & PTE_KIND_MASK) !== PRESENT || v.file !== undefined || v.p2p !== undefined || this.sys.refCount(pfn) !== 1) return -HmmErrno.EBUSY;
    // NUMA and compaction migrate LRU pages only; a coherent device page moves only on its own path.
    if ((this.sys.coherentPagemapOf(pfn) !== undefined) !== coherent) return -HmmErrno.EBUSY;
    const page = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    if ((e & PTE_PMD) !== 0) this.splitHugePage(page);
    const bits = (v.pte[i] ?? 0) & (PTE_WRITE | PTE_DIRTY);
    this.notify(MmuNotifyEvent.CLEAR, page, page + PAGE_SIZE, () => {
      v.pte[i] = PteKind.MIGRATION | bits;
    });
    during?.();
    const fresh = this.sys.allocPage();
    this.sys.copyPage(fresh, pfn);
    v.pte[i] = PRESENT | bits;
    v.pfn[i] = fresh;
    this.sys.putPage(pfn);
    this.sys.stats.migrations++;
    return 0;
  }

  /** The NUMA-hinting scanner: fires PROTECTION_VMA and turns present private entries into protnone. */
  numaScan(addr: number, len: number): number {
    this.#checkRange("numaScan", addr, len);
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    const vmas = this.#vmasIn(addr, end);
    this.notify(MmuNotifyEvent.PROTECTION_VMA, addr, end, () => {
      for (const v of vmas) {
        if (v.p2p !== undefined || (v.flags & VM_PFNMAP) !== 0) continue;
        for (let i = 0; i < v.pages; i++) {
          const e = v.pte[i] ?? 0;
          // change_pte_range skips zone-device folios (a coherent device page stays present).
          if ((e & PTE_KIND_MASK) === PRESENT && this.sys.coherentPagemapOf(v.pfn[i] ?? 0) === undefined) v.pte[i] = (e & ~PTE_KIND_MASK) | PteKind.PROTNONE;
        }
      }
    });
    return 0;
  }

  /**
   * fork: a new mm with copies of every VMA. Private writable mappings become copy-on-write in both
   * (the parent's device mirrors see PROTECTION_PAGE first); shared mappings share their pages.
   */
  fork(): Mm {
    if (this.users <= 0) throw new HmmStateError("EFAULT", `fork: ${this.name} has exited`);
    const child = new Mm(this.sys);
    child.#nextAddr = this.#nextAddr;
    for (const v of this.vmas) {
      const cow = (v.flags & VM_SHARED) === 0 && (v.flags & VM_PFNMAP) === 0 && v.p2p === undefined;
      // Device-exclusive entries are restored before they are copied (the CPU needs the page back).
      for (let i = 0; i < v.pages; i++) if (((v.pte[i] ?? 0) & PTE_KIND_MASK) === PteKind.DEVICE_EXCLUSIVE) this.#restoreExclusive(v, i);
      const copy = () => {
        const c = new Vma({ start: v.start, end: v.end, flags: v.flags, file: v.file, pgoff: v.pgoff, pfnBase: v.pfnBase, p2p: v.p2p });
        for (let i = 0; i < v.pages; i++) {
          let e = v.pte[i] ?? 0;
          const k = e & PTE_KIND_MASK;
          const pfn = v.pfn[i] ?? 0;
          if (k === EMPTY) continue;
          if (k === PteKind.MIGRATION) throw new HmmStateError("EBUSY", `fork: a migration is in progress at ${hex(v.start + i * PAGE_SIZE)}`);
          if (k === PteKind.SWAP) {
            // swap_duplicate: the model gives the child its own copy of the slot.
            const tmp = this.sys.allocPage();
            this.sys[kSwapRead](pfn, tmp, false);
            c.pfn[i] = this.sys[kSwapWrite](tmp);
            this.sys.putPage(tmp);
            c.pte[i] = e;
            continue;
          }
          if (cow && k === PRESENT && (e & PTE_PMD) === 0 && this.sys.maybeDmaPinned(pfn)) {
            // copy_present_page: a DMA-pinned private page is copied for the child now; the parent keeps
            // it mapped as it was, so the device and the parent go on sharing one page.
            const fresh = this.sys.allocPage();
            this.sys.copyPage(fresh, pfn);
            c.pte[i] = e;
            c.pfn[i] = fresh;
            continue;
          }
          if (k === PteKind.DEVICE_PRIVATE) this.sys.pagemapOf(pfn)?.getPage(pfn);
          else if (k !== PteKind.SPECIAL && v.p2p === undefined) this.sys.getPage(pfn);
          if (cow && (k === PRESENT || k === PteKind.DEVICE_PRIVATE || k === PteKind.PROTNONE)) {
            e &= ~PTE_WRITE;
            v.pte[i] = e;
          }
          c.pte[i] = e;
          c.pfn[i] = pfn;
        }
        child.vmas.push(c);
      };
      if (cow && (v.flags & VM_WRITE) !== 0) this.notify(MmuNotifyEvent.PROTECTION_PAGE, v.start, v.end, copy);
      else copy();
    }
    return child;
  }

  /** exit_mmap: RELEASE to every notifier, then everything is unmapped. */
  exit(): void {
    if (this.users <= 0) return;
    this.users = 0;
    mmuNotifierRelease(this);
    if (this.vmas.length > 0) {
      const start = this.vmas[0]?.start ?? 0;
      const end = this.vmas[this.vmas.length - 1]?.end ?? 0;
      this.#unmap(start, end);
    }
    this.sys.mms.delete(this);
  }

  // ---- faults ----------------------------------------------------------------------------------
  /**
   * handle_mm_fault: makes the page at `addr` present (readable; writable with FAULT_FLAG_WRITE).
   * Returns 0 or VM_FAULT_SIGSEGV / VM_FAULT_SIGBUS; a migration entry returns 0 without progress
   * (migration_entry_wait: the caller retries).
   */
  handleMmFault(addr: number, flags: number): number {
    const v = this.findVma(addr);
    if (v === undefined) return VM_FAULT_SIGSEGV;
    const write = (flags & FAULT_FLAG_WRITE) !== 0;
    if ((v.flags & VM_READ) === 0 || (write && (v.flags & VM_WRITE) === 0)) return VM_FAULT_SIGSEGV;
    if ((v.flags & VM_PFNMAP) !== 0) return VM_FAULT_SIGBUS;
    const i = Math.floor((addr - v.start) / PAGE_SIZE);
    const e = v.pte[i] ?? 0;
    const k = e & PTE_KIND_MASK;
    const stats = this.sys.stats;
    switch (k) {
      case EMPTY:
        stats.minorFaults++;
        return this.#faultNone(v, i, write);
      case PRESENT:
        if (write && (e & PTE_WRITE) === 0) {
          stats.minorFaults++;
          this.#wpFault(v, i);
        }
        return 0;
      case PteKind.ZERO:
        if (write) {
          stats.minorFaults++;
          this.#cowBreak(v, i);
        }
        return 0;
      case PteKind.SWAP: {
        stats.majorFaults++;
        const fresh = this.sys.allocPage();
        if (write) {
          // should_try_to_free_swap: a write fault frees the slot; the page is mapped writable and dirty.
          this.sys[kSwapRead](v.pfn[i] ?? 0, fresh, true);
          v.pte[i] = PRESENT | PTE_WRITE | PTE_DIRTY;
        } else {
          // A read fault keeps the page in the swap cache, clean, and (exclusive) maps it writable but not
          // dirty: a later CPU store dirties the pte alone, the page's swap slot becoming stale.
          this.sys[kSwapReadCached](v.pfn[i] ?? 0, fresh);
          v.pte[i] = PRESENT | ((v.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0);
        }
        v.pfn[i] = fresh;
        return 0;
      }
      case PteKind.MIGRATION:
        return 0;
      case PteKind.DEVICE_PRIVATE: {
        const pfn = v.pfn[i] ?? 0;
        const pgmap = this.sys.pagemapOf(pfn);
        if (pgmap === undefined) return VM_FAULT_SIGBUS;
        stats.minorFaults++;
        const ret = pgmap.ops.migrateToRam({ mm: this, vma: v, address: Math.floor(addr / PAGE_SIZE) * PAGE_SIZE, page: pfn, write });
        if (ret !== 0) return ret;
        // The entry is now a normal one (or the migration failed and it is still device-private).
        return ((v.pte[i] ?? 0) & PTE_KIND_MASK) === PteKind.DEVICE_PRIVATE ? VM_FAULT_SIGBUS : this.handleMmFault(addr, flags);
      }
      case PteKind.DEVICE_EXCLUSIVE:
        stats.minorFaults++;
        this.#restoreExclusive(v, i);
        return this.handleMmFault(addr, flags);
      case PteKind.PROTNONE:
        stats.minorFaults++;
        v.pte[i] = (e & ~PTE_KIND_MASK) | PRESENT;
        return this.handleMmFault(addr, flags);
      default:
        return VM_FAULT_SIGBUS;
    }
  }

  #faultNone(v: Vma, i: number, write: boolean): number {
    const sys = this.sys;
    const f = v.file;
    if (f !== undefined) {
      const pfn = sys[kFilePage](f, v.pgoff + i);
      if ((v.flags & VM_SHARED) !== 0) {
        sys.getPage(pfn);
        v.pte[i] = PRESENT | (write ? PTE_WRITE | PTE_DIRTY : 0);
        v.pfn[i] = pfn;
        if (write) f.dirty[v.pgoff + i] = 1;
      } else if (write) {
        const fresh = sys.allocPage();
        sys.copyPage(fresh, pfn);
        v.pte[i] = PRESENT | PTE_WRITE | PTE_DIRTY;
        v.pfn[i] = fresh;
      } else {
        sys.getPage(pfn);
        v.pte[i] = PRESENT;
        v.pfn[i] = pfn;
      }
      return 0;
    }
    const vpn = v.start / PAGE_SIZE + i;
    const base = i - (vpn % HPAGE_PMD_NR);
    if ((v.flags & (VM_HUGEPAGE | VM_HUGETLB)) !== 0 && base >= 0 && base + HPAGE_PMD_NR <= v.pages && this.#allNone(v, base)) {
      // do_huge_pmd_anonymous_page / hugetlb_fault: one 2 MiB page, mapped by a PMD.
      const pfn = sys.allocHuge(9);
      const bits = PRESENT | PTE_PMD | ((v.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0) | (write ? PTE_DIRTY : 0);
      for (let j = 0; j < HPAGE_PMD_NR; j++) {
        v.pte[base + j] = bits;
        v.pfn[base + j] = pfn + j;
      }
      return 0;
    }
    if ((v.flags & VM_HUGETLB) !== 0) return VM_FAULT_SIGBUS;
    if (!write) {
      v.pte[i] = PteKind.ZERO;
      v.pfn[i] = sys.zeroPfn;
      return 0;
    }
    v.pte[i] = PRESENT | PTE_WRITE | PTE_DIRTY;
    v.pfn[i] = sys.allocPage();
    return 0;
  }

  #allNone(v: Vma, base: number): boolean {
    for (let j = 0; j < HPAGE_PMD_NR; j++) if ((v.pte[base + j] ?? 0) !== EMPTY) return false;
    return true;
  }

  /** do_wp_page: a write to a present read-only entry of a writable VMA. */
  #wpFault(v: Vma, i: number): void {
    const e = v.pte[i] ?? 0;
    const pfn = v.pfn[i] ?? 0;
    if ((v.flags & VM_SHARED) !== 0 || v.p2p !== undefined) {
      v.pte[i] = e | PTE_WRITE | PTE_DIRTY;
      if (v.file !== undefined) v.file.dirty[v.pgoff + i] = 1;
      return;
    }
    // An anonymous page mapped only here is reused in place; a shared or page-cache page is copied.
    const pageCache = v.file !== undefined && (v.file.pages[v.pgoff + i] ?? 0) === pfn + 1;
    // A page a driver inserted (VM_MIXEDMAP) is not anonymous either: vm_normal_page finds it, wp_page_copy copies it.
    if (!pageCache && (v.flags & VM_MIXEDMAP) === 0 && this.sys.refCount(pfn) === 1) {
      if ((e & PTE_PMD) !== 0) {
        const base = i - ((v.start / PAGE_SIZE + i) % HPAGE_PMD_NR);
        for (let j = Math.max(0, base); j < Math.min(v.pages, base + HPAGE_PMD_NR); j++) if (((v.pte[j] ?? 0) & PTE_KIND_MASK) === PRESENT) v.pte[j] = (v.pte[j] ?? 0) | PTE_WRITE;
      }
      v.pte[i] = e | PTE_WRITE | PTE_DIRTY;
      return;
    }
    this.#cowBreak(v, i);
  }

  /** wp_page_copy: a private copy for this mm, with CLEAR fired for the page first. */
  #cowBreak(v: Vma, i: number): void {
    const page = v.start + i * PAGE_SIZE;
    if (((v.pte[i] ?? 0) & PTE_PMD) !== 0) this.splitHugePage(page);
    this.notify(MmuNotifyEvent.CLEAR, page, page + PAGE_SIZE, () => {
      const old = v.pfn[i] ?? 0;
      const fresh = this.sys.allocPage();
      if (((v.pte[i] ?? 0) & PTE_KIND_MASK) !== PteKind.ZERO) this.sys.copyPage(fresh, old);
      this.sys.putPage(old);
      v.pte[i] = PRESENT | PTE_WRITE | PTE_DIRTY;
      v.pfn[i] = fresh;
    });
    this.sys.stats.cowCopies++;
  }

  /** remove_device_exclusive_entry: fires EXCLUSIVE and gives the page back to the CPU. */
  #restoreExclusive(v: Vma, i: number): void {
    const page = v.start + i * PAGE_SIZE;
    this.notify(MmuNotifyEvent.EXCLUSIVE, page, page + PAGE_SIZE, () => {
      v.pte[i] = ((v.pte[i] ?? 0) & ~PTE_KIND_MASK) | PRESENT;
    });
  }

  /**
   * make_device_exclusive: faults the page in writable, fires EXCLUSIVE with `owner` and replaces the
   * entry by a device-exclusive one. Returns the page frame, or a negative errno.
   */
  makeDeviceExclusive(addr: number, owner: unknown): number {
    const fault = this.handleMmFault(addr, FAULT_FLAG_WRITE | FAULT_FLAG_REMOTE);
    if (fault !== 0) return -HmmErrno.EFAULT;
    const { v, i } = this.#at("makeDeviceExclusive", addr);
    const e = v.pte[i] ?? 0;
    if ((e & PTE_KIND_MASK) !== PRESENT || v.p2p !== undefined) return -HmmErrno.EBUSY;
    const page = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    if ((e & PTE_PMD) !== 0) this.splitHugePage(page);
    this.notify(
      MmuNotifyEvent.EXCLUSIVE,
      page,
      page + PAGE_SIZE,
      () => {
        v.pte[i] = ((v.pte[i] ?? 0) & ~PTE_KIND_MASK) | PteKind.DEVICE_EXCLUSIVE;
      },
      owner,
    );
    return v.pfn[i] ?? 0;
  }

  /**
   * vm_insert_page, as a driver's mmap handler calls it: maps the page `pfn` (RAM the mm hands out) at
   * `addr` with a reference of its own and marks the VMA VM_MIXEDMAP. The entry is a normal present one
   * with the VMA's page protection, which for a private mapping is read-only (a CPU write copies the page).
   * 0, -EINVAL (no VMA, a VM_PFNMAP VMA or not such a page) or -EBUSY (the entry is in use).
   */
  vmInsertPage(addr: number, pfn: number): number {
    if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) throw new HmmInputError("vm_insert_page", "addr", addr, "a page-aligned address");
    const v = this.findVma(addr);
    if (v === undefined || (v.flags & VM_PFNMAP) !== 0 || v.p2p !== undefined || !this.sys.managed(pfn)) return -HmmErrno.EINVAL;
    const i = (addr - v.start) / PAGE_SIZE;
    if ((v.pte[i] ?? 0) !== EMPTY) return -HmmErrno.EBUSY;
    v.flags |= VM_MIXEDMAP;
    this.sys.getPage(pfn);
    v.pte[i] = PRESENT | ((v.flags & VM_SHARED) !== 0 && (v.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0);
    v.pfn[i] = pfn;
    return 0;
  }

  // ---- CPU access ------------------------------------------------------------------------------
  /** The frame of `addr` for a CPU access, faulting as the CPU would; throws EFAULT on SIGSEGV/SIGBUS. */
  #cpuPage(addr: number, write: boolean): number {
    for (let tries = 0; tries < 8; tries++) {
      const v = this.findVma(addr);
      if (v !== undefined) {
        const i = Math.floor((addr - v.start) / PAGE_SIZE);
        const e = v.pte[i] ?? 0;
        const k = e & PTE_KIND_MASK;
        if ((v.flags & VM_READ) !== 0 && (!write || (v.flags & VM_WRITE) !== 0)) {
          if (k === PteKind.SPECIAL) return v.pfn[i] ?? 0;
          if (k === PRESENT && (!write || (e & PTE_WRITE) !== 0)) {
            if (write) {
              v.pte[i] = e | PTE_DIRTY;
              this.sys[kClearLazyFree](v.pfn[i] ?? 0);
              if (v.file !== undefined && (v.flags & VM_SHARED) !== 0) v.file.dirty[v.pgoff + i] = 1;
            }
            return v.pfn[i] ?? 0;
          }
          if (k === PteKind.ZERO && !write) return v.pfn[i] ?? 0;
          if (k === PteKind.MIGRATION) throw new HmmStateError("EBUSY", `${this.name}: CPU access to ${hex(addr)} waits for a migration in progress`);
        }
      }
      const ret = this.handleMmFault(addr, write ? FAULT_FLAG_WRITE : 0);
      if (ret !== 0) throw new HmmStateError("EFAULT", `${this.name}: CPU ${write ? "write" : "read"} at ${hex(addr)}: ${ret & VM_FAULT_SIGBUS ? "SIGBUS" : "SIGSEGV"}`);
    }
    throw new HmmStateError("EFAULT", `${this.name}: CPU access at ${hex(addr)} does not settle`);
  }

  /** A CPU read of user memory (faults pages in as needed). */
  read(addr: number, len: number): Uint8Array {
    if (!Number.isSafeInteger(len) || len < 0) throw new HmmInputError("read", "len", len, "a byte count >= 0");
    const out = new Uint8Array(len);
    let pos = 0;
    while (pos < len) {
      const at = addr + pos;
      const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), len - pos);
      const pfn = this.#cpuPage(at, false);
      this.sys.memory.readInto(unsafePhysAddr(pfn * PAGE_SIZE + (at % PAGE_SIZE)), out.subarray(pos, pos + n));
      pos += n;
    }
    return out;
  }

  /** A CPU write of user memory (faults, COW breaks as needed). */
  write(addr: number, bytes: Uint8Array): void {
    let pos = 0;
    while (pos < bytes.length) {
      const at = addr + pos;
      const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), bytes.length - pos);
      const pfn = this.#cpuPage(at, true);
      this.sys.memory.write(unsafePhysAddr(pfn * PAGE_SIZE + (at % PAGE_SIZE)), bytes.subarray(pos, pos + n));
      pos += n;
    }
  }

  /** The entry kind and frame at `addr` (a page-table dump for tests and tools), or undefined outside VMAs. */
  pteAt(addr: number): { kind: PteKind; write: boolean; pmd: boolean; pfn: number } | undefined {
    const v = this.findVma(addr);
    if (v === undefined) return undefined;
    const i = Math.floor((addr - v.start) / PAGE_SIZE);
    const e = v.pte[i] ?? 0;
    return { kind: (e & PTE_KIND_MASK) as PteKind, write: (e & PTE_WRITE) !== 0, pmd: (e & PTE_PMD) !== 0, pfn: v.pfn[i] ?? 0 };
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Host bytes of this mm's page tables and VMAs (5 B per page plus a VMA header). */
  get [kPageTableBytes](): number {
    let n = 0;
    for (const v of this.vmas) n += v.pte.byteLength + v.pfn.byteLength + 128;
    return n;
  }
}
