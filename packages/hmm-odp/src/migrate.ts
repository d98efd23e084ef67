import type { HmmOdpEvent } from "./events.js";
import { PAGE_SIZE } from "@dmasim/memory";
import { HPAGE_PMD_NR, HmmErrno, MmuNotifyEvent, VM_HUGETLB, VM_IO, VM_PFNMAP } from "./constants.js";
import { HmmInputError } from "./errors.js";
import type { MmSystem } from "./mm-system.js";
import type { Mm } from "./mm.js";
import { PTE_DIRTY, PTE_KIND_MASK, PTE_PMD, PTE_WRITE, PteKind } from "./pte.js";
import type { Vma } from "./vma.js";
import { kAddMapping, kForEachMapping } from "./internal.js";

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
/** Collect MEMORY_DEVICE_COHERENT pages of the caller's pagemap (migration of coherent device memory back to RAM). */
export const MIGRATE_VMA_SELECT_DEVICE_COHERENT = 1 << 2;
/** v6.19: collect a whole PMD (a THP, an empty 2 MiB, a device-private THP) as one compound entry. */
export const MIGRATE_VMA_SELECT_COMPOUND = 1 << 3;

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
  // With SELECT_COMPOUND, a 2 MiB chunk the range covers whole is collected as one compound entry
  // (migrate_vma_collect_huge_pmd / _hole); any other THP is split first, as before v6.19.
  const compound = (args.flags & MIGRATE_VMA_SELECT_COMPOUND) !== 0 ? compoundChunks(args, v, base, n) : undefined;
  for (let j = 0; j < n; j++) {
    if (compound?.[j] === 1) {
      j += HPAGE_PMD_NR - 1;
      continue;
    }
    if (((v.pte[base + j] ?? 0) & PTE_PMD) !== 0) mm.splitHugePage(start + j * PAGE_SIZE);
  }
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
        if (compound?.[j] === 1) {
          // One entry for the folio: the head's pfn (none for an empty PMD), the tails left 0.
          const write = (e & PTE_WRITE) !== 0 ? MIGRATE_PFN_WRITE : 0;
          args.src[j] = (k === PteKind.NONE ? 0 : migratePfn(pfn) | write) | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND;
          args.cpages += HPAGE_PMD_NR;
          if (k !== PteKind.NONE) for (let t = 0; t < HPAGE_PMD_NR; t++) v.pte[i + t] = PteKind.MIGRATION | PTE_PMD | ((v.pte[i + t] ?? 0) & PTE_WRITE);
          j += HPAGE_PMD_NR - 1;
          continue;
        }
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
          } else if (k === PteKind.PRESENT && sys.coherentPagemapOf(pfn) === undefined && sys.refCount(pfn) === 1) {
            mpfn = migratePfn(pfn) | MIGRATE_PFN_MIGRATE | ((e & PTE_WRITE) !== 0 ? MIGRATE_PFN_WRITE : 0);
          }
        }
        if (k === PteKind.PRESENT && (args.flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) !== 0) {
          // migrate_vma_collect_pmd: a coherent device page is a normal present pte; it is collected only
          // with SELECT_DEVICE_COHERENT and by its own pagemap's owner (migrate_vma_check_page's count).
          const pgmap = sys.coherentPagemapOf(pfn);
          if (pgmap !== undefined && pgmap.owner === args.pgmapOwner && sys.refCount(pfn) === 1) {
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

/**
 * Which entries of the range start a 2 MiB chunk collected whole: a PMD-mapped THP of private anonymous
 * memory mapped only here (SELECT_SYSTEM), an empty chunk of anonymous memory (SELECT_SYSTEM), or a
 * device THP of the caller's pagemap (SELECT_DEVICE_PRIVATE, or SELECT_DEVICE_COHERENT for a coherent
 * THP, which is mapped by present ptes).
 */
function compoundChunks(args: MigrateVma, v: Vma, base: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const sys = args.mm.sys;
  const vpn0 = v.start / PAGE_SIZE + base;
  for (let j = (HPAGE_PMD_NR - (vpn0 % HPAGE_PMD_NR)) % HPAGE_PMD_NR; j + HPAGE_PMD_NR <= n; j += HPAGE_PMD_NR) {
    const i = base + j;
    const e = v.pte[i] ?? 0;
    const k = e & PTE_KIND_MASK;
    let ok: boolean;
    if (k === PteKind.NONE) {
      ok = (args.flags & MIGRATE_VMA_SELECT_SYSTEM) !== 0 && v.file === undefined;
      for (let t = 1; t < HPAGE_PMD_NR && ok; t++) ok = (v.pte[i + t] ?? 0) === PteKind.NONE;
    } else if (k === PteKind.PRESENT && (e & PTE_PMD) !== 0) {
      const coherent = sys.coherentPagemapOf(v.pfn[i] ?? 0);
      ok = coherent === undefined
        ? (args.flags & MIGRATE_VMA_SELECT_SYSTEM) !== 0 && v.file === undefined
        : (args.flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) !== 0 && coherent.owner === args.pgmapOwner;
      for (let t = 0; t < HPAGE_PMD_NR && ok; t++) ok = ((v.pte[i + t] ?? 0) & (PTE_KIND_MASK | PTE_PMD)) === (PteKind.PRESENT | PTE_PMD) && sys.refCount(v.pfn[i + t] ?? 0) === 1 && !sys.inSwapCache(v.pfn[i + t] ?? 0);
    } else if (k === PteKind.DEVICE_PRIVATE && (e & PTE_PMD) !== 0) {
      ok = (args.flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) !== 0 && sys.pagemapOf(v.pfn[i] ?? 0)?.owner === args.pgmapOwner;
      for (let t = 0; t < HPAGE_PMD_NR && ok; t++) ok = ((v.pte[i + t] ?? 0) & (PTE_KIND_MASK | PTE_PMD)) === (PteKind.DEVICE_PRIVATE | PTE_PMD);
    } else {
      ok = false;
    }
    if (ok) out[j] = 1;
  }
  return out;
}

/**
 * migrate_vma_pages: entries with no destination are dropped from the migration. A compound source
 * whose destination is not compound (the driver fell back to 4 KiB pages) is split first
 * (migrate_vma_split_folio): its tail entries are filled in and its migration entries lose the PMD.
 */
export function migrateVmaPages(args: MigrateVma): void {
  const v = args.vma;
  for (let j = 0; j < args.npages; j++) {
    const s = args.src[j] ?? 0;
    if ((s & MIGRATE_PFN_COMPOUND) === 0 || (s & MIGRATE_PFN_MIGRATE) === 0) continue;
    const d = args.dst[j] ?? 0;
    if ((d & MIGRATE_PFN_VALID) !== 0 && (d & MIGRATE_PFN_COMPOUND) !== 0) {
      j += HPAGE_PMD_NR - 1;
      continue;
    }
    const spfn = migratePfnToPfn(s);
    const flags = (s & MIGRATE_PFN_WRITE) | MIGRATE_PFN_MIGRATE;
    for (let t = 0; t < HPAGE_PMD_NR; t++) args.src[j + t] = (spfn < 0 ? 0 : migratePfn(spfn + t)) | flags;
    if (v !== undefined && spfn >= 0) {
      const i = (args.start - v.start) / PAGE_SIZE + j;
      for (let t = 0; t < HPAGE_PMD_NR; t++) v.pte[i + t] = (v.pte[i + t] ?? 0) & ~PTE_PMD;
      args.mm.sys.stats.thpSplits++;
    }
    j += HPAGE_PMD_NR - 1;
  }
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
  const trace = sys.kernel.trace;
  if (trace.events.active) emitMigrateVma(args);
  for (let j = 0; j < args.npages; j++) {
    const i = base + j;
    const s = args.src[j] ?? 0;
    const d = args.dst[j] ?? 0;
    if ((s & MIGRATE_PFN_COMPOUND) !== 0) {
      finalizeCompound(args, v, i, s, d);
      j += HPAGE_PMD_NR - 1;
      continue;
    }
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
      const devicePage = isDevicePrivate(sys, dpfn);
      const write = (d & MIGRATE_PFN_WRITE) !== 0;
      v.pte[i] = (devicePage ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT) | (write ? PTE_WRITE : 0);
      v.pfn[i] = dpfn;
      if (spfn >= 0) releasePage(sys, spfn);
    } else {
      if (spfn >= 0 && ((v.pte[i] ?? 0) & PTE_KIND_MASK) === PteKind.MIGRATION) {
        const devicePage = isDevicePrivate(sys, spfn);
        v.pte[i] = (devicePage ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT) | ((s & MIGRATE_PFN_WRITE) !== 0 ? PTE_WRITE : 0);
      }
      if (dpfn >= 0) releasePage(sys, dpfn);
    }
  }
}

/** Reports what migrate_vma_finalize is about to commit: the entries that migrate, and where to. */
function emitMigrateVma(args: MigrateVma): void {
  const sys = args.mm.sys;
  let pages = 0;
  let toDevice = false;
  for (let j = 0; j < args.npages; j++) {
    const s = args.src[j] ?? 0;
    const dpfn = migratePfnToPfn(args.dst[j] ?? 0);
    if ((s & MIGRATE_PFN_MIGRATE) === 0 || dpfn < 0) continue;
    if (pages === 0) toDevice = sys.pagemapOf(dpfn) !== undefined;
    pages++;
  }
  const trace = sys.kernel.trace;
  trace.events.view<HmmOdpEvent>().emit({ type: "hmm.migrate", t: trace.clock.now, mm: args.mm.name, start: args.start, npages: args.npages, pages, to: toDevice ? "device" : "system" });
}

/** migrate_vma_finalize of one compound entry (still compound after migrate_vma_pages): 512 entries at once. */
function finalizeCompound(args: MigrateVma, v: Vma, i: number, s: number, d: number): void {
  const sys = args.mm.sys;
  const spfn = migratePfnToPfn(s);
  const dpfn = migratePfnToPfn(d);
  const n = HPAGE_PMD_NR;
  let migrated = (s & MIGRATE_PFN_MIGRATE) !== 0 && dpfn >= 0;
  if (migrated && spfn < 0) {
    // An empty PMD is filled only if it is still empty.
    for (let t = 0; t < n && migrated; t++) migrated = (v.pte[i + t] ?? 0) === PteKind.NONE;
  }
  if (migrated) {
    const kind = isDevicePrivate(sys, dpfn) ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT;
    const bits = kind | PTE_PMD | ((d & MIGRATE_PFN_WRITE) !== 0 ? PTE_WRITE : 0);
    for (let t = 0; t < n; t++) {
      v.pte[i + t] = bits;
      v.pfn[i + t] = dpfn + t;
      if (spfn >= 0) releasePage(sys, spfn + t);
    }
    return;
  }
  if (spfn >= 0) {
    const kind = isDevicePrivate(sys, spfn) ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT;
    for (let t = 0; t < n; t++) if (((v.pte[i + t] ?? 0) & PTE_KIND_MASK) === PteKind.MIGRATION) v.pte[i + t] = kind | PTE_PMD | ((v.pte[i + t] ?? 0) & PTE_WRITE);
  }
  if (dpfn >= 0) for (let t = 0; t < n; t++) releasePage(sys, dpfn + t);
}

/** is_device_private_page: mapped by a device-private entry; a coherent page gets a present pte. */
function isDevicePrivate(sys: MmSystem, pfn: number): boolean {
  const pgmap = sys.pagemapOf(pfn);
  return pgmap !== undefined && !pgmap.coherent;
}

function releasePage(sys: MmSystem, pfn: number): void {
  const pgmap = sys.pagemapOf(pfn);
  if (pgmap !== undefined) pgmap.putPage(pfn);
  else sys.putPage(pfn);
}

/**
 * The state of a migrate_device_range eviction: src/dst per device page, and the reverse map of every
 * place each page is mapped (try_to_migrate replaces them all by migration entries through the folio's
 * anon_vma; remove_migration_ptes restores them all). A device page mapped by a parent and a child after
 * fork has two mappings, and both come back to the new page.
 */
export class MigrateDevice {
  /** First device page frame of the range. */
  readonly startPfn: number;
  /** Pages in the range. */
  readonly npages: number;
  /** The source pages as migrate_pfn entries. */
  readonly src: Float64Array;
  /** The destination pages as migrate_pfn entries. */
  readonly dst: Float64Array;
  // The reverse map, in typed arrays: mapping ids chained per page (#first[j], then #next), each naming
  // a VMA (an object, so in an array of its own), an entry index in it and the entry's write bit.
  readonly #first: Int32Array;
  #next = new Int32Array(16);
  #index = new Int32Array(16);
  #write = new Uint8Array(16);
  readonly #vma: Vma[] = [];
  #count = 0;
  constructor(startPfn: number, npages: number) {
    this.startPfn = startPfn;
    this.npages = npages;
    this.src = new Float64Array(npages);
    this.dst = new Float64Array(npages);
    this.#first = new Int32Array(npages).fill(-1);
  }

  /** Places that map page `j` of the range (1 unless the page is shared, as after fork). */
  mapCount(j: number): number {
    let n = 0;
    for (let m = this.#first[j] ?? -1; m >= 0; m = this.#next[m] ?? -1) n++;
    return n;
  }

  /** Reached through `@dmasim/hmm-odp/internal`: records that entry `index` of `vma` maps page `j` (writable or not). */
  [kAddMapping](j: number, vma: Vma, index: number, write: boolean): void {
    const m = this.#count++;
    if (m === this.#next.length) {
      const grow = <T extends Int32Array | Uint8Array>(a: T, b: T): T => {
        b.set(a);
        return b;
      };
      this.#next = grow(this.#next, new Int32Array(m * 2));
      this.#index = grow(this.#index, new Int32Array(m * 2));
      this.#write = grow(this.#write, new Uint8Array(m * 2));
    }
    this.#next[m] = this.#first[j] ?? -1;
    this.#index[m] = index;
    this.#write[m] = write ? 1 : 0;
    this.#vma[m] = vma;
    this.#first[j] = m;
  }

  /** Reached through `@dmasim/hmm-odp/internal`: calls `f` for every mapping of page `j`. */
  [kForEachMapping](j: number, f: (vma: Vma, index: number, write: boolean) => void): void {
    for (let m = this.#first[j] ?? -1; m >= 0; m = this.#next[m] ?? -1) {
      const v = this.#vma[m];
      if (v !== undefined) f(v, this.#index[m] ?? 0, this.#write[m] === 1);
    }
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
        const k = e & PTE_KIND_MASK;
        // Device-private entries, and present ptes of coherent device pages (migrate_device_pfn_lock
        // and try_to_migrate find those through the rmap).
        if (k !== PteKind.DEVICE_PRIVATE && k !== PteKind.PRESENT) continue;
        const j = (v.pfn[i] ?? 0) - startPfn;
        if (j < 0 || j >= npages) continue;
        if (k === PteKind.PRESENT && sys.coherentPagemapOf(v.pfn[i] ?? 0) === undefined) continue;
        const page = v.start + i * PAGE_SIZE;
        const owner = sys.pagemapOf(v.pfn[i] ?? 0)?.owner;
        mm.notify(MmuNotifyEvent.MIGRATE, page, page + PAGE_SIZE, () => {
          v.pte[i] = PteKind.MIGRATION | (e & PTE_WRITE);
        }, owner);
        // A page mapped more than once keeps MIGRATE_PFN_WRITE if any mapping could write it.
        md.src[j] = migratePfn(startPfn + j) | MIGRATE_PFN_MIGRATE | ((e & PTE_WRITE) !== 0 || (md.src[j] ?? 0) & MIGRATE_PFN_WRITE ? MIGRATE_PFN_WRITE : 0);
        md[kAddMapping](j, v, i, (e & PTE_WRITE) !== 0);
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

/**
 * migrate_device_finalize: every mapping of a migrated page (remove_migration_ptes walks the reverse map)
 * gets the system page, which takes a reference per mapping, and the device page drops one per mapping;
 * a page that did not migrate gets its device entries back and the destination page is released.
 */
export function migrateDeviceFinalize(sys: MmSystem, md: MigrateDevice): void {
  const trace = sys.kernel.trace;
  if (trace.events.active) {
    let pages = 0;
    for (let j = 0; j < md.npages; j++) {
      const s = md.src[j] ?? 0;
      if (md.mapCount(j) > 0 && (s & MIGRATE_PFN_MIGRATE) !== 0 && migratePfnToPfn(md.dst[j] ?? 0) >= 0) pages++;
    }
    trace.events.view<HmmOdpEvent>().emit({ type: "hmm.migrate", t: trace.clock.now, mm: "", start: md.startPfn, npages: md.npages, pages, to: "system" });
  }
  for (let j = 0; j < md.npages; j++) {
    const s = md.src[j] ?? 0;
    if (s === 0) continue;
    const maps = md.mapCount(j);
    if (maps === 0) continue;
    const dpfn = migratePfnToPfn(md.dst[j] ?? 0);
    const spfn = migratePfnToPfn(s);
    if ((s & MIGRATE_PFN_MIGRATE) !== 0 && dpfn >= 0) {
      const dstWrite = ((md.dst[j] ?? 0) & MIGRATE_PFN_WRITE) !== 0;
      // The destination came with one reference: one more for each further mapping.
      for (let k = 1; k < maps; k++) sys.getPage(dpfn);
      md[kForEachMapping](j, (vma, index, write) => {
        vma.pte[index] = PteKind.PRESENT | (write && dstWrite ? PTE_WRITE : 0);
        vma.pfn[index] = dpfn;
        releasePage(sys, spfn);
      });
    } else {
      const kind = isDevicePrivate(sys, spfn) ? PteKind.DEVICE_PRIVATE : PteKind.PRESENT;
      md[kForEachMapping](j, (vma, index, write) => {
        vma.pte[index] = kind | (write ? PTE_WRITE : 0);
      });
      if (dpfn >= 0) releasePage(sys, dpfn);
    }
  }
}

/** Pages per PMD, re-exported for drivers that migrate in 2 MiB steps. */
export const MIGRATE_PMD_PAGES = HPAGE_PMD_NR;
