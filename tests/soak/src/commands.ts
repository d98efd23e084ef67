import { BLK_STS_OK, BlkDmaIter, Bio, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap, bvecAt, queueLimits, ReqOp, Request } from "@dmasim/bio";
import { dmaAllocCoherent, DmaDirection, dmaFreeCoherent, DmaIovaState, dmaIovaDestroy, dmaIovaFree, dmaIovaLink, dmaIovaUnlink, dmaIovaSync, dmaIovaTryAlloc, dmaMappingError, dmaMapPhys, dmaSyncSingleForCpu, dmaSyncSingleForDevice, dmaUnmapPhys, type DmaDevice, unsafeDmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { dmaMapSgtable, dmaSyncSgtableForCpu, dmaSyncSgtableForDevice, dmaUnmapSgtable, forEachSgtableDmaSg, sgAllocTable, sgFreeTable, sgSetPhys } from "@dmasim/scatterlist";
import { Xorshift32 } from "@dmasim/trace";
import fc from "fast-check";
import { firstDiff, hex, violated, type Buffer, type Mapping, type Segment, type SoakSystem } from "./system.js";
import type { PhysAddr } from "@dmasim/memory";

/** The soak keeps its expectations in the system itself; the fast-check model only counts commands. */
export interface SoakModel {
  commands: number;
}

type SoakCommand = fc.Command<SoakModel, SoakSystem>;

const DIRS = [DmaDirection.BIDIRECTIONAL, DmaDirection.TO_DEVICE, DmaDirection.FROM_DEVICE] as const;
const DIR_NAMES = ["BIDI", "TO_DEVICE", "FROM_DEVICE"] as const;

function bytes(len: number, seed: number): Uint8Array {
  return new Xorshift32(seed).fill(new Uint8Array(len));
}

/** One buffer per entry, entry i filled from seed + i; all or none: on a failure those already allocated are freed. */
function allocBuffers(sys: SoakSystem, entries: readonly { offset: number; len: number }[], seed: number): Buffer[] | undefined {
  const bufs: Buffer[] = [];
  for (const [i, e] of entries.entries()) {
    const b = sys.allocBuffer(e.offset, e.len, bytes(e.len, seed + i));
    if (b === undefined) {
      for (const x of bufs) sys.freeBuffer(x);
      return undefined;
    }
    bufs.push(b);
  }
  return bufs;
}

/** A mapping attempt failed and was unwound: free its buffers, then the system must be as it was before. */
function abandon(sys: SoakSystem, bufs: readonly Buffer[], before: ReturnType<SoakSystem["fingerprint"]>, what: string): void {
  for (const x of bufs) sys.freeBuffer(x);
  sys.checkUnchanged(before, what);
}

/** A command run against the system, then the invariants that hold after every step. */
abstract class Step implements SoakCommand {
  check(): boolean {
    return true;
  }
  run(m: SoakModel, sys: SoakSystem): void {
    m.commands++;
    this.apply(sys);
    sys.checkAll();
  }
  abstract apply(sys: SoakSystem): void;
  abstract toString(): string;
}

/** dma_map_phys of one buffer. */
class MapPhys extends Step {
  constructor(
    readonly d: number,
    readonly offset: number,
    readonly len: number,
    readonly dir: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const dev = devOf(sys, this.d);
    const dir = DIRS[this.dir] ?? DmaDirection.BIDIRECTIONAL;
    const before = sys.fingerprint();
    const buf = sys.allocBuffer(this.offset, this.len, bytes(this.len, this.seed));
    if (buf === undefined) return;
    const addr = dmaMapPhys(dev, unsafePhysAddr(buf.phys), this.len, dir, 0);
    if (dmaMappingError(dev, addr) !== 0) {
      abandon(sys, [buf], before, "dma_map_phys");
      return;
    }
    sys.count("dma_map_phys ok");
    sys.live.push({ kind: "phys", id: sys.nextId(), dev, dir, bufs: [buf], segments: [{ addr, len: this.len }] });
  }
  toString(): string {
    return `MapPhys(dev${this.d}, +${this.offset}, ${this.len}, ${DIR_NAMES[this.dir] ?? "?"})`;
  }
}

/** The two-step API over several ranges: try_alloc, link each at increasing offsets, sync; destroy on failure. */
class MapIova extends Step {
  constructor(
    readonly d: number,
    readonly pages: readonly number[],
    readonly headOffset: number,
    readonly tailCut: number,
    readonly dir: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const dev = devOf(sys, this.d);
    const dir = DIRS[this.dir] ?? DmaDirection.BIDIRECTIONAL;
    // Only the first range may start inside a granule and only the last may end inside one: what
    // dma_iova_link accepts at increasing offsets of one IOVA.
    const n = this.pages.length;
    const lens = this.pages.map((p, i) => {
      let len = p * PAGE_SIZE;
      if (i === 0) len -= this.headOffset;
      if (i === n - 1) len -= Math.min(this.tailCut, len - 1);
      return len;
    });
    const before = sys.fingerprint();
    const bufs = allocBuffers(sys, lens.map((len, i) => ({ offset: i === 0 ? this.headOffset : 0, len })), this.seed);
    if (bufs === undefined) return;
    const total = lens.reduce((a, b) => a + b, 0);
    const state = new DmaIovaState();
    const first = bufs[0];
    if (first === undefined || !dmaIovaTryAlloc(dev, state, first.phys as PhysAddr, total)) {
      abandon(sys, bufs, before, "dma_iova_try_alloc");
      return;
    }
    let offset = 0;
    let err = 0;
    const ranges: { offset: number; len: number }[] = [];
    for (const [i, b] of bufs.entries()) {
      const len = lens[i] ?? 0;
      const prior = sys.fingerprint();
      err = dmaIovaLink(dev, state, unsafePhysAddr(b.phys), offset, len, dir, 0);
      if (err !== 0) {
        sys.checkUnchanged(prior, `dma_iova_link of range ${i} (${err})`);
        break;
      }
      ranges.push({ offset, len });
      offset += len;
    }
    if (err === 0) err = dmaIovaSync(dev, state, 0, total);
    if (err !== 0) {
      // The driver's unwinding: unlink what was linked and free the IOVA.
      dmaIovaDestroy(dev, state, offset, dir, 0);
      abandon(sys, bufs, before, "a two-step mapping");
      return;
    }
    sys.count("two-step ok");
    sys.live.push({ kind: "iova", id: sys.nextId(), dev, dir, bufs, segments: [{ addr: state.addr, len: total }], state, ranges });
  }
  toString(): string {
    return `MapIova(dev${this.d}, pages [${this.pages.join(",")}], +${this.headOffset}, -${this.tailCut}, ${DIR_NAMES[this.dir] ?? "?"})`;
  }
}

/** dma_map_sgtable of a list of separate buffers, by the two-step or the classic implementation. */
class MapSg extends Step {
  constructor(
    readonly d: number,
    readonly entries: readonly { offset: number; len: number }[],
    readonly impl: "two-step" | "classic",
    readonly dir: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const dev = devOf(sys, this.d);
    const dir = DIRS[this.dir] ?? DmaDirection.BIDIRECTIONAL;
    const before = sys.fingerprint();
    const bufs = allocBuffers(sys, this.entries, this.seed);
    if (bufs === undefined) return;
    const sgt = sgAllocTable(sys.kernel.trace, bufs.length);
    for (const [i, b] of bufs.entries()) sgSetPhys(sgt, i, b.phys as PhysAddr, b.data.length);
    const ret = dmaMapSgtable(dev, sgt, dir, 0, { impl: this.impl });
    if (ret !== 0) {
      sgFreeTable(sgt);
      abandon(sys, bufs, before, `dma_map_sgtable ${this.impl} (${ret})`);
      return;
    }
    const segments: Segment[] = [];
    forEachSgtableDmaSg(sgt, (_i, addr, len) => {
      segments.push({ addr, len });
      return true;
    });
    sys.count(`dma_map_sgtable ${this.impl} ok`);
    sys.live.push({ kind: "sg", id: sys.nextId(), dev, dir, bufs, segments, sgt });
  }
  toString(): string {
    return `MapSg(dev${this.d}, ${this.impl}, [${this.entries.map((e) => `+${e.offset}:${e.len}`).join(" ")}], ${DIR_NAMES[this.dir] ?? "?"})`;
  }
}

/** A block write request mapped with the block layer's DMA iterator (blk_rq_dma_map_iter_*). */
class MapBio extends Step {
  constructor(
    readonly d: number,
    readonly vecs: readonly { sectorOffset: number; sectors: number }[],
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const dev = devOf(sys, this.d);
    const before = sys.fingerprint();
    const bufs = allocBuffers(sys, this.vecs.map((v) => ({ offset: v.sectorOffset * 512, len: v.sectors * 512 })), this.seed);
    if (bufs === undefined) return;
    const bio = new Bio(sys.platform.memory, { op: ReqOp.WRITE, sector: 0, vecs: bufs.map((b) => bvecAt(unsafePhysAddr(b.phys), b.data.length)) });
    const rq = Request.fromBio(queueLimits(), bio);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const segments: Segment[] = [];
    if (blkRqDmaMapIterStart(rq, dev, state, iter)) {
      do segments.push({ addr: iter.addr, len: iter.len });
      while (blkRqDmaMapIterNext(rq, dev, state, iter));
    }
    if (iter.status !== BLK_STS_OK) {
      // NVMe's unwinding after a failed step: undo the segments already mapped.
      const mapped = segments.reduce((a, s) => a + s.len, 0);
      if (!blkRqDmaUnmap(rq, dev, state, mapped, iter.p2pdma.map)) for (const s of segments) dmaUnmapPhys(dev, unsafeDmaAddr(s.addr), s.len, DmaDirection.TO_DEVICE, 0);
      abandon(sys, bufs, before, `a block request (status ${iter.status})`);
      return;
    }
    sys.count("block request ok");
    sys.live.push({ kind: "bio", id: sys.nextId(), dev, dir: DmaDirection.TO_DEVICE, bufs, segments, rq, state, iter });
  }
  toString(): string {
    return `MapBio(dev${this.d}, [${this.vecs.map((v) => `+${v.sectorOffset}s:${v.sectors}s`).join(" ")}])`;
  }
}

/** dma_alloc_coherent, with the CPU filling the buffer. */
class AllocCoherent extends Step {
  constructor(
    readonly d: number,
    readonly size: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const dev = devOf(sys, this.d);
    const before = sys.fingerprint();
    const c = dmaAllocCoherent(dev, this.size);
    if (c === undefined) {
      sys.checkUnchanged(before, "dma_alloc_coherent");
      return;
    }
    const data = bytes(this.size, this.seed);
    sys.kernel.cpuWrite(c.cpuAddr, data);
    const buf: Buffer = { base: c.cpuAddr, pages: 0, phys: c.cpuAddr, data };
    sys.count("dma_alloc_coherent ok");
    sys.live.push({
      kind: "coherent",
      id: sys.nextId(),
      dev,
      dir: DmaDirection.BIDIRECTIONAL,
      bufs: [buf],
      segments: [{ addr: c.dmaHandle, len: this.size }],
      cpuAddr: c.cpuAddr,
      dmaHandle: c.dmaHandle,
      size: this.size,
    });
  }
  toString(): string {
    return `AllocCoherent(dev${this.d}, ${this.size})`;
  }
}

/** Can the CPU and the device exchange data over this mapping after it is made (and how to sync)? */
function syncable(m: Mapping): boolean {
  if (m.kind === "bio") return false;
  // The two-step API has no data sync of its own: only a coherent device without bounce slots shares updates.
  if (m.kind === "iova") return m.dev.coherent && !m.state.useSwiotlb;
  return true;
}

/** The CPU writes new data into a mapping's buffers, then syncs for the device. */
class CpuWrite extends Step {
  constructor(
    readonly index: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const m = pick(sys, this.index);
    if (m === undefined || !syncable(m) || m.dir === DmaDirection.FROM_DEVICE) return;
    for (const [i, b] of m.bufs.entries()) {
      b.data = bytes(b.data.length, this.seed + i);
      sys.kernel.cpuWrite(b.phys as PhysAddr, b.data);
    }
    if (m.kind === "phys") {
      const s = m.segments[0];
      if (s !== undefined) dmaSyncSingleForDevice(m.dev, unsafeDmaAddr(s.addr), s.len, m.dir);
    } else if (m.kind === "sg") {
      dmaSyncSgtableForDevice(m.dev, m.sgt, m.dir);
    }
  }
  toString(): string {
    return `CpuWrite(#${this.index})`;
  }
}

/** The device writes new data through a mapping, the driver syncs for the CPU, and the CPU must read it. */
class DeviceWrite extends Step {
  constructor(
    readonly index: number,
    readonly seed: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const m = pick(sys, this.index);
    if (m === undefined || !syncable(m) || m.dir === DmaDirection.TO_DEVICE) return;
    const total = m.bufs.reduce((a, b) => a + b.data.length, 0);
    const data = bytes(total, this.seed);
    let at = 0;
    for (const s of m.segments) {
      if (!sys.tryWrite(m.dev, s.addr, data.subarray(at, at + s.len))) violated(`mapping #${m.id} (${m.kind}): the device faulted writing ${s.len} bytes at ${hex(s.addr)}`);
      at += s.len;
    }
    if (m.kind === "phys") {
      const s = m.segments[0];
      if (s !== undefined) dmaSyncSingleForCpu(m.dev, unsafeDmaAddr(s.addr), s.len, m.dir);
    } else if (m.kind === "sg") {
      dmaSyncSgtableForCpu(m.dev, m.sgt, m.dir);
    }
    at = 0;
    for (const b of m.bufs) {
      const want = data.slice(at, at + b.data.length);
      const got = sys.kernel.cpuRead(b.phys as PhysAddr, b.data.length);
      const diff = firstDiff(got, want);
      if (diff >= 0) violated(`mapping #${m.id} (${m.kind}, ${m.dev.bdf}): after the device wrote and the driver synced, the CPU reads ${got[diff]} at ${hex(b.phys + diff)}, the device wrote ${want[diff]}`);
      b.data = want;
      at += b.data.length;
    }
  }
  toString(): string {
    return `DeviceWrite(#${this.index})`;
  }
}

/** Tears a mapping down as its driver would, then checks the device lost it (strict) or will (lazy). */
class Unmap extends Step {
  constructor(readonly index: number) {
    super();
  }
  apply(sys: SoakSystem): void {
    const m = pick(sys, this.index);
    if (m === undefined) return;
    unmap(sys, m);
  }
  toString(): string {
    return `Unmap(#${this.index})`;
  }
}

export function unmap(sys: SoakSystem, m: Mapping): void {
  sys.live.splice(sys.live.indexOf(m), 1);
  const dev = m.dev;
  switch (m.kind) {
    case "phys": {
      const s = m.segments[0];
      if (s !== undefined) dmaUnmapPhys(dev, unsafeDmaAddr(s.addr), s.len, m.dir, 0);
      break;
    }
    case "iova":
      dmaIovaDestroy(dev, m.state, m.ranges.reduce((a, r) => a + r.len, 0), m.dir, 0);
      break;
    case "sg":
      dmaUnmapSgtable(dev, m.sgt, m.dir);
      sgFreeTable(m.sgt);
      break;
    case "bio": {
      const mapped = m.segments.reduce((a, s) => a + s.len, 0);
      if (!blkRqDmaUnmap(m.rq, dev, m.state, mapped, m.iter.p2pdma.map)) for (const s of m.segments) dmaUnmapPhys(dev, unsafeDmaAddr(s.addr), s.len, DmaDirection.TO_DEVICE, 0);
      break;
    }
    case "coherent":
      dmaFreeCoherent(dev, m.size, unsafePhysAddr(m.cpuAddr), unsafeDmaAddr(m.dmaHandle));
      break;
  }
  if (m.kind !== "coherent") for (const b of m.bufs) sys.freeBuffer(b);
  for (const s of m.segments) sys.unmapped(dev, s.addr);
}

/**
 * dma_iova_unlink of one range of a live two-step mapping — the device must lose it at once, whatever the
 * mode — then dma_iova_link and dma_iova_sync of it again. If the relink fails, the driver unlinks the
 * other ranges and frees the IOVA.
 */
class RelinkIova extends Step {
  constructor(
    readonly index: number,
    readonly range: number,
  ) {
    super();
  }
  apply(sys: SoakSystem): void {
    const iovas = sys.live.filter((m) => m.kind === "iova");
    if (iovas.length === 0) return;
    const m = iovas[this.index % iovas.length];
    if (m?.kind !== "iova") return;
    const i = this.range % m.ranges.length;
    const r = m.ranges[i];
    const buf = m.bufs[i];
    if (r === undefined || buf === undefined) return;
    const { dev, state, dir } = m;
    dmaIovaUnlink(dev, state, r.offset, r.len, dir, 0);
    if (sys.tryRead(dev, state.addr + r.offset, 1) !== undefined) violated(`mapping #${m.id}: range ${i} still translates right after dma_iova_unlink`);
    const before = sys.fingerprint();
    let err = dmaIovaLink(dev, state, unsafePhysAddr(buf.phys), r.offset, r.len, dir, 0);
    if (err !== 0) sys.checkUnchanged(before, `dma_iova_link (relink, ${err})`);
    else err = dmaIovaSync(dev, state, r.offset, r.len);
    if (err === 0) {
      sys.count("relink ok");
      return;
    }
    sys.live.splice(sys.live.indexOf(m), 1);
    for (const [j, o] of m.ranges.entries()) if (j !== i) dmaIovaUnlink(dev, state, o.offset, o.len, dir, 0);
    dmaIovaFree(dev, state);
    for (const b of m.bufs) sys.freeBuffer(b);
    for (const o of m.ranges) if (sys.tryRead(dev, state.addr + o.offset, 1) !== undefined) violated(`mapping #${m.id}: range at +${o.offset} still translates after unlink`);
  }
  toString(): string {
    return `RelinkIova(#${this.index}, range ${this.range})`;
  }
}

/** Virtual time passes: lazy flush queues time out, IOVA depots trim. */
class Tick extends Step {
  constructor(readonly ns: number) {
    super();
  }
  apply(sys: SoakSystem): void {
    sys.kernel.trace.clock.advance(this.ns);
  }
  toString(): string {
    return `Tick(${this.ns})`;
  }
}

/** The next calls run on another CPU (per-CPU IOVA caches, flush queues, swiotlb areas). */
class SetCpu extends Step {
  constructor(readonly cpu: number) {
    super();
  }
  apply(sys: SoakSystem): void {
    sys.kernel.setCpu(this.cpu % sys.kernel.cpus);
  }
  toString(): string {
    return `SetCpu(${this.cpu})`;
  }
}

function devOf(sys: SoakSystem, d: number): DmaDevice {
  const dev = sys.devs[d % sys.devs.length];
  if (dev === undefined) throw new Error("no device");
  return dev;
}

function pick(sys: SoakSystem, index: number): Mapping | undefined {
  return sys.live.length === 0 ? undefined : sys.live[index % sys.live.length];
}

const dev = fc.integer({ min: 0, max: 1 });
const dir = fc.integer({ min: 0, max: 2 });
const seed = fc.integer({ min: 1, max: 0xffff });
const offset = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: PAGE_SIZE - 1 }));
const index = fc.nat({ max: 1000 });

export const commandArbs: fc.Arbitrary<SoakCommand>[] = [
  fc.tuple(dev, offset, fc.integer({ min: 1, max: 3 * PAGE_SIZE }), dir, seed).map(([d, o, l, r, s]) => new MapPhys(d, o, l, r, s)),
  fc
    .tuple(dev, fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }), offset, fc.nat({ max: PAGE_SIZE - 1 }), dir, seed)
    .map(([d, p, h, t, r, s]) => new MapIova(d, p, h, t, r, s)),
  fc
    .tuple(
      dev,
      fc.array(fc.record({ offset, len: fc.integer({ min: 1, max: 2 * PAGE_SIZE }) }), { minLength: 1, maxLength: 5 }),
      fc.constantFrom<"two-step" | "classic">("two-step", "classic"),
      dir,
      seed,
    )
    .map(([d, e, i, r, s]) => new MapSg(d, e, i, r, s)),
  fc
    .tuple(dev, fc.array(fc.record({ sectorOffset: fc.integer({ min: 0, max: 7 }), sectors: fc.integer({ min: 1, max: 16 }) }), { minLength: 1, maxLength: 4 }), seed)
    .map(([d, v, s]) => new MapBio(d, v, s)),
  fc.tuple(dev, fc.integer({ min: 1, max: 4 }), seed).map(([d, p, s]) => new AllocCoherent(d, p * PAGE_SIZE, s)),
  fc.tuple(index, seed).map(([i, s]) => new CpuWrite(i, s)),
  fc.tuple(index, seed).map(([i, s]) => new DeviceWrite(i, s)),
  index.map((i) => new Unmap(i)),
  index.map((i) => new Unmap(i)),
  fc.tuple(index, fc.nat({ max: 3 })).map(([i, r]) => new RelinkIova(i, r)),
  fc.constantFrom(1_000, 3_000_000, 10_000_001).map((ns) => new Tick(ns)),
  fc.nat({ max: 7 }).map((c) => new SetCpu(c)),
];
