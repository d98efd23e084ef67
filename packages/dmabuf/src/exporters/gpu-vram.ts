import { MiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { DmaDirection } from "@dmasim/dma";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import type { SgTable } from "@dmasim/scatterlist";
import { DmaBufErrno, DmaResvUsage } from "../constants.js";
import { DmaBufCounter } from "../counters.js";
import { DmaBuf, dmaBufExport, dmaBufInvalidateMappings } from "../dma-buf.js";
import { emitDmaBuf } from "../events.js";
import type { DmaBufAttachment, DmaBufOps } from "../dma-buf.js";
import { DmaBufInputError } from "../errors.js";
import { DmaBufPhysList, dmaBufPhysListAlloc, dmaBufPhysListSet } from "../phys-list.js";
import type { DmaBufPhysListDma } from "../phys-list.js";
import { DmaFence } from "../resv.js";
import type { DmaBufSystem } from "../system.js";
import { freeSgtFromRanges, sgtFromRanges } from "./sg-from-ranges.js";
import { kRecords } from "../internal.js";

/** Where a buffer should live. */
export type GpuPlacement = "vram" | "ram";
const PLACEMENTS: readonly string[] = ["vram", "ram"];

/** How a `GpuVramExporter` is set up: the GPU, its VRAM BAR, block size and copy speed. */
export interface GpuVramOptions {
  /** The GPU's BDF; its BAR `bar` is the VRAM window, registered as a p2pdma provider. */
  readonly bdf: string;
  /** Index of the BAR that is the VRAM window. */
  readonly bar?: number;
  /** VRAM the exporter manages, from the start of the BAR (default: the whole BAR). */
  readonly vramBytes?: number;
  /** Migration and allocation granule (a TTM resource block); default 2 MiB. */
  readonly blockBytes?: number;
  /**
   * Copy-engine throughput in bytes per ns, which times the KERNEL fence of a migration. Assumed
   * (no published figure for a dma-buf move was found): 25 bytes/ns, a PCIe 4.0 x16 link's order.
   */
  readonly copyBytesPerNs?: number;
}

/** A GPU buffer object: per block, its physical address and whether it is in VRAM. */
interface GpuBo {
  readonly nBlocks: number;
  readonly phys: Float64Array;
  readonly inVram: Uint8Array;
  pinned: number;
  readonly maps: WeakMap<SgTable, DmaBufPhysListDma>;
  buf: DmaBuf | undefined;
  /** Old blocks of a migration that importers may still reach until they unmap (TTM's ghost object). */
  ghosts: { phys: number; vram: boolean }[];
}

/**
 * A GPU exporter with VRAM behind a BAR (amdgpu/xe in spirit): buffers are made of blocks that live in
 * VRAM (P2P memory of the BAR's provider) or in system RAM, so a buffer holds a changing mix of both. A
 * migration — on command or under VRAM pressure — takes the buffer's reservation lock, invalidates every
 * importer's mappings (dma_buf_invalidate_mappings), copies the bytes, installs a KERNEL fence timed by
 * the copy engine and switches the backing; the old blocks are kept until no importer
 * holds an invalidated mapping (TTM frees them once the fences retire). Pinned buffers do not move.
 * Importers that cannot take P2P (static ones, or a route that is not supported) get the buffer moved to
 * RAM at map time, as amdgpu places such buffers in GTT.
 */
export class GpuVramExporter {
  /** The dma-buf subsystem the exporter's buffers belong to. */
  readonly system: DmaBufSystem;
  /** The GPU's BDF. */
  readonly bdf: string;
  /** The VRAM window as a p2pdma provider: importers reach it peer to peer. */
  readonly provider: P2pdmaProvider;
  /** Migration and allocation granule in bytes. */
  readonly blockBytes: number;
  /** Copy-engine throughput in bytes per ns (assumed), which times migration fences. */
  readonly copyBytesPerNs: number;
  /** Blocks of VRAM the exporter manages. */
  readonly nBlocks: number;
  readonly #used: Uint8Array;
  /** Buffers, least recently used first. */
  readonly #lru: GpuBo[] = [];
  #engineBusyUntil = 0;
  #seqno = 0;

  constructor(system: DmaBufSystem, options: GpuVramOptions) {
    const fn = "GpuVramExporter";
    if ((options as unknown) === null || typeof (options as unknown) !== "object") throw new DmaBufInputError(fn, "options", options, "an object { bdf, bar?, blockBytes?, copyBytesPerNs? }");
    const block = options.blockBytes ?? 2 * MiB;
    if (!Number.isSafeInteger(block) || block <= 0 || block % PAGE_SIZE !== 0) throw new DmaBufInputError(fn, "options.blockBytes", block, "a positive multiple of the page size");
    const rate = options.copyBytesPerNs ?? 25;
    if (!Number.isFinite(rate) || rate <= 0) throw new DmaBufInputError(fn, "options.copyBytesPerNs", rate, "bytes per ns > 0");
    this.system = system;
    this.bdf = options.bdf;
    const vram = options.vramBytes;
    if (vram !== undefined && (!Number.isSafeInteger(vram) || vram < block || vram % PAGE_SIZE !== 0)) throw new DmaBufInputError(fn, "options.vramBytes", vram, "a multiple of the page size of at least one block");
    this.provider = system.kernel.platform.addP2pdmaProvider(options.bdf, options.bar ?? 0, vram === undefined ? {} : { size: vram });
    this.blockBytes = block;
    this.copyBytesPerNs = rate;
    this.nBlocks = Math.floor(this.provider.size / block);
    this.#used = new Uint8Array(this.nBlocks);
  }

  /** VRAM blocks not in use. */
  get vramFreeBlocks(): number {
    let n = 0;
    for (let i = 0; i < this.nBlocks; i++) if (this.#used[i] === 0) n++;
    return n;
  }

  /**
   * Allocates and exports a zeroed buffer of `size` bytes (rounded up to blocks), in VRAM when asked
   * and possible — evicting least recently used, unpinned buffers to RAM under pressure — else in RAM.
   */
  allocate(size: number, placement: GpuPlacement = "vram"): DmaBuf {
    const fn = "gpu_bo_create";
    if (!Number.isSafeInteger(size) || size <= 0) throw new DmaBufInputError(fn, "size", size, "a byte count > 0");
    if (!PLACEMENTS.includes(placement)) throw new DmaBufInputError(fn, "placement", placement, '"vram" or "ram"');
    const nb = Math.ceil(size / this.blockBytes);
    const bo: GpuBo = { nBlocks: nb, phys: new Float64Array(nb), inVram: new Uint8Array(nb), pinned: 0, maps: new WeakMap(), buf: undefined, ghosts: [] };
    if (placement === "vram") this.#makeRoom(nb, bo);
    const memory = this.system.kernel.memory;
    for (let i = 0; i < nb; i++) {
      const v = placement === "vram" ? this.#takeVramBlock() : -1;
      if (v >= 0) {
        bo.phys[i] = v;
        bo.inVram[i] = 1;
      } else {
        bo.phys[i] = memory.allocator.allocPages(this.blockBytes / PAGE_SIZE);
      }
      memory.fill(unsafePhysAddr(bo.phys[i] ?? 0), this.blockBytes, 0);
    }
    const ops: DmaBufOps = {
      pin: (a) => this.#pin(bo, a),
      unpin: () => {
        bo.pinned--;
      },
      mapDmaBuf: (a: DmaBufAttachment, dir: DmaDirection) => {
        const err = this.#placeFor(bo, a);
        return err < 0 ? err : sgtFromRanges(a, this.#list(bo), dir, bo.maps);
      },
      unmapDmaBuf: (_a, sgt) => {
        freeSgtFromRanges(sgt, bo.maps);
      },
      mapPhysList: (a) => {
        const err = this.#placeFor(bo, a);
        return err < 0 ? err : this.#list(bo);
      },
      unmapPhysList: () => undefined,
      release: () => {
        this.#release(bo);
      },
    };
    const buf = dmaBufExport(this.system, { expName: `gpu:${this.bdf}`, size: nb * this.blockBytes, ops, priv: bo });
    if (typeof buf === "number") throw new DmaBufInputError(fn, "size", size, "an exportable buffer");
    bo.buf = buf;
    this.#lru.push(bo);
    const trace = this.system.trace;
    if (trace.events.active) {
      let inVram = 0;
      for (let i = 0; i < nb; i++) inVram += bo.inVram[i] ?? 0;
      emitDmaBuf(trace, { type: "dmabuf.place", t: trace.clock.now, buf: buf.inode, exporter: buf.expName, size: buf.size, inVram, totalBlocks: nb });
    }
    return buf;
  }

  /**
   * Migrates the buffer (or the blocks listed) to VRAM or RAM on command: takes the reservation lock
   * (-EDEADLK when it is held), refuses a pinned buffer (-EBUSY) and VRAM that cannot be freed
   * (-ENOMEM). Returns the number of blocks moved.
   */
  migrate(buf: DmaBuf, to: GpuPlacement, blocks?: readonly number[]): number {
    const fn = "gpu_bo_migrate";
    const bo = this.#boOf(fn, buf);
    if (!PLACEMENTS.includes(to)) throw new DmaBufInputError(fn, "to", to, '"vram" or "ram"');
    if (blocks !== undefined) for (const b of blocks) if (!Number.isSafeInteger(b) || b < 0 || b >= bo.nBlocks) throw new DmaBufInputError(fn, "blocks", b, `block indices 0..${bo.nBlocks - 1}`);
    const resv = buf.resv;
    const err = resv.lock();
    if (err !== 0) return err;
    try {
      return this.#move(bo, to, blocks);
    } finally {
      resv.unlock();
    }
  }

  /** Where each block is now: true for VRAM. */
  placement(buf: DmaBuf): boolean[] {
    const bo = this.#boOf("gpu_bo_placement", buf);
    return Array.from(bo.inVram, (v) => v === 1);
  }

  /** The buffer's current physical ranges (for checks: what its importers may reach). */
  currentList(buf: DmaBuf): DmaBufPhysList {
    return this.#list(this.#boOf("gpu_bo_list", buf));
  }

  /** CPU write through the buffer's current backing (a vmap'd write). */
  cpuWrite(buf: DmaBuf, offset: number, bytes: Uint8Array): void {
    const memory = this.system.kernel.memory;
    this.#pieces(this.#boOf("gpu_bo_write", buf), offset, bytes.length, (phys, at, n) => {
      memory.write(unsafePhysAddr(phys), bytes.subarray(at, at + n));
    });
  }

  /** CPU read through the buffer's current backing. */
  cpuRead(buf: DmaBuf, offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const memory = this.system.kernel.memory;
    this.#pieces(this.#boOf("gpu_bo_read", buf), offset, len, (phys, at, n) => {
      memory.readInto(unsafePhysAddr(phys), out.subarray(at, at + n));
    });
    return out;
  }

  /** Frees the old blocks of buffers whose importers have all unmapped since their migration. */
  reap(): void {
    for (const bo of this.#lru) this.#reapBo(bo);
  }

  // -------------------------------------------------------------------------------------------------

  #boOf(fn: string, buf: DmaBuf): GpuBo {
    if (!(buf instanceof DmaBuf) || !this.#lru.some((b) => b.buf === buf)) throw new DmaBufInputError(fn, "buf", buf, "a live buffer of this GPU");
    return buf.priv as GpuBo;
  }

  #touch(bo: GpuBo): void {
    const i = this.#lru.indexOf(bo);
    if (i >= 0 && i !== this.#lru.length - 1) {
      this.#lru.splice(i, 1);
      this.#lru.push(bo);
    }
  }

  #takeVramBlock(): number {
    for (let i = 0; i < this.nBlocks; i++) {
      if (this.#used[i] === 0) {
        this.#used[i] = 1;
        return this.provider.phys + i * this.blockBytes;
      }
    }
    return -1;
  }

  #freeBlock(phys: number, vram: boolean): void {
    if (vram) this.#used[(phys - this.provider.phys) / this.blockBytes] = 0;
    else this.system.kernel.memory.allocator.freePages(unsafePhysAddr(phys), this.blockBytes / PAGE_SIZE);
  }

  #reapBo(bo: GpuBo): void {
    if (bo.ghosts.length === 0 || bo.buf === undefined) return;
    for (const a of bo.buf.attachments) for (const r of a[kRecords].values()) if (r.invalidated !== undefined) return;
    for (const g of bo.ghosts) this.#freeBlock(g.phys, g.vram);
    bo.ghosts = [];
  }

  /** Evicts least recently used unpinned buffers (not `self`) to RAM until `need` VRAM blocks are free. */
  #makeRoom(need: number, self: GpuBo): void {
    this.reap();
    for (const victim of this.#lru.slice()) {
      if (this.vramFreeBlocks >= need) return;
      if (victim === self || victim.pinned > 0 || victim.buf === undefined) continue;
      if (!victim.inVram.includes(1)) continue;
      // Eviction takes the victim's lock (a trylock in TTM): a victim whose lock is held is skipped.
      const resv = victim.buf.resv;
      if (resv.isLocked) continue;
      resv.lock();
      try {
        this.#move(victim, "ram", undefined, "evict");
      } finally {
        resv.unlock();
      }
      this.reap();
    }
  }

  /** The move itself; the buffer's lock is held. */
  #move(bo: GpuBo, to: GpuPlacement, blocks: readonly number[] | undefined, reason = "migrate"): number {
    const buf = bo.buf;
    if (buf === undefined) return -DmaBufErrno.ENODEV;
    if (bo.pinned > 0) return -DmaBufErrno.EBUSY;
    const want = to === "vram" ? 1 : 0;
    const sel: number[] = [];
    for (let i = 0; i < bo.nBlocks; i++) if (bo.inVram[i] !== want && (blocks === undefined || blocks.includes(i))) sel.push(i);
    if (sel.length === 0) return 0;
    if (to === "vram") {
      this.#makeRoom(sel.length, bo);
      if (this.vramFreeBlocks < sel.length) return -DmaBufErrno.ENOMEM;
    }
    // TTM calls the importers' move_notify before the move, and the copy job waits for every fence in
    // the reservation, the ones importers add for in-flight DMA among them (amdgpu_bo_move_notify, then
    // amdgpu_copy_buffer syncing to the resv). So importers are invalidated first: DMA still in flight to
    // the old blocks finishes before the copy reads them, and no device write is lost.
    dmaBufInvalidateMappings(buf, reason);
    const memory = this.system.kernel.memory;
    const bb = this.blockBytes;
    const dest = new Float64Array(sel.length);
    sel.forEach((b, k) => {
      const d = to === "vram" ? this.#takeVramBlock() : memory.allocator.allocPages(bb / PAGE_SIZE);
      dest[k] = d;
      // The copy engine's copy, done at once in the model; the KERNEL fence says when it ends.
      memory.copy(unsafePhysAddr(d), unsafePhysAddr(bo.phys[b] ?? 0), bb);
    });
    const bytes = sel.length * bb;
    const clock = this.system.trace.clock;
    const start = Math.max(clock.now, this.#engineBusyUntil);
    this.#engineBusyUntil = start + bytes / this.copyBytesPerNs;
    buf.resv.addFence(new DmaFence(`gpu:${this.bdf}:copy`, ++this.#seqno, this.#engineBusyUntil), DmaResvUsage.KERNEL);
    sel.forEach((b, k) => {
      bo.ghosts.push({ phys: bo.phys[b] ?? 0, vram: bo.inVram[b] === 1 });
      bo.phys[b] = dest[k] ?? 0;
      bo.inVram[b] = want;
    });
    const counters = this.system.trace.counters;
    counters.add(DmaBufCounter.DmaBufMigrations);
    counters.add(DmaBufCounter.DmaBufMigratedBytes, bytes);
    counters.add(DmaBufCounter.DmaBufCopyNs, bytes / this.copyBytesPerNs);
    const trace = this.system.trace;
    if (trace.events.active) {
      let inVram = 0;
      for (let i = 0; i < bo.nBlocks; i++) inVram += bo.inVram[i] ?? 0;
      emitDmaBuf(trace, { type: "dmabuf.move", t: trace.clock.now, buf: buf.inode, exporter: buf.expName, to, blocks: sel.length, bytes, inVram, totalBlocks: bo.nBlocks });
    }
    this.#touch(bo);
    this.#reapBo(bo);
    return sel.length;
  }

  /** An importer that cannot reach VRAM (no peer2peer, or no P2P route) gets the buffer in RAM. */
  #placeFor(bo: GpuBo, a: DmaBufAttachment): number {
    this.#touch(bo);
    if (!bo.inVram.includes(1)) return 0;
    const type = a.peer2peer ? this.system.kernel.platform.pciP2pdmaMapType(this.provider, a.dev.bdf) : PciP2pdmaMapType.NOT_SUPPORTED;
    if (type === PciP2pdmaMapType.BUS_ADDR || type === PciP2pdmaMapType.THRU_HOST_BRIDGE) return 0;
    const moved = this.#move(bo, "ram", undefined, "place");
    return moved < 0 ? moved : 0;
  }

  #pin(bo: GpuBo, a: DmaBufAttachment): number {
    const err = this.#placeFor(bo, a);
    if (err < 0) return err;
    bo.pinned++;
    return 0;
  }

  #release(bo: GpuBo): void {
    for (let i = 0; i < bo.nBlocks; i++) this.#freeBlock(bo.phys[i] ?? 0, bo.inVram[i] === 1);
    for (const g of bo.ghosts) this.#freeBlock(g.phys, g.vram);
    bo.ghosts = [];
    const i = this.#lru.indexOf(bo);
    if (i >= 0) this.#lru.splice(i, 1);
    bo.buf = undefined;
  }

  /** The compact list: physically contiguous blocks of one kind merged into one range. */
  #list(bo: GpuBo): DmaBufPhysList {
    const bb = this.blockBytes;
    let n = 0;
    for (let i = 0; i < bo.nBlocks; i++) {
      if (i === 0 || bo.inVram[i] !== bo.inVram[i - 1] || bo.phys[i] !== (bo.phys[i - 1] ?? 0) + bb) n++;
    }
    const list = dmaBufPhysListAlloc(n, this.provider);
    let r = -1;
    let start = 0;
    let len = 0;
    for (let i = 0; i <= bo.nBlocks; i++) {
      const p = bo.phys[i] ?? 0;
      const cont = i > 0 && i < bo.nBlocks && bo.inVram[i] === bo.inVram[i - 1] && p === (bo.phys[i - 1] ?? 0) + bb;
      if (!cont) {
        if (r >= 0) dmaBufPhysListSet(list, r, unsafePhysAddr(start), len, bo.inVram[i - 1] === 1);
        if (i === bo.nBlocks) break;
        r++;
        start = p;
        len = 0;
      }
      len += bb;
    }
    return list;
  }

  #pieces(bo: GpuBo, offset: number, len: number, fn: (phys: number, at: number, n: number) => void): void {
    const bb = this.blockBytes;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(len) || offset + len > bo.nBlocks * bb) {
      throw new DmaBufInputError("gpu_bo_access", "offset", offset, `a range inside the buffer (${bo.nBlocks * bb} bytes)`);
    }
    for (let done = 0; done < len; ) {
      const pos = offset + done;
      const b = Math.floor(pos / bb);
      const n = Math.min(bb - (pos - b * bb), len - done);
      fn((bo.phys[b] ?? 0) + (pos - b * bb), done, n);
      done += n;
    }
  }
}
