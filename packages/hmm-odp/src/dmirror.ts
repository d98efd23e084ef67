import { DMA_MAPPING_ERROR, PciP2pdmaMapState, p2pdmaProviderOf, pciP2pdmaBusAddrMap } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { Endpoint } from "@dmasim/pcie-p2p";
import { hex } from "@dmasim/trace";
import {
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_ERROR,
  HMM_PFN_FLAGS,
  HMM_PFN_P2PDMA_BUS,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HMM_RANGE_DEFAULT_TIMEOUT,
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  HmmErrno,
  MmuNotifyEvent,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  VM_FAULT_SIGBUS,
  VM_READ,
  VM_WRITE,
  hmmPfnToMapOrder,
} from "./constants.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaMapPfnRun, hmmDmaUnmapPfn } from "./hmm-dma.js";
import { HmmRange, hmmRangeFault } from "./hmm.js";
import {
  MIGRATE_PFN_COMPOUND,
  MIGRATE_PFN_MIGRATE,
  MIGRATE_PFN_VALID,
  MIGRATE_PFN_WRITE,
  MIGRATE_VMA_SELECT_COMPOUND,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  MigrateVma,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migratePfn,
  migratePfnToPfn,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
} from "./migrate.js";
import type { MmSystem } from "./mm-system.js";
import type { Mm } from "./mm.js";
import {
  MmuIntervalNotifier,
  UserLock,
  hmmCheckMayProgram,
  mmuIntervalCheckRetry,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  mmuNotifierRangeBlockable,
} from "./notifier.js";
import type { MmuNotifierRange } from "./notifier.js";
import { memremapPages, memremapPagesCoherent } from "./pagemap.js";
import type { DevPagemap, VmFault } from "./pagemap.js";
import { PTE_PMD } from "./pte.js";
import type { Vma } from "./vma.js";
import { unsafeIova } from "@dmasim/iommu";
import { unsafeDmaAddr } from "@dmasim/dma";
import type { PhysAddr } from "@dmasim/memory";
import { kAllocDeviceCompound, kAllocDevicePage, kErase, kEraseDevicePage } from "./internal.js";

/** SNAPSHOT byte values (test_hmm_uapi.h). */
export const HMM_DMIRROR_PROT_ERROR = 0xff;
/** The page is not mapped by the device. */
export const HMM_DMIRROR_PROT_NONE = 0x00;
/** The device may read the page. */
export const HMM_DMIRROR_PROT_READ = 0x01;
/** The device may write the page. */
export const HMM_DMIRROR_PROT_WRITE = 0x02;
/** Mapped as part of a PMD-sized (2 MiB) page. */
export const HMM_DMIRROR_PROT_PMD = 0x04;
/** Mapped as part of a PUD-sized (1 GiB) page. */
export const HMM_DMIRROR_PROT_PUD = 0x08;
/** The page is the shared zero page. */
export const HMM_DMIRROR_PROT_ZERO = 0x10;
/** A device-private page of this device. */
export const HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20;
/** A device-private page of another device. */
export const HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30;
/** A device-coherent page of this device. */
export const HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40;
/** A device-coherent page of another device. */
export const HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50;

/** The ioctl numbers of test_hmm_uapi.h ('H' << 8 | nr), for reference and for the `ioctl` entry point. */
export const HmmDmirrorIoctl = { READ: 0x00, WRITE: 0x01, MIGRATE_TO_DEV: 0x02, MIGRATE_TO_SYS: 0x03, SNAPSHOT: 0x04, EXCLUSIVE: 0x05, CHECK_EXCLUSIVE: 0x06, RELEASE: 0x07, FLAGS: 0x08 } as const;

/** HMM_DMIRROR_FLAGS bit: the next large (THP) page allocation of this file fails once, so it falls back to 4 KiB pages. */
export const HMM_DMIRROR_FLAG_FAIL_ALLOC = 1 << 0;

/** struct hmm_dmirror_cmd: `ptr` is the user buffer (npages pages of bytes). */
export interface HmmDmirrorCmd {
  /** First user address of the command (page-aligned). */
  addr: number;
  /** The user buffer: the bytes read or to write, or the SNAPSHOT bytes. */
  ptr: Uint8Array;
  /** Pages the command covers. */
  npages: number;
  /** Out: pages the command completed (read, written, migrated). */
  cpages: number;
  /** Out: device faults the command took (hmm_range_fault calls). */
  faults: number;
}

/** A command block for `npages` pages at `addr` with a zeroed buffer. */
export function hmmDmirrorCmd(addr: number, npages: number, ptr?: Uint8Array): HmmDmirrorCmd {
  return { addr, ptr: ptr ?? new Uint8Array(npages * PAGE_SIZE), npages, cpages: 0, faults: 0 };
}

/** Where a deterministic race can be injected in dmirror's fault loop (dmirror_range_fault). */
export type DmirrorFaultStep = "after-read-begin" | "in-hmm-range-fault" | "before-driver-lock" | "before-read-retry";

/** Cost parameters of the device (virtual nanoseconds); all assumed, none published. */
export interface DmirrorCosts {
  /** One device TLB invalidation, paid inside every invalidate callback that drops entries. Assumed 1 µs. */
  deviceTlbInvalidateNs: number;
  /** One attempt of the fault loop (read_begin + walk setup), paid per retry. Assumed 200 ns. */
  faultAttemptNs: number;
  /** One migration_entry_wait that sees the migration still running. Assumed 1 ms. */
  migrationWaitNs: number;
}

const DEFAULT_COSTS: DmirrorCosts = { deviceTlbInvalidateNs: 1000, faultAttemptNs: 200, migrationWaitNs: 1_000_000 };

/** Device page-table tags (DPT_XA_TAG_*). */
const TAG_ATOMIC = 1;
const TAG_WRITE = 3;
const CHUNK = 64;
const PMD_BYTES = HPAGE_PMD_NR * PAGE_SIZE;

/** Options of a dmirror device: MEMORY_DEVICE_PRIVATE memory in a hole at devmemPhys, or coherent memory. */
export interface DmirrorDeviceOptions {
  /** The device's name (`hmm_dmirror0`): the owner of its interval notifiers and the prefix of its locks. */
  name: string;
  /** Size of the device memory in bytes. */
  devmemSize: number;
  /** Physical address of device-private memory (a hole in the physical map); unused when coherent. */
  devmemPhys?: number;
  /** memory descriptor owner id of device-private memory. */
  ownerId?: number;
  /**
   * MEMORY_DEVICE_COHERENT memory (/dev/hmm_dmirror2 and 3 of lib/test_hmm.c, over an SPM range):
   * devmemSize bytes the CPU reaches directly, carved out of RAM.
   */
  coherent?: boolean;
}

/**
 * struct dmirror_device (one /dev/hmm_dmirrorN): device memory (one dev_pagemap whose owner is this
 * object, device-private or coherent) and the files opened on it.
 */
export class DmirrorDevice {
  /** The mm core the device's pages belong to. */
  readonly sys: MmSystem;
  /** Name of the device (/dev/hmm_dmirror0). */
  readonly name: string;
  /** The device's memory as MEMORY_DEVICE_PRIVATE pages. */
  readonly pagemap: DevPagemap;
  /** Which open file migrated each device page in (rpage->zone_device_data). */
  readonly #pageOwner = new Map<number, Dmirror>();
  /** Model fault injection (HMM_DMIRROR_FLAGS): device page allocation fails. */
  failAlloc = false;

  constructor(sys: MmSystem, options: DmirrorDeviceOptions) {
    this.sys = sys;
    this.name = options.name;
    const ops = { migrateToRam: (vmf: VmFault) => this.#devmemFault(vmf), pageFree: (pfn: number) => this.#pageOwner.delete(pfn) };
    if (options.coherent === true) {
      this.pagemap = memremapPagesCoherent(sys, { size: options.devmemSize, owner: this, ops });
    } else {
      if (options.devmemPhys === undefined) throw new HmmInputError("dmirror_device_init", "options.devmemPhys", options.devmemPhys, "the physical address of device-private memory");
      this.pagemap = memremapPages(sys, { phys: options.devmemPhys as PhysAddr, size: options.devmemSize, owner: this, ownerId: options.ownerId ?? 0, ops });
    }
  }

  /** dmirror_select_device: the MIGRATE_VMA_SELECT_* of this device's memory. */
  get selectDevice(): number {
    return this.pagemap.coherent ? MIGRATE_VMA_SELECT_DEVICE_COHERENT : MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
  }

  /** open(): a mirror of `mm` (optionally in DMA mode over [dma.start, dma.start + dma.size)). */
  open(mm: Mm, dma?: { dev: DmaDevice; start: number; size: number; batched?: boolean }): Dmirror {
    return new Dmirror(this, mm, dma);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. A compound (order-9) device folio, or -1. */
  [kAllocDeviceCompound](owner: Dmirror): number {
    if (this.failAlloc) return -1;
    const head = this.pagemap.allocCompound();
    if (head >= 0) for (let t = 0; t < HPAGE_PMD_NR; t++) this.#pageOwner.set(head + t, owner);
    return head;
  }

  /** Reached through `@dmasim/hmm-odp/internal`: one device page for `owner`, or -1. */
  [kAllocDevicePage](owner: Dmirror): number {
    if (this.failAlloc) return -1;
    const pfn = this.pagemap.allocPage();
    if (pfn >= 0) this.#pageOwner.set(pfn, owner);
    return pfn;
  }

  /** dmirror_devmem_fault: migrate_to_ram of one page on a CPU fault. */
  #devmemFault(vmf: VmFault): number {
    const dmirror = this.#pageOwner.get(vmf.page);
    // v6.19: a page of a compound device folio migrates back whole (ALIGN_DOWN to the folio's size).
    // The entry's PMD bit straight from the faulting VMA (what pteAt would look up and wrap in an object).
    const v = vmf.vma;
    const pmd = vmf.address >= v.start && vmf.address < v.end && ((v.pte[Math.floor((vmf.address - v.start) / PAGE_SIZE)] ?? 0) & PTE_PMD) !== 0;
    const size = pmd ? HPAGE_PMD_NR * PAGE_SIZE : PAGE_SIZE;
    const start = Math.floor(vmf.address / size) * size;
    const flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE | (size > PAGE_SIZE ? MIGRATE_VMA_SELECT_COMPOUND : 0);
    const args = new MigrateVma({ mm: vmf.mm, vma: vmf.vma, start, end: start + size, pgmapOwner: this, flags, faultPage: vmf.page });
    if (migrateVmaSetup(args) !== 0) return VM_FAULT_SIGBUS;
    this.allocAndCopyToSys(args, dmirror);
    migrateVmaPages(args);
    migrateVmaFinalize(args);
    return 0;
  }

  /** dmirror_devmem_fault_alloc_and_copy: system pages for the collected device pages, and the mirror entries dropped. */
  allocAndCopyToSys(args: MigrateVma, dmirror: Dmirror | undefined): void {
    for (let j = 0; j < args.npages; j++) {
      const s = args.src[j] ?? 0;
      const spfn = migratePfnToPfn(s);
      if ((s & MIGRATE_PFN_MIGRATE) === 0 || spfn < 0) continue;
      if ((s & MIGRATE_PFN_COMPOUND) !== 0) {
        // A compound device folio: one system THP, unless FAIL_ALLOC makes the large allocation fail
        // once; then 4 KiB pages, and migrate_vma_pages splits the source.
        const owner = dmirror ?? this.#pageOwner.get(spfn);
        let huge = -1;
        if (owner !== undefined && (owner.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC) !== 0) owner.flags &= ~HMM_DMIRROR_FLAG_FAIL_ALLOC;
        else huge = this.sys.allocHuge(9);
        for (let t = 0; t < HPAGE_PMD_NR; t++) {
          const dpfn = huge >= 0 ? huge + t : this.sys.allocPage();
          this.sys.copyPage(dpfn, this.pagemap.backingPhys(spfn + t) / PAGE_SIZE);
          owner?.[kErase](args.start + (j + t) * PAGE_SIZE);
          if (huge < 0) args.dst[j + t] = migratePfn(dpfn) | (s & MIGRATE_PFN_WRITE);
        }
        if (huge >= 0) args.dst[j] = migratePfn(huge) | MIGRATE_PFN_COMPOUND | (s & MIGRATE_PFN_WRITE);
        j += HPAGE_PMD_NR - 1;
        continue;
      }
      const dpfn = this.sys.allocPage();
      this.sys.copyPage(dpfn, this.pagemap.backingPhys(spfn) / PAGE_SIZE);
      (dmirror ?? this.#pageOwner.get(spfn))?.[kErase](args.start + j * PAGE_SIZE);
      args.dst[j] = migratePfn(dpfn) | (s & MIGRATE_PFN_WRITE);
    }
  }

  /** HMM_DMIRROR_RELEASE: evict every device page back to system memory (dmirror_device_evict_chunk). */
  release(): void {
    const p = this.pagemap;
    const md = migrateDeviceRange(this.sys, p.startPfn, p.nrPages);
    for (let j = 0; j < md.npages; j++) {
      const s = md.src[j] ?? 0;
      if ((s & MIGRATE_PFN_MIGRATE) === 0) continue;
      const dpfn = this.sys.allocPage();
      this.sys.copyPage(dpfn, p.backingPhys(p.startPfn + j) / PAGE_SIZE);
      this.#pageOwner.get(p.startPfn + j)?.[kEraseDevicePage](p.startPfn + j);
      md.dst[j] = migratePfn(dpfn) | (s & MIGRATE_PFN_WRITE);
    }
    migrateDevicePages(md);
    migrateDeviceFinalize(this.sys, md);
  }
}

/**
 * struct dmirror: one open file of a dmirror device, mirroring a process's address space. The device page
 * table maps a virtual page to a system page (page mode, upstream's xarray of struct page pointers) or,
 * in DMA mode, to a DMA address from hmm_dma_map, and the device moves bytes through the IOMMU.
 */
export class Dmirror {
  /** The device this mirror belongs to. */
  readonly mdevice: DmirrorDevice;
  /** The process mirrored. */
  readonly mm: Mm;
  /** The interval notifier over the whole address space that keeps the mirror coherent. */
  readonly notifier = new MmuIntervalNotifier();
  /** dmirror->mutex: the driver lock the notifier protocol needs. */
  readonly mutex: UserLock;
  /** Page mode: virtual page number → frame * 4 + tag. */
  readonly pt = new Map<number, number>();
  /** DMA mode. */
  readonly dma: { readonly dev: DmaDevice; readonly endpoint: Endpoint; readonly start: number; readonly size: number; readonly map: HmmDmaMap; readonly batched: boolean } | undefined;
  /** Device-private pages this mirror maps in DMA mode (window index → device pfn * 4 + tag). */
  readonly #localDma = new Map<number, number>();
  /** Modelled time of the device's faults and page-table updates. */
  readonly costs: DmirrorCosts;
  /** Race injection: a function run at a step of every fault attempt. */
  inject: Partial<Record<DmirrorFaultStep, () => void>> = {};
  /** Reproduces the 2026 amdgpu regression: read_begin once, outside the retry loop. */
  staleSeqBug = false;
  /** dmirror->flags (HMM_DMIRROR_FLAGS): HMM_DMIRROR_FLAG_FAIL_ALLOC. */
  flags = 0;
  #p2p = new PciP2pdmaMapState();
  /** Attempts of the last fault loop (1 = no retry). */
  lastAttempts = 0;
  #released = false;
  readonly #scratch = new Float64Array(CHUNK);

  constructor(mdevice: DmirrorDevice, mm: Mm, dma?: { dev: DmaDevice; start: number; size: number; batched?: boolean }, costs: Partial<DmirrorCosts> = {}) {
    this.mdevice = mdevice;
    this.mm = mm;
    this.costs = { ...DEFAULT_COSTS, ...costs };
    this.mutex = new UserLock(`${mdevice.name}.mutex`);
    this.notifier.owner = mdevice.name;
    if (dma !== undefined) {
      if (!Number.isSafeInteger(dma.start) || dma.start % PAGE_SIZE !== 0) throw new HmmInputError("dmirror_open", "dma.start", dma.start, "a page-aligned address");
      if (!Number.isSafeInteger(dma.size) || dma.size <= 0 || dma.size % PAGE_SIZE !== 0) throw new HmmInputError("dmirror_open", "dma.size", dma.size, "a positive multiple of PAGE_SIZE");
      const map = new HmmDmaMap();
      const ret = hmmDmaMapAlloc(dma.dev, map, dma.size / PAGE_SIZE, PAGE_SIZE);
      if (ret !== 0) throw new HmmStateError(ret === -HmmErrno.EOPNOTSUPP ? "EOPNOTSUPP" : "ENOMEM", `dmirror_open: hmm_dma_map_alloc on ${dma.dev.bdf} returned ${ret}`);
      map.userLock = this.mutex;
      this.dma = { dev: dma.dev, endpoint: dma.dev.kernel.platform.endpoint(dma.dev.bdf), start: dma.start, size: dma.size, map, batched: dma.batched ?? false };
    } else {
      this.dma = undefined;
    }
    const ret = mmuIntervalNotifierInsert(this.notifier, mm, 0, TASK_SIZE, {
      invalidate: (sub, range, curSeq) => this.#invalidate(sub, range, curSeq),
      liveTranslations: (_sub, start, end) => this.liveTranslations(start, end),
    });
    if (ret !== 0) {
      if (this.dma !== undefined) hmmDmaMapFree(this.dma.dev, this.dma.map);
      throw new HmmStateError("EINVAL", `dmirror_open: mmu_interval_notifier_insert returned ${ret}`);
    }
  }

  /**
   * mmap(2) of the dmirror file itself (dmirror_fops_mmap): a private mapping of `length` bytes in this
   * mirror's process where the driver inserts one fresh zeroed page per page with vm_insert_page, so the
   * VMA becomes VM_MIXEDMAP and its entries are present and read-only. Returns the address.
   */
  mmap(length: number, prot: number = PROT_READ | PROT_WRITE): number {
    const addr = this.mm.mmap(length, { prot });
    const end = addr + Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const sys = this.mm.sys;
    for (let a = addr; a < end; a += PAGE_SIZE) {
      const pfn = sys.allocPage();
      const ret = this.mm.vmInsertPage(a, pfn);
      sys.putPage(pfn); // the mapping holds the page now (test_hmm.c drops its own reference the same way)
      if (ret !== 0) {
        this.mm.munmap(addr, end - addr);
        throw new HmmStateError("ENOMEM", `dmirror_fops_mmap: vm_insert_page at ${hex(a)} returned ${ret}`);
      }
    }
    return addr;
  }

  /** close(): drop every mirror entry, remove the notifier, free the DMA map. */
  close(): void {
    if (this.#released) return;
    this.#released = true;
    mmuIntervalNotifierRemove(this.notifier);
    this.mutex.lock();
    this.#update(0, TASK_SIZE);
    this.mutex.unlock();
    if (this.dma !== undefined) hmmDmaMapFree(this.dma.dev, this.dma.map);
  }

  /** dmirror_interval_invalidate. */
  #invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
    // Migration to this device is handled by the migration code (test_hmm.c filters MIGRATE only).
    if (range.event === MmuNotifyEvent.MIGRATE && range.owner === this.mdevice) return true;
    if (mmuNotifierRangeBlockable(range)) this.mutex.lock();
    else if (!this.mutex.tryLock()) return false;
    mmuIntervalSetSeq(sub, curSeq);
    const dropped = this.#update(range.start, range.end);
    if (dropped > 0) this.mm.sys.kernel.trace.clock.advance(this.costs.deviceTlbInvalidateNs);
    this.mutex.unlock();
    return true;
  }

  /** dmirror_do_update: drops the mirror entries of [start, end); returns how many. */
  #update(start: number, end: number): number {
    let n = 0;
    const first = Math.floor(start / PAGE_SIZE);
    const last = Math.ceil(end / PAGE_SIZE);
    if (last - first < this.pt.size) {
      for (let p = first; p < last; p++) if (this.pt.delete(p)) n++;
    } else {
      for (const p of [...this.pt.keys()]) {
        if (p >= first && p < last) {
          this.pt.delete(p);
          n++;
        }
      }
    }
    const d = this.dma;
    if (d !== undefined) {
      const lo = Math.max(start, d.start);
      const hi = Math.min(end, d.start + d.size);
      const map = d.map;
      for (let i = (lo - d.start) / PAGE_SIZE; i < (hi - d.start) / PAGE_SIZE; i++) {
        if (this.#localDma.delete(i)) n++;
        if (hmmDmaUnmapPfn(d.dev, map, i)) n++;
        map.flags[i] = (map.flags[i] ?? 0) & ~HMM_PFN_FLAGS;
      }
    }
    return n;
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Drops the mirror entry of one virtual page (device-page migration back). */
  [kErase](addr: number): void {
    this.#update(addr, addr + PAGE_SIZE);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Drops mirror entries pointing at device page `dpfn` (eviction). */
  [kEraseDevicePage](dpfn: number): void {
    const backing = this.mdevice.pagemap.backingPhys(dpfn) / PAGE_SIZE;
    for (const [vpn, e] of [...this.pt]) if (Math.floor(e / 4) === backing) this.pt.delete(vpn);
    for (const [i, e] of [...this.#localDma]) if (Math.floor(e / 4) === dpfn) this.#localDma.delete(i);
  }

  /** Device translations live in [start, end): mirror entries plus DMA-mapped entries. */
  liveTranslations(start: number, end: number): number {
    let n = 0;
    for (const p of this.pt.keys()) if (p * PAGE_SIZE >= start && p * PAGE_SIZE < end) n++;
    const d = this.dma;
    if (d !== undefined) {
      const lo = Math.max(start, d.start);
      const hi = Math.min(end, d.start + d.size);
      for (let i = Math.max(0, (lo - d.start) / PAGE_SIZE); i < (hi - d.start) / PAGE_SIZE; i++) {
        if (((d.map.flags[i] ?? 0) & HMM_PFN_DMA_MAPPED) !== 0) n++;
        if (this.#localDma.has(i)) n++;
      }
    }
    return n;
  }

  /**
   * The physical address the device reaches for virtual page `addr` (through the IOMMU in DMA mode),
   * with whether it may write, or undefined when the device has no translation.
   */
  translate(addr: number): { phys: PhysAddr; write: boolean } | undefined {
    const vpn = Math.floor(addr / PAGE_SIZE);
    const d = this.dma;
    if (d !== undefined && addr >= d.start && addr < d.start + d.size) {
      const i = (vpn * PAGE_SIZE - d.start) / PAGE_SIZE;
      const local = this.#localDma.get(i);
      if (local !== undefined) return { phys: this.mdevice.pagemap.backingPhys(Math.floor(local / 4)), write: local % 4 === TAG_WRITE };
      const f = d.map.flags[i] ?? 0;
      if ((f & HMM_PFN_DMA_MAPPED) === 0) return undefined;
      if ((f & HMM_PFN_P2PDMA_BUS) !== 0) return { phys: ((d.map.pfns[i] ?? 0) * PAGE_SIZE) as PhysAddr, write: (f & HMM_PFN_WRITE) !== 0 };
      const dmaAddr = this.#dmaAddrOf(i, f);
      const phys = d.dev.ops === "iommu" ? d.dev.domain?.iovaToPhys(unsafeIova(dmaAddr)) : ((dmaAddr - d.dev.busOffset) as PhysAddr);
      return phys === undefined ? undefined : { phys, write: (f & HMM_PFN_WRITE) !== 0 };
    }
    const e = this.pt.get(vpn);
    return e === undefined ? undefined : { phys: (Math.floor(e / 4) * PAGE_SIZE) as PhysAddr, write: e % 4 === TAG_WRITE };
  }

  /** The DMA address of window entry `i` (mapped): its IOVA slot, or a P2P bus address (a hole in the IOVA). */
  #dmaAddrOf(i: number, f: number): number {
    const d = this.dma;
    if (d === undefined) return DMA_MAPPING_ERROR;
    if ((f & HMM_PFN_P2PDMA_BUS) !== 0) {
      const phys = (d.map.pfns[i] ?? 0) * PAGE_SIZE;
      const provider = p2pdmaProviderOf(d.dev, phys as PhysAddr);
      return provider === undefined ? DMA_MAPPING_ERROR : pciP2pdmaBusAddrMap(provider, phys as PhysAddr);
    }
    return d.map.dmaList?.[i] ?? d.map.state.addr + i * PAGE_SIZE;
  }

  // ---- faults ----------------------------------------------------------------------------------
  /** dmirror_fault: [start, end) in chunks of 64 pages; 0 or a negative errno. */
  fault(start: number, end: number, write: boolean): number {
    const range = new HmmRange({ notifier: this.notifier, start, end: Math.min(start + CHUNK * PAGE_SIZE, end), defaultFlags: HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0), pfnFlagsMask: 0, devPrivateOwner: this.mdevice });
    const inDma = this.dma;
    for (let addr = start; addr < end; addr = range.end) {
      range.start = addr;
      range.end = Math.min(addr + CHUNK * PAGE_SIZE, end);
      if (inDma !== undefined && addr >= inDma.start && range.end <= inDma.start + inDma.size) {
        // DMA mode: the range's output is the hmm_dma_map's own pfn list.
        range.pfns = inDma.map.pfns;
        range.flags = inDma.map.flags;
        range.index = (addr - inDma.start) / PAGE_SIZE;
      } else {
        const n = (range.end - range.start) / PAGE_SIZE;
        range.pfns = new Uint32Array(n);
        range.flags = new Uint16Array(n);
        range.index = 0;
      }
      const ret = this.#rangeFault(range);
      if (ret !== 0) return ret;
    }
    return 0;
  }

  /** dmirror_range_fault: the read_begin / hmm_range_fault / lock / read_retry loop, then program. */
  #rangeFault(range: HmmRange): number {
    const clock = this.mm.sys.kernel.trace.clock;
    const deadline = clock.now + HMM_RANGE_DEFAULT_TIMEOUT * 1e6;
    const inject = this.inject;
    range.onWalk = inject["in-hmm-range-fault"];
    let attempts = 0;
    let seq = this.staleSeqBug ? mmuIntervalReadBegin(this.notifier) : 0;
    for (;;) {
      if (clock.now > deadline) {
        this.lastAttempts = attempts;
        return -HmmErrno.EBUSY;
      }
      attempts++;
      clock.advance(this.costs.faultAttemptNs);
      if (!this.staleSeqBug) seq = mmuIntervalReadBegin(this.notifier);
      range.notifierSeq = seq;
      inject["after-read-begin"]?.();
      this.mm.mmapReadLock();
      let ret: number;
      try {
        ret = hmmRangeFault(range);
      } finally {
        this.mm.mmapReadUnlock();
      }
      if (ret !== 0) {
        if (ret === -HmmErrno.EBUSY) {
          // A retry that reuses the stale sequence spins until the timeout (a virtual-time model of it).
          if (this.staleSeqBug) clock.advanceTo(Math.max(clock.now, deadline));
          // No invalidation since read_begin: hmm_range_fault met a migration entry and would have slept in
          // migration_entry_wait; a model thread cannot finish that migration, so the wait is priced instead.
          else if (!mmuIntervalCheckRetry(this.notifier, seq)) clock.advance(this.costs.migrationWaitNs);
          continue;
        }
        this.lastAttempts = attempts;
        return ret;
      }
      inject["before-driver-lock"]?.();
      this.mutex.lock();
      // A thread injected here blocks on the mutex the fault path holds: it runs at the unlock.
      const underLock = inject["before-read-retry"];
      if (underLock !== undefined) this.mutex.whenUnlocked(underLock);
      if (mmuIntervalReadRetry(this.notifier, range.notifierSeq, this.mutex)) {
        this.mutex.unlock();
        continue;
      }
      break;
    }
    this.lastAttempts = attempts;
    let ret: number;
    try {
      ret = this.#doFault(range);
    } finally {
      this.mutex.unlock();
    }
    return ret;
  }

  /** dmirror_do_fault: program the device page table from the range's output (under the mutex). */
  #doFault(range: HmmRange): number {
    hmmCheckMayProgram(this.notifier, this.mutex);
    const n = (range.end - range.start) / PAGE_SIZE;
    const wantWrite = (range.defaultFlags & HMM_PFN_REQ_WRITE) !== 0;
    const d = this.dma;
    const pagemap = this.mdevice.pagemap;
    if (d?.map.flags === range.flags) {
      const map = d.map;
      const base = range.index;
      // Device-private pages of this device are local memory, not DMA.
      let runStart = -1;
      for (let j = 0; j <= n; j++) {
        const i = base + j;
        const local = j < n && isLocal(pagemap, map.pfns[i] ?? 0);
        if (j < n && !local) {
          if (runStart < 0) runStart = i;
          continue;
        }
        if (runStart >= 0) {
          const r = this.#mapRun(runStart, i - runStart);
          if (r !== 0) return r;
          runStart = -1;
        }
        if (local) {
          const f = map.flags[i] ?? 0;
          this.#localDma.set(i, (map.pfns[i] ?? 0) * 4 + ((f & HMM_PFN_WRITE) !== 0 ? TAG_WRITE : 0));
        }
      }
      return 0;
    }
    for (let j = 0; j < n; j++) {
      const f = range.flags[range.index + j] ?? 0;
      if ((f & HMM_PFN_ERROR) !== 0 || (f & HMM_PFN_VALID) === 0) return -HmmErrno.EFAULT;
      let pfn = range.pfns[range.index + j] ?? 0;
      if (isLocal(pagemap, pfn)) pfn = pagemap.backingPhys(pfn) / PAGE_SIZE;
      const write = (f & HMM_PFN_WRITE) !== 0;
      if (!write && wantWrite) return -HmmErrno.EFAULT;
      this.pt.set(range.start / PAGE_SIZE + j, pfn * 4 + (write ? TAG_WRITE : 0));
    }
    return 0;
  }

  #mapRun(idx: number, count: number): number {
    const d = this.dma;
    if (d === undefined) return 0;
    const map = d.map;
    if (d.batched) {
      let done = 0;
      while (done < count) {
        const n = Math.min(CHUNK, count - done);
        const got = hmmDmaMapPfnRun(d.dev, map, idx + done, n, this.#p2p, this.#scratch);
        if (got < n) return -HmmErrno.EFAULT;
        done += n;
      }
      return 0;
    }
    for (let i = idx; i < idx + count; i++) {
      if (hmmDmaMapPfn(d.dev, map, i, this.#p2p) === DMA_MAPPING_ERROR) return -HmmErrno.EFAULT;
    }
    return 0;
  }

  // ---- device access ---------------------------------------------------------------------------
  /**
   * One device access of [addr, addr + len) through the mirror, no fault: -ENOENT at the first page
   * without a translation (or without write permission for a write). Returns bytes done or -ENOENT.
   */
  #access(addr: number, buf: Uint8Array, write: boolean): number {
    const len = buf.length;
    let pos = 0;
    const d = this.dma;
    while (pos < len) {
      const at = addr + pos;
      const off = at % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, len - pos);
      // One page is the common access: no view object for it.
      const chunk = n === len ? buf : buf.subarray(pos, pos + n);
      if (d !== undefined && at >= d.start && at < d.start + d.size) {
        const i = Math.floor((at - d.start) / PAGE_SIZE);
        const f = d.map.flags[i] ?? 0;
        const local = this.#localDma.get(i);
        if (local !== undefined) {
          if (write && local % 4 !== TAG_WRITE) return pos;
          const phys = this.mdevice.pagemap.backingPhys(Math.floor(local / 4)) + off;
          if (write) this.mm.sys.memory.write(unsafePhysAddr(phys), chunk);
          else this.mm.sys.memory.readInto(unsafePhysAddr(phys), chunk);
        } else {
          if ((f & HMM_PFN_DMA_MAPPED) === 0 || (write && (f & HMM_PFN_WRITE) === 0)) return pos;
          const dmaAddr = this.#dmaAddrOf(i, f) + off;
          if (write) d.endpoint.dmaWrite(unsafeDmaAddr(dmaAddr), chunk);
          else d.endpoint.dmaReadInto(unsafeDmaAddr(dmaAddr), chunk);
        }
      } else {
        const e = this.pt.get(Math.floor(at / PAGE_SIZE));
        if (e === undefined || (write && e % 4 !== TAG_WRITE)) return pos;
        const phys = Math.floor(e / 4) * PAGE_SIZE + off;
        if (write) this.mm.sys.memory.write(unsafePhysAddr(phys), chunk);
        else this.mm.sys.memory.readInto(unsafePhysAddr(phys), chunk);
      }
      pos += n;
    }
    this.mm.invalidations.deviceAccess();
    return len;
  }

  /** The device reads `buf.length` bytes at `addr`, faulting as needed (the READ loop). 0 or -errno. */
  deviceRead(addr: number, buf: Uint8Array): number {
    return this.#rw(addr, buf, false, undefined);
  }

  /** The device writes `buf` at `addr`, faulting as needed. 0 or -errno. */
  deviceWrite(addr: number, buf: Uint8Array): number {
    return this.#rw(addr, buf, true, undefined);
  }

  #rw(addr: number, buf: Uint8Array, write: boolean, cmd: HmmDmirrorCmd | undefined): number {
    if (this.mm.users <= 0) return -HmmErrno.EINVAL;
    let done = 0;
    for (;;) {
      this.mutex.lock();
      let got: number;
      try {
        got = this.#access(addr + done, done === 0 ? buf : buf.subarray(done), write);
      } finally {
        this.mutex.unlock();
      }
      done += got;
      if (cmd !== undefined) cmd.cpages = Math.floor(done / PAGE_SIZE);
      if (done === buf.length) return 0;
      const page = Math.floor((addr + done) / PAGE_SIZE) * PAGE_SIZE;
      const end = Math.ceil((addr + buf.length) / PAGE_SIZE) * PAGE_SIZE;
      const ret = this.fault(page, end, write);
      if (ret !== 0) return ret;
      if (cmd !== undefined) cmd.faults++;
    }
  }

  #checkCmd(fn: string, cmd: HmmDmirrorCmd): void {
    if (!Number.isSafeInteger(cmd.addr) || cmd.addr % PAGE_SIZE !== 0) throw new HmmInputError(fn, "cmd.addr", cmd.addr, "a page-aligned address");
    if (!Number.isSafeInteger(cmd.npages) || cmd.npages < 1 || cmd.addr + cmd.npages * PAGE_SIZE > TASK_SIZE) throw new HmmInputError(fn, "cmd.npages", cmd.npages, "a positive page count inside the address space");
    if (cmd.ptr.length < cmd.npages * PAGE_SIZE) throw new HmmInputError(fn, "cmd.ptr", cmd.ptr, `a buffer of at least npages * PAGE_SIZE (${cmd.npages * PAGE_SIZE}) bytes`);
  }

  /** HMM_DMIRROR_READ: copy npages from the mirror into cmd.ptr. */
  read(cmd: HmmDmirrorCmd): number {
    this.#checkCmd("HMM_DMIRROR_READ", cmd);
    cmd.cpages = 0;
    cmd.faults = 0;
    const bounce = new Uint8Array(cmd.npages * PAGE_SIZE);
    const ret = this.#rw(cmd.addr, bounce, false, cmd);
    if (ret === 0) cmd.ptr.set(bounce);
    return ret;
  }

  /** HMM_DMIRROR_WRITE: copy npages from cmd.ptr into memory through the mirror. */
  write(cmd: HmmDmirrorCmd): number {
    this.#checkCmd("HMM_DMIRROR_WRITE", cmd);
    cmd.cpages = 0;
    cmd.faults = 0;
    return this.#rw(cmd.addr, cmd.ptr.subarray(0, cmd.npages * PAGE_SIZE), true, cmd);
  }

  /** HMM_DMIRROR_SNAPSHOT: one byte per page describing the CPU entry, without faulting. */
  snapshot(cmd: HmmDmirrorCmd): number {
    const fn = "HMM_DMIRROR_SNAPSHOT";
    if (!Number.isSafeInteger(cmd.addr) || cmd.addr % PAGE_SIZE !== 0) throw new HmmInputError(fn, "cmd.addr", cmd.addr, "a page-aligned address");
    if (cmd.ptr.length < cmd.npages) throw new HmmInputError(fn, "cmd.ptr", cmd.ptr, `at least npages (${cmd.npages}) bytes`);
    if (this.mm.users <= 0) return -HmmErrno.EINVAL;
    const end = cmd.addr + cmd.npages * PAGE_SIZE;
    cmd.cpages = 0;
    const pfns = new Uint32Array(CHUNK);
    const flags = new Uint16Array(CHUNK);
    for (let addr = cmd.addr; addr < end; ) {
      const next = Math.min(addr + CHUNK * PAGE_SIZE, end);
      const range = new HmmRange({ notifier: this.notifier, start: addr, end: next, pfns, flags, devPrivateOwner: this.mdevice });
      for (;;) {
        range.notifierSeq = mmuIntervalReadBegin(this.notifier);
        this.mm.mmapReadLock();
        let ret: number;
        try {
          ret = hmmRangeFault(range);
        } finally {
          this.mm.mmapReadUnlock();
        }
        if (ret === -HmmErrno.EBUSY) continue;
        if (ret !== 0) return ret;
        this.mutex.lock();
        const retry = mmuIntervalReadRetry(this.notifier, range.notifierSeq, this.mutex);
        if (!retry) {
          const n = (next - addr) / PAGE_SIZE;
          for (let j = 0; j < n; j++) cmd.ptr[(addr - cmd.addr) / PAGE_SIZE + j] = this.#mkentry(flags[j] ?? 0, pfns[j] ?? 0);
        }
        this.mutex.unlock();
        if (!retry) break;
      }
      cmd.cpages += (next - addr) / PAGE_SIZE;
      addr = next;
    }
    return 0;
  }

  /** dmirror_mkentry. */
  #mkentry(f: number, pfn: number): number {
    if ((f & HMM_PFN_ERROR) !== 0) return HMM_DMIRROR_PROT_ERROR;
    if ((f & HMM_PFN_VALID) === 0) return HMM_DMIRROR_PROT_NONE;
    let perm = HMM_DMIRROR_PROT_NONE;
    const pgmap = this.mm.sys.pagemapOf(pfn);
    if (pgmap?.coherent === true) perm = pgmap.owner === this.mdevice ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL : HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE;
    else if (pgmap !== undefined) perm = pgmap.owner === this.mdevice ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL : HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE;
    else if (pfn === this.mm.sys.zeroPfn) perm = HMM_DMIRROR_PROT_ZERO;
    perm |= (f & HMM_PFN_WRITE) !== 0 ? HMM_DMIRROR_PROT_WRITE : HMM_DMIRROR_PROT_READ;
    if (hmmPfnToMapOrder(f) === HPAGE_PMD_ORDER) perm |= HMM_DMIRROR_PROT_PMD;
    return perm;
  }

  /** HMM_DMIRROR_MIGRATE_TO_DEV: migrate the range to this device's private memory, then read it back. */
  migrateToDev(cmd: HmmDmirrorCmd): number {
    this.#checkCmd("HMM_DMIRROR_MIGRATE_TO_DEV", cmd);
    if (this.mm.users <= 0) return -HmmErrno.EINVAL;
    const ret = this.#migrateChunks(cmd, MIGRATE_VMA_SELECT_SYSTEM, VM_READ, (args, vma) => {
      this.#allocAndCopyToDev(args, (vma.flags & VM_WRITE) !== 0);
      migrateVmaPages(args);
      this.#finalizeAndMap(args);
    });
    if (ret !== 0) return ret;
    // Only pages now in device memory are in the mirror: a read without faults reports them.
    cmd.cpages = 0;
    return this.#readBack(cmd);
  }

  /**
   * The walk dmirror_migrate_to_device and dmirror_migrate_to_system share: under the mmap read lock,
   * each VMA-bounded chunk of at most one PMD goes through migrate_vma_setup, `move` (which
   * copies and calls migrate_vma_pages) and migrate_vma_finalize. A missing VMA, or one without
   * `vmaFlags`, is -EINVAL.
   */
  #migrateChunks(cmd: HmmDmirrorCmd, select: number, vmaFlags: number, move: (args: MigrateVma, vma: Vma) => void): number {
    const start = cmd.addr;
    const end = start + cmd.npages * PAGE_SIZE;
    const mm = this.mm;
    mm.mmapReadLock();
    try {
      for (let addr = start; addr < end; ) {
        const vma = mm.findVma(addr);
        if (vma === undefined || (vma.flags & vmaFlags) !== vmaFlags) return -HmmErrno.EINVAL;
        // v6.19 dmirror migrates a PMD's worth at a time (src/dst of PTRS_PER_PTE entries), on PMD
        // boundaries, so a THP or an empty PMD can go as one compound entry.
        const next = Math.min(end, (Math.floor(addr / PMD_BYTES) + 1) * PMD_BYTES, vma.end);
        const args = new MigrateVma({ mm, vma, start: addr, end: next, pgmapOwner: this.mdevice, flags: select | MIGRATE_VMA_SELECT_COMPOUND });
        const ret = migrateVmaSetup(args);
        if (ret !== 0) return ret;
        move(args, vma);
        migrateVmaFinalize(args);
        addr = next;
      }
    } finally {
      mm.mmapReadUnlock();
    }
    return 0;
  }

  /** Read the command's range through the mirror without faulting into cmd.ptr; -ENOENT unless every page is mapped. */
  #readBack(cmd: HmmDmirrorCmd): number {
    const bounce = new Uint8Array(cmd.npages * PAGE_SIZE);
    this.mutex.lock();
    const got = this.#access(cmd.addr, bounce, false);
    this.mutex.unlock();
    cmd.cpages = Math.floor(got / PAGE_SIZE);
    if (got !== bounce.length) return -HmmErrno.ENOENT;
    cmd.ptr.set(bounce);
    return 0;
  }

  /** dmirror_migrate_alloc_and_copy. */
  #allocAndCopyToDev(args: MigrateVma, vmaWrite: boolean): void {
    const sys = this.mm.sys;
    const pagemap = this.mdevice.pagemap;
    for (let j = 0; j < args.npages; j++) {
      const s = args.src[j] ?? 0;
      if ((s & MIGRATE_PFN_MIGRATE) === 0) continue;
      if ((s & MIGRATE_PFN_COMPOUND) !== 0) {
        this.#allocAndCopyCompoundToDev(args, j, vmaWrite);
        j += HPAGE_PMD_NR - 1;
        continue;
      }
      const dpfn = this.mdevice[kAllocDevicePage](this);
      if (dpfn < 0) continue;
      const spfn = migratePfnToPfn(s);
      if (spfn >= 0) sys.copyPage(pagemap.backingPhys(dpfn) / PAGE_SIZE, spfn);
      args.dst[j] = migratePfn(dpfn) | ((s & MIGRATE_PFN_WRITE) !== 0 || (spfn < 0 && vmaWrite) ? MIGRATE_PFN_WRITE : 0);
    }
  }

  /**
   * The compound case of dmirror_migrate_alloc_and_copy: a compound device folio for a whole THP (or an
   * empty PMD), or, when the large allocation fails (HMM_DMIRROR_FLAG_FAIL_ALLOC, cleared as it fires),
   * 512 single device pages; migrate_vma_pages then splits the source.
   */
  #allocAndCopyCompoundToDev(args: MigrateVma, j: number, vmaWrite: boolean): void {
    const sys = this.mm.sys;
    const pagemap = this.mdevice.pagemap;
    const s = args.src[j] ?? 0;
    const spfn = migratePfnToPfn(s);
    const write = (s & MIGRATE_PFN_WRITE) !== 0 || (spfn < 0 && vmaWrite) ? MIGRATE_PFN_WRITE : 0;
    let head = -1;
    if ((this.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC) !== 0) this.flags &= ~HMM_DMIRROR_FLAG_FAIL_ALLOC;
    else head = this.mdevice[kAllocDeviceCompound](this);
    for (let t = 0; t < HPAGE_PMD_NR; t++) {
      const dpfn = head >= 0 ? head + t : this.mdevice[kAllocDevicePage](this);
      if (dpfn < 0) continue;
      if (spfn >= 0) sys.copyPage(pagemap.backingPhys(dpfn) / PAGE_SIZE, spfn + t);
      if (head < 0) args.dst[j + t] = migratePfn(dpfn) | write;
    }
    if (head >= 0) args.dst[j] = migratePfn(head) | MIGRATE_PFN_COMPOUND | write;
  }

  /** HMM_DMIRROR_FLAGS: sets dmirror->flags to cmd.npages (upstream passes the flags there). */
  setFlags(cmd: HmmDmirrorCmd): number {
    if (!Number.isInteger(cmd.npages) || (cmd.npages & ~HMM_DMIRROR_FLAG_FAIL_ALLOC) !== 0) throw new HmmInputError("HMM_DMIRROR_FLAGS", "cmd.npages", cmd.npages, "0 or HMM_DMIRROR_FLAG_FAIL_ALLOC");
    this.flags = cmd.npages;
    return 0;
  }

  /** dmirror_migrate_finalize_and_map: the mirror maps the migrated pages (their backing pages). */
  #finalizeAndMap(args: MigrateVma): void {
    this.mutex.lock();
    for (let j = 0; j < args.npages; j++) {
      const dst = args.dst[j] ?? 0;
      const head = migratePfnToPfn(dst);
      if (head < 0 || ((args.src[j] ?? 0) & MIGRATE_PFN_MIGRATE) === 0) continue;
      // A compound destination maps its 512 pages.
      const count = (dst & MIGRATE_PFN_COMPOUND) !== 0 ? HPAGE_PMD_NR : 1;
      for (let t = 0; t < count; t++) this.#mapMigrated(args.start + (j + t) * PAGE_SIZE, head + t, dst);
      j += count - 1;
    }
    this.mutex.unlock();
  }

  #mapMigrated(addr: number, dpfn: number, dst: number): void {
    const d = this.dma;
    const tag = (dst & MIGRATE_PFN_WRITE) !== 0 ? TAG_WRITE : 0;
    if (d !== undefined && addr >= d.start && addr < d.start + d.size) {
      const i = (addr - d.start) / PAGE_SIZE;
      hmmDmaUnmapPfn(d.dev, d.map, i);
      d.map.flags[i] = 0;
      this.#localDma.set(i, dpfn * 4 + tag);
    } else {
      this.pt.set(addr / PAGE_SIZE, (this.mdevice.pagemap.backingPhys(dpfn) / PAGE_SIZE) * 4 + tag);
    }
  }

  /**
   * HMM_DMIRROR_MIGRATE_TO_SYS: migrate this device's pages in the range back to system memory (the only
   * way back for coherent pages, which CPU accesses never fault).
   */
  migrateToSys(cmd: HmmDmirrorCmd): number {
    this.#checkCmd("HMM_DMIRROR_MIGRATE_TO_SYS", cmd);
    if (this.mm.users <= 0) return -HmmErrno.EINVAL;
    cmd.cpages = 0;
    return this.#migrateChunks(cmd, this.mdevice.selectDevice, 0, (args) => {
      this.mdevice.allocAndCopyToSys(args, this);
      migrateVmaPages(args);
      // dmirror_successful_migrated_pages: entries still VALID and MIGRATE after migrate_vma_pages.
      for (let j = 0; j < args.npages; j++) {
        const s = args.src[j] ?? 0;
        if ((s & MIGRATE_PFN_VALID) !== 0 && (s & MIGRATE_PFN_MIGRATE) !== 0) cmd.cpages++;
      }
    });
  }

  /** HMM_DMIRROR_EXCLUSIVE: make_device_exclusive on each page, map it atomic, then read it back. */
  exclusive(cmd: HmmDmirrorCmd): number {
    this.#checkCmd("HMM_DMIRROR_EXCLUSIVE", cmd);
    if (this.mm.users <= 0) return -HmmErrno.EINVAL;
    const mm = this.mm;
    for (let j = 0; j < cmd.npages; j++) {
      const addr = cmd.addr + j * PAGE_SIZE;
      mm.mmapReadLock();
      let pfn: number;
      try {
        pfn = mm.makeDeviceExclusive(addr, this.mdevice);
      } finally {
        mm.mmapReadUnlock();
      }
      if (pfn < 0) return pfn;
      this.mutex.lock();
      this.pt.set(addr / PAGE_SIZE, pfn * 4 + TAG_ATOMIC);
      this.mutex.unlock();
    }
    return this.#readBack(cmd);
  }

  /** HMM_DMIRROR_CHECK_EXCLUSIVE: -EPERM while any page of the range is still mapped atomic. */
  checkExclusive(cmd: HmmDmirrorCmd): number {
    this.mutex.lock();
    let ret = 0;
    for (let j = 0; j < cmd.npages; j++) {
      const e = this.pt.get(cmd.addr / PAGE_SIZE + j);
      if (e !== undefined && e % 4 === TAG_ATOMIC) ret = -HmmErrno.EPERM;
    }
    this.mutex.unlock();
    return ret;
  }

  /** The ioctl entry point by number (HmmDmirrorIoctl). */
  ioctl(nr: number, cmd: HmmDmirrorCmd): number {
    switch (nr) {
      case HmmDmirrorIoctl.READ:
        return this.read(cmd);
      case HmmDmirrorIoctl.WRITE:
        return this.write(cmd);
      case HmmDmirrorIoctl.MIGRATE_TO_DEV:
        return this.migrateToDev(cmd);
      case HmmDmirrorIoctl.MIGRATE_TO_SYS:
        return this.migrateToSys(cmd);
      case HmmDmirrorIoctl.SNAPSHOT:
        return this.snapshot(cmd);
      case HmmDmirrorIoctl.EXCLUSIVE:
        return this.exclusive(cmd);
      case HmmDmirrorIoctl.CHECK_EXCLUSIVE:
        return this.checkExclusive(cmd);
      case HmmDmirrorIoctl.FLAGS:
        return this.setFlags(cmd);
      case HmmDmirrorIoctl.RELEASE:
        this.mdevice.release();
        return 0;
      default:
        throw new HmmInputError("dmirror_fops_unlocked_ioctl", "nr", nr, `an HMM_DMIRROR_* command number 0..8 (${hex(nr)} is not one)`);
    }
  }
}

function isLocal(pagemap: DevPagemap, pfn: number): boolean {
  return pfn >= pagemap.startPfn && pfn < pagemap.startPfn + pagemap.nrPages;
}
