import { PAGE_SIZE } from "@dmasim/memory";
import { HPAGE_PMD_NR, HmmErrno, MmuNotifyEvent, VM_HUGETLB, VM_IO, VM_PFNMAP } from "./constants.js";
import { HmmInputError } from "./errors.js";
import type { MmSystem } from "./mm-system.js";
import type { Mm } from "./mm.js";
import { PTE_DIRTY, PTE_KIND_MASK, PTE_PMD, PTE_WRITE, PteKind } from "./pte.js";
import type { Vma } from "./vma.js";

/** migrate_pfn flags: an entry of src/dst is (pfn << MIGRATE_PFN_SHIFT) | flags. */
export const MIGRATE_PFN_VALID = 1 << 0;
/** MIGRATE_PFN_MIGRATE: the page was collected and may be migrated. */
export const MIGRATE_PFN_MIGRATE = 1 << 1;
/** MIGRATE_PFN_WRITE: the page was mapped writable. */
export const MIGRATE_PFN_WRITE = 1 << 3;
/** MIGRATE_PFN_COMPOUND: the entry is a whole huge page. */
export const MIGRATE_PFN_COMPOUND = 1 << 4;
/** Bits below the pfn in a migrate_pfn entry. */
export const MIGRATE_PFN_SHIFT = 6;
const SCALE = 1 << MIGRATE_PFN_SHIFT;

/** enum migrate_vma_direction. */
export const MIGRATE_VMA_SELECT_SYSTEM = 1 << 0;
/** Collect device-private pages (migration back to RAM). */
export const MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 1 << 1;

/** migrate_pfn. */
export function migratePfn(pfn: number): number {
  return pfn * SCALE + MIGRATE_PFN_VALID;
}

/** migrate_pfn_to_page (the frame), or -1 for an entry without VALID. */
export function migratePfnToPfn(mpfn: number): number {
  return (mpfn & MIGRATE_PFN_VALID) === 0 ? -1 : Math.floor(mpfn / SCALE);
}

/** struct migrate_vma. src and dst hold one mpfn per page (numbers: pfn * 64 + flags). */
export class MigrateVma {
  /** The process whose pages are migrated. */
  mm: Mm;
  /** The VMA of the range (migrate->vma). */
  vma: Vma | undefined;
  /** First address of the range. */
  start: number;
  /** Address just past the range. */
  end: number;
  /** migrate->src: the collected source pages as migrate_pfn entries. */
  src: Float64Array;
  /** migrate->dst: the destination pages the driver fills in, as migrate_pfn entries. */
  dst: Float64Array;
  /** Pages collected for migration. */
  cpages = 0;
  /** Pages in the range. */
  npages = 0;
  /** pgmap_owner: only device-private pages of this owner are collected. */
  pgmapOwner: unknown;
  /** MIGRATE_VMA_SELECT_* bits: which pages to collect. */
  flags: number;
  /** The device-private page a CPU fault is migrating (migrate_to_ram), or -1. */
  faultPage = -1;

  constructor(init: { mm: Mm; vma: Vma | undefined; start: number; end: number; pgmapOwner: unknown; flags: number; faultPage?: number }) {
    this.mm = init.mm;
    this.vma = init.vma;
    this.start = init.start;
    this.end = init.end;
    const n = Math.max(0, Math.ceil((init.end - init.start) / PAGE_SIZE));
    this.src = new Float64Array(n);
    this.dst = new Float64Array(n);
    this.pgmapOwner = init.pgmapOwner;
    this.flags = init.flags;
    this.faultPage = init.faultPage ?? -1;
  }
}

/**
 * migrate_vma_setup: collects the pages of [start, end) that can move (firing MIGRATE with the owner),
 * and replaces their entries by migration entries. 0 even when nothing was collected (cpages 0);
 * -EINVAL for a missing, hugetlb or special VMA, an empty range or a range outside the VMA.
 */
export function migrateVmaSetup(args: MigrateVma): number {
  const v = args.vma;
  const start = Math.floor(args.start / PAGE_SIZE) * PAGE_SIZE;
  const end = Math.ceil(args.end / PAGE_SIZE) * PAGE_SIZE;
  args.npages = 0;
  args.cpages = 0;
  if (v === undefined || (v.flags & (VM_HUGETLB | VM_IO | VM_PFNMAP)) !== 0 || v.p2p !== undefined) return -HmmErrno.EINVAL;
  if (end <= start || start < v.start || end > v.end) return -HmmErrno.EINVAL;
  const n = (end - start) / PAGE_SIZE;
  if (args.src.length < n || args.dst.length < n) return -HmmErrno.EINVAL;
  args.start = start;
  args.end = end;
  args.npages = n;
  args.src.fill(0, 0, n);
  args.dst.fill(0, 0, n);
  const mm = args.mm;
  const sys = mm.sys;
  const base = (start - v.start) / PAGE_SIZE;
  // THPs are split first (the model does not migrate compound pages).
  for (let j = 0; j < n; j++) if (((v.pte[base + j] ?? 0) & PTE_PMD) !== 0) mm.splitHugePage(start + j * PAGE_SIZE);
  mm.notify(
    MmuNotifyEvent.MIGRATE,
    start,
    end,
    () => {
      for (let j = 0; j < n; j++) {
        const i = base + j;
        const e = v.pte[i] ?? 0;
        const k = e & PTE_KIND_MASK;
        const pfn = v.pfn[i] ?? 0;
        let mpfn = 0;
        if ((args.flags & MIGRATE_VMA_SELECT_SYSTEM) !== 0 && v.file === undefined) {
          if (k === PteKind.NONE || k === PteKind.ZERO) {
            mpfn = MIGRATE_PFN_MIGRATE;
          } else if (k === PteKind.PRESENT && sys.inSwapCache(pfn)) {
            // The swap cache holds a reference migrate_vma_check_page does not expect: the page stays.
            // Its pte was cleared for a migration entry and is restored clean, so the dirty bit moves to
            // the page (the fix "mm/migrate_device.c: copy pte dirty bit to page"); without it reclaim
            // would drop the page as up to date in swap and lose the writes.
            if ((e & PTE_DIRTY) !== 0) sys.setPageDirty(pfn);
            v.pte[i] = e & ~PTE_DIRTY;
          } else if (k === PteKind.PRESENT && sys.refCount(pfn) === 1) {
            mpfn = migratePfn(pfn) | MIGRATE_PFN_MIGRATE | ((e & PTE_WRITE) !== 0 ? MIGRATE_PFN_WRITE : 0);
          }
        }
        if (k === PteKind.DEVICE_PRIVATE && (args.flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) !== 0) {
          const pgmap = sys.pagemapOf(pfn);
          if (pgmap !== undefined && pgmap.owner === args.pgmapOwner) {
            mpfn = migratePfn(pfn) | MIGRATE_PFN_MIGRATE | ((e & PTE_WRITE) !== 0 ? MIGRATE_PFN_WRITE : 0);
          }
        }
        if (mpfn === 0) continue;
        args.src[j] = mpfn;
        args.cpages++;
        if ((mpfn & MIGRATE_PFN_VALID) !== 0) v.pte[i] = PteKind.MIGRATION | (e & PTE_WRITE);
      }
    },
    args.pgmapOwner,
  );
  return 0;
}

/** migrate_vma_pages: entries with no destination are dropped from the migration. */
export function migrateVmaPages(args: MigrateVma): void {
  for (let j = 0; j < args.npages; j++) {
    const s = args.src[j] ?? 0;
    if ((s & MIGRATE_PFN_MIGRATE) === 0) continue;
    if (((args.dst[j] ?? 0) & MIGRATE_PFN_VALID) === 0) args.src[j] = s - MIGRATE_PFN_MIGRATE;
  }
}

/**
 * migrate_vma_finalize: migrated entries get the new page (a device-private entry for device memory,
 * a present one for system memory) and the old page is released; the others get their old entry back,
 * and unused destination pages are released.
 */
export function migrateVmaFinalize(args: MigrateVma): void {
  const v = args.vma;
  if (v === undefined) return;
  const sys = args.mm.sys;
  const base = (args.start - v.start) / PAGE_SIZE;
  for (let j = 0; j < args.npages; j++) {
    const i = base + j;
    const s = args.src[j] ?? 0;
    const d = args.dst[j] ?? 0;
    const spfn = migratePfnToPfn(s);
    const dpfn = migratePfnToPfn(d);
    const migrated = (s & MIGRATE_PFN_MIGRATE) !== 0 && dpfn >= 0;
    if (migrated) {
      const k = (v.pte[i] ?? 0) & PTE_KIND_MASK;
      // A hole is filled only if it is still a hole (a racing fault may have filled it).
      if (spfn < 0 && k !== PteKind.NONE && k !== PteKind.ZERO) {
        releasePage(sys, dpfn);
        continue;
      }
      const devicePage = sys.pagemapOf(dpfn) !== undefined;
      const write = (d & MIGRATE_PFN_WRITE) !== 0;
      v.pte[i] = (devicePage ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT) | (write ? PTE_WRITE : 0);
      v.pfn[i] = dpfn;
      if (spfn >= 0) releasePage(sys, spfn);
    } else {
      if (spfn >= 0 && ((v.pte[i] ?? 0) & PTE_KIND_MASK) === PteKind.MIGRATION) {
        const devicePage = sys.pagemapOf(spfn) !== undefined;
        v.pte[i] = (devicePage ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT) | ((s & MIGRATE_PFN_WRITE) !== 0 ? PTE_WRITE : 0);
      }
      if (dpfn >= 0) releasePage(sys, dpfn);
    }
  }
}

function releasePage(sys: MmSystem, pfn: number): void {
  const pgmap = sys.pagemapOf(pfn);
  if (pgmap !== undefined) pgmap.putPage(pfn);
  else sys.putPage(pfn);
}

/** Where a device page is mapped, found by a scan of every process (the model's rmap walk). */
interface Mapping {
  mm: Mm;
  vma: Vma;
  index: number;
}

/** The state of a migrate_device_range eviction (src/dst per device page, plus where each is mapped). */
export class MigrateDevice {
  /** First device page frame of the range. */
  readonly startPfn: number;
  /** Pages in the range. */
  readonly npages: number;
  /** The source pages as migrate_pfn entries. */
  readonly src: Float64Array;
  /** The destination pages as migrate_pfn entries. */
  readonly dst: Float64Array;
  /** @internal */
  readonly mappings: (Mapping | undefined)[];
  constructor(startPfn: number, npages: number) {
    this.startPfn = startPfn;
    this.npages = npages;
    this.src = new Float64Array(npages);
    this.dst = new Float64Array(npages);
    this.mappings = new Array<Mapping | undefined>(npages);
  }
}

/**
 * migrate_device_range: collects the allocated device pages of [startPfn, startPfn + npages) (driver
 * unload, chunk release) wherever they are mapped, firing MIGRATE in each mm, and replaces their entries
 * by migration entries. The driver then allocates system pages into `dst`, copies, and calls
 * migrateDevicePages and migrateDeviceFinalize.
 */
export function migrateDeviceRange(sys: MmSystem, startPfn: number, npages: number): MigrateDevice {
  if (!Number.isSafeInteger(startPfn) || startPfn < 0) throw new HmmInputError("migrate_device_range", "startPfn", startPfn, "a page frame number");
  if (!Number.isSafeInteger(npages) || npages < 1) throw new HmmInputError("migrate_device_range", "npages", npages, "a positive number of pages");
  const md = new MigrateDevice(startPfn, npages);
  for (const mm of sys.mms) {
    for (const v of mm.vmas) {
      for (let i = 0; i < v.pages; i++) {
        const e = v.pte[i] ?? 0;
        if ((e & PTE_KIND_MASK) !== PteKind.DEVICE_PRIVATE) continue;
        const j = (v.pfn[i] ?? 0) - startPfn;
        if (j < 0 || j >= npages) continue;
        const page = v.start + i * PAGE_SIZE;
        const owner = sys.pagemapOf(v.pfn[i] ?? 0)?.owner;
        mm.notify(MmuNotifyEvent.MIGRATE, page, page + PAGE_SIZE, () => {
          v.pte[i] = PteKind.MIGRATION | (e & PTE_WRITE);
        }, owner);
        md.src[j] = migratePfn(startPfn + j) | MIGRATE_PFN_MIGRATE | ((e & PTE_WRITE) !== 0 ? MIGRATE_PFN_WRITE : 0);
        md.mappings[j] = { mm, vma: v, index: i };
      }
    }
  }
  return md;
}

/** migrate_device_pages. */
export function migrateDevicePages(md: MigrateDevice): void {
  for (let j = 0; j < md.npages; j++) {
    const s = md.src[j] ?? 0;
    if ((s & MIGRATE_PFN_MIGRATE) !== 0 && ((md.dst[j] ?? 0) & MIGRATE_PFN_VALID) === 0) md.src[j] = s - MIGRATE_PFN_MIGRATE;
  }
}

/** migrate_device_finalize: mapped entries get the system page; device pages are released. */
export function migrateDeviceFinalize(sys: MmSystem, md: MigrateDevice): void {
  for (let j = 0; j < md.npages; j++) {
    const s = md.src[j] ?? 0;
    const m = md.mappings[j];
    if (m === undefined || s === 0) continue;
    const dpfn = migratePfnToPfn(md.dst[j] ?? 0);
    const spfn = migratePfnToPfn(s);
    if ((s & MIGRATE_PFN_MIGRATE) !== 0 && dpfn >= 0) {
      m.vma.pte[m.index] = PteKind.PRESENT | ((md.dst[j] ?? 0) & MIGRATE_PFN_WRITE ? PTE_WRITE : 0);
      m.vma.pfn[m.index] = dpfn;
      releasePage(sys, spfn);
    } else {
      m.vma.pte[m.index] = PteKind.DEVICE_PRIVATE | ((s & MIGRATE_PFN_WRITE) !== 0 ? PTE_WRITE : 0);
      if (dpfn >= 0) releasePage(sys, dpfn);
    }
  }
}

/** Pages per PMD, re-exported for drivers that migrate in 2 MiB steps. */
export const MIGRATE_PMD_PAGES = HPAGE_PMD_NR;
