import type { PhysAddr, PhysicalMemory } from "@dmasim/memory";
import { hex, type FaultAttr, type Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import type { DmaEvent } from "../events.js";
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, DmaDirection, PAGE_SIZE } from "../constants.js";
import { checkAttrs, checkDir } from "../validate.js";
import { FAIL_SWIOTLB, IO_TLB_DEFAULT_SIZE, IO_TLB_SEGMENT_BYTES, IO_TLB_SEGSIZE, IO_TLB_SHIFT, IO_TLB_SIZE, nrSlots } from "./constants.js";
import { SwiotlbError } from "./errors.js";
import { alignOffset, SlotTable } from "./slots.js";

/** What swiotlb needs from a device (the struct device fields it reads). */
export interface SwiotlbDevice {
  /** Device name for events (a BDF). */
  readonly name: string;
  /** dma_get_min_align_mask(): low address bits the device needs preserved in the bounce buffer. */
  readonly minAlignMask: number;
  /** dma_get_seg_boundary(): a mapping may not cross a multiple of mask + 1; undefined = no limit. */
  readonly segBoundaryMask?: number | undefined;
}

export interface SwiotlbPoolOptions {
  /** Pool bytes; rounded up to whole segments per area. Default IO_TLB_DEFAULT_SIZE (64 MiB). */
  size?: number;
  /** Areas (one per CPU upstream); rounded up to a power of two, reduced so each holds a segment. Default 1. */
  nareas?: number;
  /**
   * Exclusive physical limit for the pool (the default pool comes from low memory so that devices with
   * 32-bit masks can use it). Default 4 GiB; pass Infinity for anywhere.
   */
  below?: number;
}

/** Counters and introspection of one pool (debugfs io_tlb_nslabs / io_tlb_used / io_tlb_used_hiwater). */
export interface SwiotlbStats {
  /** Slots in the pool (io_tlb_nslabs). */
  readonly nslabs: number;
  /** Slots held by live bounce buffers (io_tlb_used). */
  readonly used: number;
  /** Slots not held: `nslabs - used`. */
  readonly free: number;
  /** The most slots ever held at once (io_tlb_used_hiwater). */
  readonly hiwater: number;
  /** Live bounce buffers (mappings not yet unmapped). */
  readonly mappings: number;
}

const MAX_MASK = 0xffffffff;

/**
 * One swiotlb pool (struct io_tlb_mem with its default struct io_tlb_pool, kernel/dma/swiotlb.c): bounce
 * buffers carved out of physical RAM, through which every byte really moves with PhysicalMemory reads and
 * writes. In a confidential guest the pool is shared (decrypted) memory, which is the whole point of it
 * there: a device can only reach shared pages.
 */
export class SwiotlbPool {
  /** The physical memory the pool lives in and bounces to and from. */
  readonly memory: PhysicalMemory;
  /** The platform's counters, clock and events (bounces are counted and traced). */
  readonly trace: Trace;
  /** First byte of the pool (pool->start) and one past the last (pool->end). */
  readonly start: PhysAddr;
  /** One past the pool's last byte (pool->end). */
  readonly end: number;
  /** Slots in the pool: its bytes / IO_TLB_SIZE, rounded up to whole segments per area. */
  readonly nslabs: number;
  /** Areas, each with its own lock and slot search (a power of two; the kernel gives one per CPU). */
  readonly nareas: number;
  /** True when the pool was made shared with set_memory_decrypted (confidential guests). */
  readonly unencrypted: boolean;
  readonly #slots: SlotTable;
  /** Bytes the driver mapped, on a mapping's first data slot (0 = no mapping starts here). */
  readonly #mapSize: Uint32Array;
  /** In-slot offset of the mapping's address + 1, on the same slot (0 = none). */
  readonly #mapOffset: Uint16Array;
  #mappings = 0;
  #released = false;
  /** The fail_swiotlb fault-injection site: a slot search that fails as if the pool were full. */
  readonly #fail: FaultAttr;

  constructor(memory: PhysicalMemory, options: SwiotlbPoolOptions = {}) {
    memory.trace.counters.declare(Counter);
    const size = options.size ?? IO_TLB_DEFAULT_SIZE;
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new SwiotlbError("EINVAL", `SwiotlbPool: size = ${String(size)} is invalid: expected a positive number of bytes`);
    }
    const wantAreas = options.nareas ?? 1;
    if (!Number.isSafeInteger(wantAreas) || wantAreas < 1 || wantAreas > 1024) {
      throw new SwiotlbError("EINVAL", `SwiotlbPool: nareas = ${String(wantAreas)} is invalid: expected an integer in [1, 1024]`);
    }
    const below = options.below ?? 4 * 1024 ** 3;
    if (!(below === Infinity || (Number.isSafeInteger(below) && below > 0))) {
      throw new SwiotlbError("EINVAL", `SwiotlbPool: below = ${String(below)} is invalid: expected a positive address or Infinity`);
    }
    // swiotlb_adjust_nareas() rounds the area count up to a power of two; limit_nareas() keeps at least
    // one segment per area.
    let nareas = 2 ** Math.ceil(Math.log2(wantAreas));
    let nslabs = Math.ceil(nrSlots(size) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
    while (nareas > 1 && nslabs < nareas * IO_TLB_SEGSIZE) nareas /= 2;
    nslabs = Math.ceil(nslabs / (nareas * IO_TLB_SEGSIZE)) * nareas * IO_TLB_SEGSIZE;

    const bytes = nslabs * IO_TLB_SIZE;
    const pages = bytes / PAGE_SIZE;
    let start: PhysAddr;
    try {
      start = memory.allocator.allocPages(pages, below === Infinity ? {} : { below });
    } catch (err) {
      throw new SwiotlbError("ENOMEM", `SwiotlbPool: cannot allocate ${bytes} bytes of RAM below ${hex(below)} for the pool`, {
        cause: err,
      });
    }
    // swiotlb_update_mem_attributes(): the pool must be shared with the host for devices to reach it.
    if (memory.confidential) memory.setMemoryDecrypted(start, pages);

    this.memory = memory;
    this.trace = memory.trace;
    this.#fail = memory.trace.faults.attr(FAIL_SWIOTLB);
    this.start = start;
    this.end = start + bytes;
    this.nslabs = nslabs;
    this.nareas = nareas;
    this.unencrypted = memory.confidential;
    this.#slots = new SlotTable(nslabs, nareas);
    this.#mapSize = new Uint32Array(nslabs);
    this.#mapOffset = new Uint16Array(nslabs);
  }

  /** Slots per area (pool->area_nslabs). */
  get areaNslabs(): number {
    return this.#slots.areaNslabs;
  }

  /** Slot usage and live mappings now (what debugfs shows). */
  get stats(): SwiotlbStats {
    const s = this.#slots;
    return { nslabs: this.nslabs, used: s.used, free: this.nslabs - s.used, hiwater: s.hiwater, mappings: this.#mappings };
  }

  /** Slots in use per area, for seeing which CPU's area served a mapping. */
  areaUsed(area: number): number {
    return this.#slots.areaUsed[area] ?? 0;
  }

  /** Writing 0 to io_tlb_used_hiwater in debugfs. */
  resetHiwater(): void {
    this.#slots.hiwater = this.#slots.used;
  }

  /** is_swiotlb_buffer(): does `phys` lie inside the pool (whether or not a mapping holds it)? */
  isSwiotlbBuffer(phys: PhysAddr): boolean {
    return phys >= this.start && phys < this.end;
  }

  /** swiotlb_max_mapping_size(): a min_align_mask costs the slots it may skip at the front. */
  maxMappingSize(dev: SwiotlbDevice): number {
    const m = dev.minAlignMask;
    const minAlign = m === 0 ? 0 : Math.ceil(m / IO_TLB_SIZE) * IO_TLB_SIZE;
    return IO_TLB_SEGMENT_BYTES - minAlign;
  }

  /**
   * swiotlb_tbl_map_single(): allocate a bounce buffer for [origAddr, origAddr + mappingSize) and copy the
   * original into it. Returns the bounce address, or DMA_MAPPING_ERROR when no run of free slots fits
   * (counted as SwiotlbAllocFail; never thrown).
   */
  tblMapSingle(
    dev: SwiotlbDevice,
    origAddr: PhysAddr,
    mappingSize: number,
    allocAlignMask: number,
    dir: DmaDirection,
    attrs: number,
    cpu: number,
  ): number {
    const fn = "swiotlbTblMapSingle";
    this.#checkLive(fn);
    checkDevice(fn, dev);
    checkPhysRange(fn, "origAddr", origAddr, mappingSize);
    checkMask(fn, "allocAlignMask", allocAlignMask);
    checkDir(fn, dir);
    checkAttrs(fn, attrs);
    if (!Number.isSafeInteger(cpu) || cpu < 0) {
      throw new SwiotlbError("EINVAL", `${fn}: cpu = ${String(cpu)} is invalid: expected a CPU number >= 0`);
    }
    const offset = alignOffset(dev.minAlignMask, allocAlignMask, origAddr);
    const size = alignUp(mappingSize + offset, allocAlignMask + 1);
    // No run of slots is longer than a segment (swiotlb_find_slots): a larger request fails as a full
    // pool would, before anything looks at the memory behind it — whatever its size.
    if (nrSlots(size) > IO_TLB_SEGSIZE) {
      this.trace.counters.add(Counter.SwiotlbAllocFail);
      return DMA_MAPPING_ERROR;
    }
    if (!this.memory.isRam(origAddr, mappingSize)) {
      throw new SwiotlbError("EINVAL", `${fn}: origAddr = ${hex(origAddr)} + ${mappingSize} bytes is not all RAM: only memory with struct pages can be bounced`);
    }

    const req = {
      origAddr,
      allocSize: size,
      allocAlignMask,
      minAlignMask: dev.minAlignMask,
      segBoundaryMask: dev.segBoundaryMask,
    };
    const fail = this.#fail;
    const index0 = fail.armed && fail.shouldFail(size) ? -1 : this.#findSlots(req, cpu);
    if (index0 < 0) {
      // Upstream also warns "swiotlb buffer is full" unless DMA_ATTR_NO_WARN; the counter is the model's warning.
      this.trace.counters.add(Counter.SwiotlbAllocFail);
      return DMA_MAPPING_ERROR;
    }
    const slots = this.#slots;
    this.trace.counters.add(Counter.SwiotlbSlotsAllocated, nrSlots(size));

    // Whole slots of alignment offset become pad slots in front of the data; the rest stays in-slot.
    const padSlots = Math.floor(offset / IO_TLB_SIZE);
    const inSlot = offset % IO_TLB_SIZE;
    const index = index0 + padSlots;
    slots.padSlots[index] = padSlots;
    const dataSlots = nrSlots(size) - padSlots;
    for (let i = 0; i < dataSlots; i++) slots.origAddr[index + i] = origAddr + i * IO_TLB_SIZE;
    this.#mapSize[index] = mappingSize;
    this.#mapOffset[index] = inSlot + 1;
    this.#mappings++;
    const tlbAddr = this.start + index * IO_TLB_SIZE + inSlot;
    // Always copy towards the bounce buffer, even for DMA_FROM_DEVICE: if the device writes only part of
    // the buffer, the unmap copy-back must return the original bytes for the rest, not stale pool data
    // (the comment above swiotlb_bounce() in swiotlb_tbl_map_single explains the same).
    this.#bounce(dev, tlbAddr, mappingSize, true);
    return tlbAddr;
  }

  /**
   * swiotlb_tbl_unmap_single(): copy back for DMA_FROM_DEVICE / DMA_BIDIRECTIONAL (unless
   * DMA_ATTR_SKIP_CPU_SYNC), then free the slots. Throws SwiotlbError, changing nothing, when `tlbAddr` is
   * not the address a live mapping returned or `mappingSize` is not the size it was mapped with.
   */
  tblUnmapSingle(dev: SwiotlbDevice, tlbAddr: PhysAddr, mappingSize: number, dir: DmaDirection, attrs: number): void {
    const fn = "swiotlbTblUnmapSingle";
    this.#checkLive(fn);
    checkDevice(fn, dev);
    checkDir(fn, dir);
    checkAttrs(fn, attrs);
    const index = this.#mappingIndex(fn, tlbAddr);
    const mapped = this.#mapSize[index] ?? 0;
    if (mapped !== mappingSize) {
      throw new SwiotlbError(
        "EINVAL",
        `${fn}: mappingSize = ${String(mappingSize)} does not match the ${mapped} bytes mapped at ${hex(tlbAddr)}`,
      );
    }
    if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0 && (dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL)) {
      this.#bounce(dev, tlbAddr, mappingSize, false);
    }
    const slots = this.#slots;
    const first = index - (slots.padSlots[index] ?? 0);
    const inSlot = (this.#mapOffset[index] ?? 1) - 1;
    const nslots = nrSlots((slots.allocSize[first] ?? 0) + inSlot);
    this.#mapSize[index] = 0;
    this.#mapOffset[index] = 0;
    this.#mappings--;
    slots.release(first, nslots);
    this.trace.counters.add(Counter.SwiotlbSlotsFreed, nslots);
  }

  /** swiotlb_sync_single_for_device(): copy orig → bounce for DMA_TO_DEVICE / DMA_BIDIRECTIONAL. */
  syncSingleForDevice(dev: SwiotlbDevice, tlbAddr: PhysAddr, size: number, dir: DmaDirection): void {
    const fn = "swiotlbSyncSingleForDevice";
    this.#checkSync(fn, dev, tlbAddr, size, dir);
    if (dir === DmaDirection.NONE) throw new SwiotlbError("EINVAL", `${fn}: dir = DMA_NONE is invalid for a sync`);
    if (dir === DmaDirection.TO_DEVICE || dir === DmaDirection.BIDIRECTIONAL) this.#bounce(dev, tlbAddr, size, true);
  }

  /** swiotlb_sync_single_for_cpu(): copy bounce → orig for DMA_FROM_DEVICE / DMA_BIDIRECTIONAL. */
  syncSingleForCpu(dev: SwiotlbDevice, tlbAddr: PhysAddr, size: number, dir: DmaDirection): void {
    const fn = "swiotlbSyncSingleForCpu";
    this.#checkSync(fn, dev, tlbAddr, size, dir);
    if (dir === DmaDirection.NONE) throw new SwiotlbError("EINVAL", `${fn}: dir = DMA_NONE is invalid for a sync`);
    if (dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL) this.#bounce(dev, tlbAddr, size, false);
  }

  /**
   * The original address behind any byte of a live bounce buffer, or undefined. Like swiotlb_bounce(), it
   * needs the device: its min_align_mask says how much of the in-slot offset came from the original.
   */
  origAddrOf(dev: SwiotlbDevice, tlbAddr: PhysAddr): number | undefined {
    if (!Number.isSafeInteger(tlbAddr) || !this.isSwiotlbBuffer(tlbAddr)) return undefined;
    const index = Math.floor((tlbAddr - this.start) / IO_TLB_SIZE);
    const orig = this.#slots.origAddr[index] ?? -1;
    if (orig < 0) return undefined;
    const tlbOffset = this.#tlbOffset(dev, tlbAddr, index, orig);
    return tlbOffset === undefined ? undefined : orig + tlbOffset;
  }

  /**
   * swiotlb_bounce()'s tlb_offset (kernel/dma/swiotlb.c, since 6.9): the in-slot offset of `tlbAddr` less
   * the part of it the device's min_align_mask kept from the original. It is negative for an address in
   * the first min_align bytes of the second or a later slot of a mapping: that byte belongs to the end of
   * the previous slot's stretch of the original, and orig_addr + tlb_offset still names it. Upstream
   * cannot tell the first slot from a later one and trusts the caller; the model can (the first data slot
   * records the mapping's offset), so a negative offset there — before the mapping starts — is undefined.
   */
  #tlbOffset(dev: SwiotlbDevice, tlbAddr: number, index: number, orig: number): number | undefined {
    const tlbOffset = ((tlbAddr - this.start) % IO_TLB_SIZE) - alignOffset(dev.minAlignMask, 0, orig);
    if (tlbOffset < 0 && (this.#mapOffset[index] ?? 0) !== 0) return undefined;
    return tlbOffset;
  }

  /**
   * swiotlb_exit() for this pool: re-encrypt (confidential guests) and return the memory to the page
   * allocator. Refused while any mapping is live.
   */
  release(): void {
    this.#checkLive("SwiotlbPool.release");
    if (this.#mappings !== 0) {
      throw new SwiotlbError("EBUSY", `SwiotlbPool.release: ${this.#mappings} mappings are still live; unmap them first`);
    }
    const pages = (this.end - this.start) / PAGE_SIZE;
    if (this.unencrypted) this.memory.setMemoryEncrypted(this.start, pages);
    this.memory.allocator.freePages(this.start, pages);
    this.#released = true;
  }

  /** Check a bounce range for the padding helper: it must lie inside one live allocation. */
  checkAllocated(fn: string, phys: PhysAddr, len: number): void {
    if (len === 0) return;
    const first = Math.floor((phys - this.start) / IO_TLB_SIZE);
    const last = Math.floor((phys + len - 1 - this.start) / IO_TLB_SIZE);
    if (!this.isSwiotlbBuffer(phys) || !this.isSwiotlbBuffer((phys + len - 1) as PhysAddr)) {
      throw new SwiotlbError("ENOENT", `${fn}: ${hex(phys)} + ${len} bytes is not inside the swiotlb pool`);
    }
    for (let i = first; i <= last; i++) {
      if (this.#slots.list[i] !== 0) {
        throw new SwiotlbError("ENOENT", `${fn}: ${hex(phys)} + ${len} bytes covers swiotlb slot ${i}, which is free`);
      }
    }
  }

  #findSlots(req: Parameters<SlotTable["search"]>[1], cpu: number): number {
    // swiotlb_pool_find_slots(): start at this CPU's area and wrap around the others.
    const nareas = this.nareas;
    const startArea = cpu & (nareas - 1);
    let area = startArea;
    do {
      const index = this.#slots.search(area, req, this.start);
      if (index >= 0) return index;
      area = area + 1 >= nareas ? 0 : area + 1;
    } while (area !== startArea);
    return -1;
  }

  /** The first data slot of the live mapping that returned exactly `tlbAddr`, or a SwiotlbError. */
  #mappingIndex(fn: string, tlbAddr: number): number {
    if (!Number.isSafeInteger(tlbAddr) || !this.isSwiotlbBuffer(tlbAddr as PhysAddr)) {
      throw new SwiotlbError("ENOENT", `${fn}: tlbAddr = ${hex(tlbAddr)} is not a swiotlb buffer (pool is ${hex(this.start)}..${hex(this.end)})`);
    }
    const rel = tlbAddr - this.start;
    const index = Math.floor(rel / IO_TLB_SIZE);
    if ((this.#mapSize[index] ?? 0) === 0 || (this.#mapOffset[index] ?? 0) !== (rel % IO_TLB_SIZE) + 1) {
      throw new SwiotlbError("ENOENT", `${fn}: tlbAddr = ${hex(tlbAddr)} is not the start of a live bounce buffer`);
    }
    return index;
  }

  #checkSync(fn: string, dev: SwiotlbDevice, tlbAddr: number, size: number, dir: number): asserts dir is DmaDirection {
    this.#checkLive(fn);
    checkDevice(fn, dev);
    checkDir(fn, dir);
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new SwiotlbError("EINVAL", `${fn}: size = ${String(size)} is invalid: expected a positive number of bytes`);
    }
    this.#locate(fn, dev, tlbAddr, size);
  }

  /**
   * Map a bounce range to its original address, as swiotlb_bounce() does from the slot it lands in:
   * slot orig_addr plus the offset inside the slot, less the part of the offset the device's
   * min_align_mask preserved. Upstream WARNs and skips or truncates bad ranges; the model throws.
   */
  #locate(fn: string, dev: SwiotlbDevice, tlbAddr: number, size: number): number {
    if (!Number.isSafeInteger(tlbAddr) || !this.isSwiotlbBuffer(tlbAddr as PhysAddr)) {
      throw new SwiotlbError("ENOENT", `${fn}: tlbAddr = ${hex(tlbAddr)} is not a swiotlb buffer`);
    }
    const slots = this.#slots;
    const index = Math.floor((tlbAddr - this.start) / IO_TLB_SIZE);
    const orig = slots.origAddr[index] ?? -1;
    if (orig < 0) throw new SwiotlbError("ENOENT", `${fn}: tlbAddr = ${hex(tlbAddr)} is not inside a live bounce buffer`);
    const tlbOffset = this.#tlbOffset(dev, tlbAddr, index, orig);
    if (tlbOffset === undefined) {
      throw new SwiotlbError("EINVAL", `${fn}: tlbAddr = ${hex(tlbAddr)} is before the start of its mapping`);
    }
    const avail = (slots.allocSize[index] ?? 0) - tlbOffset;
    if (size > avail) {
      throw new SwiotlbError("EINVAL", `${fn}: size = ${size} at ${hex(tlbAddr)} runs past the bounce buffer (${Math.max(avail, 0)} bytes left)`);
    }
    return orig + tlbOffset;
  }

  /** swiotlb_bounce(): move `size` real bytes between the original buffer and the bounce buffer. */
  #bounce(dev: SwiotlbDevice, tlbAddr: number, size: number, toDevice: boolean): void {
    if (size === 0) return;
    const orig = this.#locate("swiotlb_bounce", dev, tlbAddr, size);
    const mem = this.memory;
    if (toDevice) mem.write(tlbAddr as PhysAddr, mem.read(orig as PhysAddr, size));
    else mem.write(orig as PhysAddr, mem.read(tlbAddr as PhysAddr, size));
    this.trace.counters.add(Counter.SwiotlbBounceBytes, size);
    const events = this.trace.events;
    if (events.active) {
      events.emit<DmaEvent>({ type: "swiotlb.bounce", t: this.trace.clock.now, device: dev.name, orig, slot: tlbAddr, len: size, toDevice });
    }
  }

  #checkLive(fn: string): void {
    if (this.#released) throw new SwiotlbError("EINVAL", `${fn}: the swiotlb pool has been released`);
  }
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function checkMask(fn: string, name: string, mask: number): void {
  if (!Number.isSafeInteger(mask) || mask < 0 || mask > MAX_MASK) {
    throw new SwiotlbError("EINVAL", `${fn}: ${name} = ${String(mask)} is invalid: expected a 32-bit mask (0..0xffffffff)`);
  }
}

function checkDevice(fn: string, dev: SwiotlbDevice): void {
  checkMask(fn, "dev.minAlignMask", dev.minAlignMask);
  const b = dev.segBoundaryMask;
  if (b !== undefined && (!Number.isSafeInteger(b) || b < IO_TLB_SIZE - 1 || !isPow2(b + 1))) {
    throw new SwiotlbError("EINVAL", `${fn}: dev.segBoundaryMask = ${String(b)} is invalid: expected 2^n - 1 with n >= ${IO_TLB_SHIFT}`);
  }
}

function isPow2(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

function checkPhysRange(fn: string, name: string, addr: number, size: number): void {
  if (!Number.isSafeInteger(addr) || addr < 0) {
    throw new SwiotlbError("EINVAL", `${fn}: ${name} = ${String(addr)} is invalid: expected a physical address (safe integer >= 0)`);
  }
  if (!Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(addr + size)) {
    throw new SwiotlbError("EINVAL", `${fn}: mappingSize = ${String(size)} is invalid: expected a positive number of bytes`);
  }
}
