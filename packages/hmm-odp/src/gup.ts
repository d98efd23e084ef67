import { PAGE_SIZE } from "@dmasim/memory";
import { HmmErrno, VM_FAULT_ERROR, VM_IO, VM_PFNMAP, VM_READ, VM_WRITE } from "./constants.js";
import { HmmInputError } from "./errors.js";
import { FAULT_FLAG_REMOTE, FAULT_FLAG_WRITE } from "./mm.js";
import type { Mm } from "./mm.js";
import { PTE_KIND_MASK, PTE_WRITE, PteKind } from "./pte.js";

/** FOLL_WRITE: the caller will write the pages (include/linux/mm_types.h). */
export const FOLL_WRITE = 0x01;
/** FOLL_LONGTERM: the reference may be held indefinitely (RDMA, VFIO). */
export const FOLL_LONGTERM = 0x100;
const KNOWN_FOLL = FOLL_WRITE | FOLL_LONGTERM;

/** Faults one page may take before GUP gives up on it (each fault changes the entry's kind). */
const MAX_FAULTS_PER_PAGE = 8;

/**
 * get_user_pages (mm/gup.c __get_user_pages), taking the mmap read lock itself as the _unlocked and
 * _fast variants do: for each of `nrPages` pages from `start`, follow the CPU page table
 * (follow_page_pte) and, where the entry cannot be followed for this access, fault it in with
 * handle_mm_fault and follow again. A device-private page so migrates back to system memory
 * (migrate_to_ram), a device-exclusive entry is restored, a swapped page is read in, and FOLL_WRITE
 * breaks COW and replaces the zero page. Each page got takes a reference (get_page; drop it with
 * `putUserPages`) and its frame goes to `pages[i]`.
 *
 * Returns the pages got, or, if the first page fails, -EFAULT (no VMA, VM_IO | VM_PFNMAP, an access the
 * VMA does not allow, a fault that fails), -EREMOTEIO (a P2P page: the model has no FOLL_PCI_P2PDMA) or
 * -EBUSY (a migration entry, where the kernel would wait for the migration).
 *
 * FOLL_LONGTERM: check_and_migrate_movable_pages moves a MEMORY_DEVICE_COHERENT page to system memory
 * before it is taken (the model has no ZONE_MOVABLE or CMA, the other pages it moves). Pins (FOLL_PIN)
 * are references here.
 */
export function getUserPages(mm: Mm, start: number, nrPages: number, gupFlags: number, pages?: Uint32Array): number {
  const fn = "get_user_pages";
  if (!Number.isSafeInteger(start) || start < 0 || start % PAGE_SIZE !== 0) throw new HmmInputError(fn, "start", start, "a page-aligned user address");
  if (!Number.isSafeInteger(nrPages) || nrPages < 0) throw new HmmInputError(fn, "nrPages", nrPages, "a page count >= 0");
  if (!Number.isInteger(gupFlags) || (gupFlags & ~KNOWN_FOLL) !== 0) throw new HmmInputError(fn, "gupFlags", gupFlags, "FOLL_WRITE and/or FOLL_LONGTERM");
  if (pages !== undefined && pages.length < nrPages) throw new HmmInputError(fn, "pages", pages, `an array of at least nrPages (${nrPages}) entries`);
  const write = (gupFlags & FOLL_WRITE) !== 0;
  mm.mmapReadLock();
  try {
    for (let n = 0; n < nrPages; n++) {
      const addr = start + n * PAGE_SIZE;
      let pfn = followOrFault(mm, addr, write);
      if (pfn >= 0 && (gupFlags & FOLL_LONGTERM) !== 0 && mm.sys.coherentPagemapOf(pfn) !== undefined) {
        // folio_is_longterm_pinnable is false for device coherent memory: migrate, then follow again.
        if (mm.migrateDeviceCoherentPage(addr) !== 0) return n === 0 ? -HmmErrno.EBUSY : n;
        pfn = followOrFault(mm, addr, write);
      }
      if (pfn < 0) return n === 0 ? pfn : n;
      mm.sys.getPage(pfn);
      if (pages !== undefined) pages[n] = pfn;
    }
  } finally {
    mm.mmapReadUnlock();
  }
  return nrPages;
}

/** put_page of each of the first `n` frames getUserPages returned (unpin_user_pages for pins). */
export function putUserPages(mm: Mm, pages: Uint32Array, n: number): void {
  for (let i = 0; i < n; i++) mm.sys.putPage(pages[i] ?? 0);
}

/** The frame at `addr` for this access, faulting as needed, or a negative errno. */
function followOrFault(mm: Mm, addr: number, write: boolean): number {
  for (let faults = 0; ; faults++) {
    const v = mm.findVma(addr);
    // check_vma_flags
    if (v === undefined || (v.flags & (VM_IO | VM_PFNMAP)) !== 0) return -HmmErrno.EFAULT;
    if ((write && (v.flags & VM_WRITE) === 0) || (!write && (v.flags & VM_READ) === 0)) return -HmmErrno.EFAULT;
    if (v.p2p !== undefined) return -HmmErrno.EREMOTEIO;
    const i = Math.floor((addr - v.start) / PAGE_SIZE);
    const e = v.pte[i] ?? 0;
    const k = e & PTE_KIND_MASK;
    // follow_page_pte: a present entry (or the zero page for a read) is followed as it is.
    if (k === PteKind.PRESENT && (!write || (e & PTE_WRITE) !== 0)) return v.pfn[i] ?? 0;
    if (k === PteKind.ZERO && !write) return v.pfn[i] ?? 0;
    if (k === PteKind.MIGRATION) return -HmmErrno.EBUSY;
    if (faults === MAX_FAULTS_PER_PAGE) return -HmmErrno.EFAULT;
    // faultin_page
    const ret = mm.handleMmFault(addr, (write ? FAULT_FLAG_WRITE : 0) | FAULT_FLAG_REMOTE);
    if ((ret & VM_FAULT_ERROR) !== 0) return -HmmErrno.EFAULT;
  }
}
