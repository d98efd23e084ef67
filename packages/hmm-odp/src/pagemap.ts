import { PAGE_SIZE, physAddr, unsafePhysAddr, type PhysAddr } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import { HPAGE_PMD_NR } from "./constants.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import type { MmSystem } from "./mm-system.js";
import type { Mm } from "./mm.js";
import type { Vma } from "./vma.js";
import { kAddPagemap, kRemovePagemap } from "./internal.js";

/** enum memory_type of a dev_pagemap (the kinds the model uses). */
export const MemoryType = { DEVICE_PRIVATE: 1, DEVICE_COHERENT: 2, PCI_P2PDMA: 5 } as const;
export type MemoryType = (typeof MemoryType)[keyof typeof MemoryType];

/** struct vm_fault, as migrate_to_ram sees it. */
export interface VmFault {
  /** vmf->vma->vm_mm: the process that faulted. */
  readonly mm: Mm;
  /** The VMA the faulting address is in. */
  readonly vma: Vma;
  /** The faulting address, page-aligned. */
  readonly address: number;
  /** The device-private page frame the CPU faulted on. */
  readonly page: number;
  /** FAULT_FLAG_WRITE: the access was a write. */
  readonly write: boolean;
}

/** struct dev_pagemap_ops. */
export interface DevPagemapOps {
  /**
   * Called on a CPU fault on a device-private entry: migrate the page back; 0 or a VM_FAULT_* code.
   * Never called for MEMORY_DEVICE_COHERENT pages, which the CPU reaches through ordinary present ptes.
   */
  migrateToRam(vmf: VmFault): number;
  /** folio_free: the last reference to a device page is gone. */
  pageFree?(pfn: number): void;
}

/**
 * struct dev_pagemap of ZONE_DEVICE memory a driver migrates pages to, of one of two types:
 * - MEMORY_DEVICE_PRIVATE (memremap_pages over a hole in the physical map): page frames the CPU cannot
 *   address, mapped by device-private swap entries. As lib/test_hmm.c does, each device page keeps its
 *   bytes in a backing system page (BACKING_PAGE), allocated when the device page is.
 * - MEMORY_DEVICE_COHERENT (memory the CPU reaches coherently, test_hmm's SPM range): page frames that
 *   are their own bytes, mapped by ordinary present ptes; the CPU never faults on them.
 * `owner` is compared with hmm_range.dev_private_owner and migrate_vma.pgmap_owner.
 */
export class DevPagemap {
  /** The dev_pagemap's memory type (MEMORY_DEVICE_PRIVATE, MEMORY_DEVICE_COHERENT…). */
  readonly type: MemoryType;
  /** pgmap->owner: the driver's token; hmm_range_fault and migration compare it with the caller's. */
  readonly owner: unknown;
  /** First page frame of the device pages. */
  readonly startPfn: number;
  /** Device pages in the map. */
  readonly nrPages: number;
  /** The driver's callbacks (migrate_to_ram, page_free). */
  readonly ops: DevPagemapOps;
  /** The mm core the map belongs to. */
  readonly sys: MmSystem;
  readonly #backing: Uint32Array;
  readonly #ref: Uint16Array;
  #free: number[] = [];
  #allocated = 0;

  /** Made by `memremapPages` / `memremapPagesCoherent` (`.` exports the class as a type only). */
  constructor(sys: MmSystem, type: MemoryType, owner: unknown, startPfn: number, nrPages: number, ops: DevPagemapOps) {
    this.sys = sys;
    this.type = type;
    this.owner = owner;
    this.startPfn = startPfn;
    this.nrPages = nrPages;
    this.ops = ops;
    this.#backing = new Uint32Array(nrPages);
    this.#ref = new Uint16Array(nrPages);
    for (let i = nrPages - 1; i >= 0; i--) this.#free.push(startPfn + i);
  }

  /** Device pages handed out and not yet freed. */
  get allocatedPages(): number {
    return this.#allocated;
  }

  /** is_device_coherent_page for this pagemap's pages. */
  get coherent(): boolean {
    return this.type === MemoryType.DEVICE_COHERENT;
  }

  /**
   * A free device page (refcount 1) with zeroed bytes (a zeroed backing page for device-private memory),
   * or -1 when the device memory is full.
   */
  allocPage(): number {
    const pfn = this.#free.pop();
    if (pfn === undefined) return -1;
    const i = pfn - this.startPfn;
    if (this.coherent) {
      this.sys.memory.fill(unsafePhysAddr(pfn * PAGE_SIZE), PAGE_SIZE, 0);
      this.#backing[i] = pfn;
    } else {
      this.#backing[i] = this.sys.allocPage();
    }
    this.#ref[i] = 1;
    this.#allocated++;
    return pfn;
  }

  /**
   * A free, naturally aligned order-9 block of device pages (a compound device folio, v6.19's
   * dmirror_devmem_alloc_page with is_large), each page with refcount 1 and zeroed bytes (backed by one
   * system THP for device-private memory); the first frame, or -1 when no such block is free.
   */
  allocCompound(): number {
    const n = HPAGE_PMD_NR;
    let first = -1;
    for (let b = Math.ceil(this.startPfn / n) * n; b + n <= this.startPfn + this.nrPages && first < 0; b += n) {
      let free = true;
      for (let k = 0; k < n && free; k++) free = (this.#ref[b + k - this.startPfn] ?? 0) === 0;
      if (free) first = b;
    }
    if (first < 0) return -1;
    this.#free = this.#free.filter((pfn) => pfn < first || pfn >= first + n);
    const backing = this.coherent ? first : this.sys.allocHuge(9);
    if (this.coherent) this.sys.memory.fill(unsafePhysAddr(first * PAGE_SIZE), n * PAGE_SIZE, 0);
    for (let k = 0; k < n; k++) {
      this.#backing[first + k - this.startPfn] = backing + k;
      this.#ref[first + k - this.startPfn] = 1;
    }
    this.#allocated += n;
    return first;
  }

  #index(pfn: number): number {
    const i = pfn - this.startPfn;
    if (!Number.isInteger(i) || i < 0 || i >= this.nrPages) throw new HmmInputError("DevPagemap", "pfn", pfn, `a page frame of this pagemap [${hex(this.startPfn)}, ${hex(this.startPfn + this.nrPages)})`);
    return i;
  }

  /** page_ref_count of a device page. */
  refCount(pfn: number): number {
    return this.#ref[this.#index(pfn)] ?? 0;
  }

  /** get_page of a device page: one more reference. */
  getPage(pfn: number): void {
    const i = this.#index(pfn);
    this.#ref[i] = (this.#ref[i] ?? 0) + 1;
  }

  /** put_page of a device page: the last reference frees it (page_free, then back to the free list). */
  putPage(pfn: number): void {
    const i = this.#index(pfn);
    const n = this.#ref[i] ?? 0;
    if (n === 0) throw new HmmStateError("EINVAL", `device page ${hex(pfn)} put with no reference`);
    this.#ref[i] = n - 1;
    if (n === 1) {
      this.ops.pageFree?.(pfn);
      if (!this.coherent) this.sys.putPage(this.#backing[i] ?? 0);
      this.#backing[i] = 0;
      this.#free.push(pfn);
      this.#allocated--;
    }
  }

  /** Physical address of the backing bytes of device page `pfn` (what the device itself reads; a coherent page is its own). */
  backingPhys(pfn: number): PhysAddr {
    const b = this.#backing[this.#index(pfn)] ?? 0;
    if (b === 0) throw new HmmStateError("EINVAL", `device page ${hex(pfn)} is not allocated`);
    return (b * PAGE_SIZE) as PhysAddr;
  }
}

/**
 * memremap_pages for MEMORY_DEVICE_PRIVATE: `size` bytes at `phys` (a hole in the physical map) become
 * device pages owned by `owner`.
 */
export function memremapPages(sys: MmSystem, options: { phys: PhysAddr; size: number; owner: unknown; ops: DevPagemapOps; ownerId: number }): DevPagemap {
  const { phys, size } = options;
  if (!Number.isSafeInteger(phys) || phys % PAGE_SIZE !== 0) throw new HmmInputError("memremap_pages", "phys", phys, "a page-aligned physical address");
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) throw new HmmInputError("memremap_pages", "size", size, "a positive multiple of PAGE_SIZE");
  if ((phys + size) / PAGE_SIZE > 0xffffffff) throw new HmmInputError("memremap_pages", "phys", phys, "a range whose page frames fit in 32 bits");
  sys.memory.pages.addZoneDevice(phys, size, { owner: options.ownerId, kind: "device-private" });
  const p = new DevPagemap(sys, MemoryType.DEVICE_PRIVATE, options.owner, phys / PAGE_SIZE, size / PAGE_SIZE, options.ops);
  sys[kAddPagemap](p);
  return p;
}

/**
 * memremap_pages for MEMORY_DEVICE_COHERENT: `size` bytes of memory the CPU addresses coherently become
 * device pages owned by `owner`. lib/test_hmm.c takes them from a specific-purpose memory range
 * (spm_addr_dev0/1: RAM the firmware keeps out of the page allocator); the model carves the range out
 * of the page allocator, which is the same thing seen from the mm. The memory package's page
 * descriptors keep calling it RAM (it has no coherent ZONE_DEVICE kind): the DMA layers map it as RAM,
 * which is what the kernel does with coherent pages too.
 */
export function memremapPagesCoherent(sys: MmSystem, options: { size: number; owner: unknown; ops: DevPagemapOps }): DevPagemap {
  const { size } = options;
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) throw new HmmInputError("memremap_pages", "size", size, "a positive multiple of PAGE_SIZE");
  let phys: number;
  try {
    phys = sys.memory.allocator.allocPages(size / PAGE_SIZE);
  } catch (e) {
    throw new HmmStateError("ENOMEM", `memremap_pages: no ${size} bytes of RAM for coherent device memory (${(e as Error).message})`);
  }
  const p = new DevPagemap(sys, MemoryType.DEVICE_COHERENT, options.owner, phys / PAGE_SIZE, size / PAGE_SIZE, options.ops);
  sys[kAddPagemap](p);
  return p;
}

/** memunmap_pages: every device page must have been freed (evicted) first. */
export function memunmapPages(p: DevPagemap): void {
  if (p.allocatedPages !== 0) throw new HmmStateError("EBUSY", `memunmap_pages: ${p.allocatedPages} device pages still in use; evict them first (migrate_device_range)`);
  if (p.coherent) p.sys.memory.allocator.freePages(physAddr(p.startPfn * PAGE_SIZE), p.nrPages);
  else p.sys.memory.pages.removeZoneDevice(unsafePhysAddr(p.startPfn * PAGE_SIZE), p.nrPages * PAGE_SIZE);
  p.sys[kRemovePagemap](p);
}
