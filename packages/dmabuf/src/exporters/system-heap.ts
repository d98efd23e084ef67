import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { DmaDirection } from "@dmasim/dma";
import type { SgTable } from "@dmasim/scatterlist";
import { DmaBuf, dmaBufExport } from "../dma-buf.js";
import type { DmaBufAttachment, DmaBufOps } from "../dma-buf.js";
import { DmaBufInputError } from "../errors.js";
import { DmaBufPhysList, dmaBufPhysListAlloc, dmaBufPhysListSet } from "../phys-list.js";
import type { DmaBufPhysListDma } from "../phys-list.js";
import type { DmaBufSystem } from "../system.js";
import { freeSgtFromRanges, sgtFromRanges } from "./sg-from-ranges.js";

/** A system-heap buffer: its chunks of RAM (physically contiguous runs). */
interface HeapBuffer {
  readonly chunkPhys: number[];
  readonly chunkLen: number[];
  readonly maps: WeakMap<SgTable, DmaBufPhysListDma>;
}

/**
 * The system heap (drivers/dma-buf/heaps/system_heap.c): buffers of RAM pages, allocated in chunks of
 * at most `chunkBytes` (the heap's high orders), never moved. Importers get an sg_table mapped for their
 * device or the physical-range list.
 */
export class SystemHeap {
  /** The dma-buf subsystem the heap's buffers belong to. */
  readonly system: DmaBufSystem;
  /** Largest chunk of contiguous pages a buffer is built from. */
  readonly chunkBytes: number;

  constructor(system: DmaBufSystem, options: { chunkBytes?: number } = {}) {
    const chunk = options.chunkBytes ?? 2 * 1024 * 1024;
    if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % PAGE_SIZE !== 0) throw new DmaBufInputError("SystemHeap", "options.chunkBytes", chunk, "a positive multiple of the page size");
    this.system = system;
    this.chunkBytes = chunk;
  }

  /** dma_heap_buffer_alloc: a buffer of `size` bytes (rounded up to pages), zeroed. */
  allocate(size: number): DmaBuf {
    if (!Number.isSafeInteger(size) || size <= 0) throw new DmaBufInputError("system_heap_allocate", "size", size, "a byte count > 0");
    const memory = this.system.kernel.memory;
    const total = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
    const hb: HeapBuffer = { chunkPhys: [], chunkLen: [], maps: new WeakMap() };
    for (let done = 0; done < total; ) {
      const len = Math.min(this.chunkBytes, total - done);
      const phys = memory.allocator.allocPages(len / PAGE_SIZE);
      memory.fill(phys, len, 0);
      hb.chunkPhys.push(phys);
      hb.chunkLen.push(len);
      done += len;
    }
    const ops: DmaBufOps = {
      mapDmaBuf: (a: DmaBufAttachment, dir: DmaDirection) => sgtFromRanges(a, this.#list(hb), dir, hb.maps),
      unmapDmaBuf: (_a, sgt) => {
        freeSgtFromRanges(sgt, hb.maps);
      },
      mapPhysList: () => this.#list(hb),
      unmapPhysList: () => undefined,
      release: () => {
        for (let i = 0; i < hb.chunkPhys.length; i++) memory.allocator.freePages(unsafePhysAddr(hb.chunkPhys[i] ?? 0), (hb.chunkLen[i] ?? 0) / PAGE_SIZE);
      },
    };
    const buf = dmaBufExport(this.system, { expName: "system", size: total, ops, priv: hb });
    if (typeof buf === "number") throw new DmaBufInputError("system_heap_allocate", "size", size, "an exportable buffer");
    return buf;
  }

  #list(hb: HeapBuffer): DmaBufPhysList {
    const list = dmaBufPhysListAlloc(hb.chunkPhys.length, undefined);
    for (let i = 0; i < hb.chunkPhys.length; i++) dmaBufPhysListSet(list, i, unsafePhysAddr(hb.chunkPhys[i] ?? 0), hb.chunkLen[i] ?? 0, false);
    return list;
  }

  /** CPU write into the buffer (a vmap'd write), for tests and examples. */
  cpuWrite(buf: DmaBuf, offset: number, bytes: Uint8Array): void {
    forEachPiece(buf, offset, bytes.length, (phys, at, n) => {
      this.system.kernel.memory.write(unsafePhysAddr(phys), bytes.subarray(at, at + n));
    });
  }

  /** CPU read of the buffer. */
  cpuRead(buf: DmaBuf, offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    forEachPiece(buf, offset, len, (phys, at, n) => {
      this.system.kernel.memory.readInto(unsafePhysAddr(phys), out.subarray(at, at + n));
    });
    return out;
  }
}

function forEachPiece(buf: DmaBuf, offset: number, len: number, fn: (phys: number, at: number, n: number) => void): void {
  const hb = buf.priv as HeapBuffer;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + len > buf.size) throw new DmaBufInputError("system_heap_access", "offset", offset, `a range inside the buffer (${buf.size} bytes)`);
  let base = 0;
  let done = 0;
  for (let i = 0; i < hb.chunkPhys.length && done < len; i++) {
    const cl = hb.chunkLen[i] ?? 0;
    const pos = offset + done;
    if (pos < base + cl) {
      const n = Math.min(base + cl - pos, len - done);
      fn((hb.chunkPhys[i] ?? 0) + (pos - base), done, n);
      done += n;
    }
    base += cl;
  }
}
