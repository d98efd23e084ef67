import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GiB, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import type { Endpoint } from "@dmasim/pcie-p2p";
import {
  DmaDirection,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaMappingError,
  dmaMapPhys,
  dmaUnmapPhys,
  unsafeDmaAddr,
} from "./index.js";
import type { DmaDevice, IommuMode } from "./index.js";
import { allocBuffer, describeDifference, makeKernel, pattern, TRUSTED_BDF, tryDmaRead, UNTRUSTED_BDF } from "./test-fixtures.js";
import type { Fixture, TestBuffer } from "./test-fixtures.js";
import { dmaAddr } from "./constants.js";

// Random sequences of two-step (try_alloc/link/sync/unlink/destroy/free) and classic (dma_map_phys /
// dma_unmap_phys) calls over random buffers, devices and IOMMU modes, run against the whole stack with
// dma-debug in "throw" mode, so any misuse report or WARN fails the run. After every step the live
// mappings are checked against what the device really sees.

const G = 4096;
const FQ_TIMEOUT_NS = 10_000_000;
const NONCOHERENT_BDF = "0000:03:00.0";

// ---- generated scenario ------------------------------------------------------------------------

type Dir = typeof DmaDirection.BIDIRECTIONAL | typeof DmaDirection.TO_DEVICE;

interface Setup {
  readonly mode: Exclude<IommuMode, "passthrough">;
  /** The untrusted device's DMA does not snoop the CPU cache. */
  readonly untrustedNoncoherent: boolean;
  /** The untrusted device keeps 4 KiB offsets in bounce buffers (NVMe); without it an unaligned head fails to link. */
  readonly untrustedMinAlign: boolean;
  /** CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC: the non-coherent device bounces buffers that are not whole cache lines. */
  readonly kmallocBounce: boolean;
}

type Op =
  | { readonly t: "map2"; readonly dev: number; readonly headOffset: number; readonly headGranules: number; readonly middle: readonly number[]; readonly tail: number; readonly dir: Dir }
  | { readonly t: "map1"; readonly dev: number; readonly offset: number; readonly len: number; readonly dir: Dir }
  | { readonly t: "unlink" | "relink"; readonly pick: number; readonly seg: number }
  | { readonly t: "write" | "read" | "destroy"; readonly pick: number }
  | { readonly t: "advance" }
  | { readonly t: "cpu"; readonly cpu: number };

const dirArb = fc.constantFrom<Dir>(DmaDirection.BIDIRECTIONAL, DmaDirection.TO_DEVICE);
const devArb = fc.integer({ min: 0, max: 2 });
const offsetArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: G - 1 }));
const pickArb = fc.nat({ max: 15 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant("map2" as const), dev: devArb, headOffset: offsetArb, headGranules: fc.integer({ min: 1, max: 2 }), middle: fc.array(fc.integer({ min: 1, max: 2 }), { maxLength: 2 }), tail: fc.integer({ min: 0, max: 2 * G }), dir: dirArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("map1" as const), dev: devArb, offset: offsetArb, len: fc.integer({ min: 1, max: 3 * G }), dir: dirArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constantFrom("unlink" as const, "relink" as const), pick: pickArb, seg: fc.nat({ max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constantFrom("write" as const, "read" as const, "destroy" as const), pick: pickArb }) },
  { weight: 1, arbitrary: fc.constant({ t: "advance" as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("cpu" as const), cpu: fc.integer({ min: 0, max: 1 }) }) },
);

const setupArb: fc.Arbitrary<Setup> = fc.record({
  mode: fc.constantFrom("strict" as const, "lazy" as const, "off" as const),
  untrustedNoncoherent: fc.boolean(),
  untrustedMinAlign: fc.boolean(),
  kmallocBounce: fc.boolean(),
});

// ---- the model of what is live ------------------------------------------------------------------

interface Segment {
  /** Offset inside the IOVA state (two-step) or 0 (classic). */
  readonly off: number;
  readonly buf: TestBuffer;
  /** What memory at buf.phys must hold once the mapping is torn down (the device may have written it). */
  expected: Uint8Array;
  linked: boolean;
}

interface Mapping {
  readonly id: number;
  readonly dev: DmaDevice;
  readonly dir: Dir;
  readonly segs: Segment[];
  /** Two-step state, or undefined for a dma_map_phys mapping at `addr`. */
  readonly state: DmaIovaState | undefined;
  readonly addr: number;
  /** [first, end) IOVA granule numbers the mapping uses. */
  readonly granules: readonly [number, number];
}

function mappedBytes(m: Mapping): number {
  const last = m.segs.at(-1);
  return last === undefined ? 0 : last.off + last.buf.len;
}

class Sim {
  readonly fx: Fixture;
  readonly devs: readonly DmaDevice[];
  readonly live: Mapping[] = [];
  /** Every IOVA granule range a torn-down mapping used: none may translate at the end. */
  readonly former: { dev: DmaDevice; first: number; end: number }[] = [];
  /** Lazy-mode teardowns whose stale window must close by the next flush timeout. */
  readonly lazyPending: { dev: DmaDevice; first: number; end: number }[] = [];
  /** The IOVA ranges each domain holds before any mapping: the reservations (PCI windows) only. */
  readonly baseline = new Map<DmaDevice, unknown>();
  #nextId = 1;
  #seed = 1;

  constructor(readonly setup: Setup) {
    this.fx = makeKernel({
      ramBytes: 1 * GiB,
      iommuMode: setup.mode,
      // Two CPUs: per-CPU IOVA caches, flush-queue rings and swiotlb areas all come into play.
      cpus: 2,
      swiotlb: { bytes: 2 * 1024 * 1024 },
      kmallocBounce: setup.kmallocBounce,
      endpoints: [{ bdf: NONCOHERENT_BDF }],
      devices: {
        [NONCOHERENT_BDF]: { coherent: false },
        [UNTRUSTED_BDF]: { coherent: !setup.untrustedNoncoherent, minAlignMask: setup.untrustedMinAlign ? G - 1 : 0 },
      },
    });
    this.devs = [this.fx.kernel.device(TRUSTED_BDF), this.fx.kernel.device(NONCOHERENT_BDF), this.fx.untrusted];
    for (const dev of this.devs) if (dev.cookie !== undefined) this.baseline.set(dev, dev.cookie.iovad.ranges());
  }

  ep(dev: DmaDevice): Endpoint {
    return this.fx.endpoint(dev);
  }

  /** Strict invalidation: the mode says so, or the device is untrusted. Only meaningful with iommu-dma. */
  strict(dev: DmaDevice): boolean {
    return dev.ops === "iommu" && dev.strict;
  }

  buffer(len: number, offset: number): TestBuffer {
    return allocBuffer(this.fx.platform, len, { offset, seed: this.#seed++ });
  }

  run(op: Op): void {
    switch (op.t) {
      case "map2":
        this.map2(op);
        break;
      case "map1":
        this.map1(this.devs[op.dev]!, this.buffer(op.len, op.offset), op.dir);
        break;
      case "unlink":
      case "relink":
        this.unlinkOrRelink(op.t, op.pick, op.seg);
        break;
      case "write":
        this.write(op.pick);
        break;
      case "read": {
        const m = this.pick(op.pick);
        if (m !== undefined) this.checkReads(m);
        break;
      }
      case "destroy": {
        const m = this.pick(op.pick);
        if (m !== undefined) this.teardown(m);
        break;
      }
      case "advance":
        this.advance();
        break;
      case "cpu":
        this.fx.kernel.setCpu(op.cpu);
        break;
    }
  }

  pick(n: number): Mapping | undefined {
    return this.live.length === 0 ? undefined : this.live[n % this.live.length];
  }

  map2(op: Extract<Op, { t: "map2" }>): void {
    const dev = this.devs[op.dev]!;
    // Every range but the first starts on a granule; every range but the last is whole granules.
    const lens: number[] = [];
    const alone = op.middle.length === 0 && op.tail === 0;
    // A range on its own may also end inside a granule: make it stop one byte short when it starts inside one.
    const shortBy = alone && op.headOffset > 0 && op.headGranules > 1 ? 1 : 0;
    lens.push(op.headGranules * G - op.headOffset - shortBy);
    for (const m of op.middle) lens.push(m * G);
    if (op.tail > 0) lens.push(op.tail);
    const setup = this.setup;
    const bufs = lens.map((len, i) => this.buffer(len, i === 0 ? op.headOffset : 0));
    const total = lens.reduce((a, b) => a + b, 0);
    const state = new DmaIovaState();
    if (!dmaIovaTryAlloc(dev, state, unsafePhysAddr(bufs[0]!.phys), total)) {
      // What consumers do without an IOVA: one dma_map_phys per range.
      expect(dev.ops).toBe("direct");
      for (const b of bufs) this.map1(dev, b, op.dir);
      return;
    }
    const segs: Segment[] = [];
    let off = 0;
    for (const buf of bufs) {
      const ret = dmaIovaLink(dev, state, unsafePhysAddr(buf.phys), off, buf.len, op.dir, 0);
      if (ret !== 0) {
        // Only a bounced unaligned head on a device without min_align_mask may fail (see two-step.ts).
        const bounces = dev.untrusted || (setup.kmallocBounce && !dev.coherent);
        expect({ ret, off, bounces, minAlign: dev.minAlignMask, headOffset: buf.phys % G > 0 }).toEqual({ ret: -22, off: 0, bounces: true, minAlign: 0, headOffset: true });
        dmaIovaFree(dev, state);
        return;
      }
      segs.push({ off, buf, expected: buf.bytes.slice(), linked: true });
      off += buf.len;
    }
    expect(dmaIovaSync(dev, state, 0, total)).toBe(0);
    const pad = state.addr % G;
    const first = (state.addr - pad) / G;
    this.add({ id: this.#nextId++, dev, dir: op.dir, segs, state, addr: state.addr, granules: [first, first + Math.ceil((total + pad) / G)] });
  }

  map1(dev: DmaDevice, buf: TestBuffer, dir: Dir): void {
    const addr = dmaMapPhys(dev, physAddr(buf.phys), buf.len, dir, 0);
    expect(dmaMappingError(dev, addr)).toBe(0);
    const first = Math.floor(addr / G);
    const seg: Segment = { off: 0, buf, expected: buf.bytes.slice(), linked: true };
    this.add({ id: this.#nextId++, dev, dir, segs: [seg], state: undefined, addr, granules: [first, Math.ceil((addr + buf.len) / G)] });
  }

  /**
   * Property 1: no two live mappings of a device share an IOVA granule. Without iommu-dma the addresses
   * are physical (swiotlb slots are 2 KiB, so two bounce buffers may share a page): their bytes must
   * still not overlap.
   */
  add(m: Mapping): void {
    const span = (x: Mapping): [number, number] => (x.dev.ops === "iommu" ? [x.granules[0] * G, x.granules[1] * G] : [x.addr, x.addr + mappedBytes(x)]);
    const [lo, hi] = span(m);
    for (const o of this.live) {
      if (o.dev !== m.dev) continue;
      const [olo, ohi] = span(o);
      const overlap = lo < ohi && olo < hi;
      expect(overlap, `mapping ${m.id} [0x${lo.toString(16)}, 0x${hi.toString(16)}) overlaps mapping ${o.id} [0x${olo.toString(16)}, 0x${ohi.toString(16)}) on ${m.dev.bdf}`).toBe(false);
    }
    this.live.push(m);
    this.checkReads(m);
  }

  /** Property 2: at every synced range the device reads exactly the bytes it should. */
  checkReads(m: Mapping): void {
    for (const s of m.segs) {
      if (!s.linked) continue;
      const seen = this.ep(m.dev).dmaRead(unsafeDmaAddr(m.addr + s.off), s.buf.len);
      expect(describeDifference(seen, s.expected), `device read of mapping ${m.id} at offset ${s.off}`).toBe("equal");
    }
  }

  write(n: number): void {
    const m = this.pick(n);
    if (m?.dir !== DmaDirection.BIDIRECTIONAL) return;
    for (const s of m.segs) {
      if (!s.linked) continue;
      const data = pattern(s.buf.len, this.#seed++);
      this.ep(m.dev).dmaWrite(unsafeDmaAddr(m.addr + s.off), data);
      s.expected = data;
    }
    this.checkReads(m);
  }

  unlinkOrRelink(kind: "unlink" | "relink", n: number, segIndex: number): void {
    const m = this.pick(n);
    if (m?.state === undefined) return;
    const s = m.segs[segIndex % m.segs.length]!;
    if (kind === "unlink" && s.linked) {
      this.ep(m.dev).dmaRead(unsafeDmaAddr(m.addr + s.off), 1); // warm the IOTLB: unlink must invalidate it
      dmaIovaUnlink(m.dev, m.state, s.off, s.buf.len, m.dir, 0);
      s.linked = false;
      this.checkTornDown(m, s);
      // Unlink always invalidates at once, in lazy mode too.
      expect(tryDmaRead(this.ep(m.dev), m.addr + s.off, 1)).toBeInstanceOf(PcieAccessError);
    } else if (kind === "relink" && !s.linked) {
      expect(dmaIovaLink(m.dev, m.state, unsafePhysAddr(s.buf.phys), s.off, s.buf.len, m.dir, 0)).toBe(0);
      expect(dmaIovaSync(m.dev, m.state, s.off, s.buf.len)).toBe(0);
      s.linked = true;
      this.checkReads(m);
    }
  }

  /** After a range is unmapped, memory holds what the device last wrote there (bounce copy-back included). */
  checkTornDown(m: Mapping, s: Segment): void {
    const mem = this.fx.platform.memory.read(physAddr(s.buf.phys), s.buf.len);
    const want = m.dir === DmaDirection.BIDIRECTIONAL ? s.expected : s.buf.bytes;
    expect(describeDifference(mem, want), `memory after tearing down mapping ${m.id} at offset ${s.off}`).toBe("equal");
  }

  teardown(m: Mapping): void {
    this.checkReads(m); // also fills the IOTLB, so a missing invalidation would show as a stale hit
    const linked = m.segs.filter((s) => s.linked);
    if (m.state === undefined) {
      dmaUnmapPhys(m.dev, dmaAddr(m.addr), m.segs[0]!.buf.len, m.dir, 0);
    } else if (linked.length === m.segs.length) {
      const last = m.segs.at(-1)!;
      dmaIovaDestroy(m.dev, m.state, last.off + last.buf.len, m.dir, 0);
    } else {
      for (const s of linked) dmaIovaUnlink(m.dev, m.state, s.off, s.buf.len, m.dir, 0);
      dmaIovaFree(m.dev, m.state);
    }
    for (const s of linked) this.checkTornDown(m, s);
    this.live.splice(this.live.indexOf(m), 1);
    if (m.dev.ops !== "iommu") return;
    const range = { dev: m.dev, first: m.granules[0], end: m.granules[1] };
    this.former.push(range);
    if (this.strict(m.dev) || linked.length < m.segs.length) {
      // Property 4: strict mode (and unlink + free) leave no window: the device faults at once.
      this.expectNothingTranslates(range);
    } else {
      this.lazyPending.push(range);
    }
  }

  /** Property 5: advancing the virtual clock by the flush timeout closes every lazy window. */
  advance(): void {
    this.fx.platform.trace.clock.advance(FQ_TIMEOUT_NS);
    for (const r of this.lazyPending) this.expectNothingTranslates(r);
    this.lazyPending.length = 0;
  }

  expectNothingTranslates(r: { dev: DmaDevice; first: number; end: number }): void {
    for (const g of new Set([r.first, r.end - 1])) {
      const reused = this.live.some((m) => m.dev === r.dev && g >= m.granules[0] && g < m.granules[1]);
      if (reused) continue;
      const got = tryDmaRead(this.ep(r.dev), g * G, 8);
      expect(got, `IOVA granule 0x${(g * G).toString(16)} of ${r.dev.bdf} still translates`).toBeInstanceOf(PcieAccessError);
    }
  }

  /** Tear everything down, drain the flush queues: no IOVA, PTE or bounce slot may be left (properties 1, 3). */
  finish(): void {
    while (this.live.length > 0) this.teardown(this.live[0]!);
    this.fx.kernel.flushAll();
    this.lazyPending.length = 0;
    for (const r of this.former) this.expectNothingTranslates(r);
    for (const dev of this.devs) {
      if (dev.cookie === undefined) continue;
      dev.cookie.iovad.flushRcaches();
      expect(dev.cookie.iovad.ranges(), `IOVA ranges left on ${dev.bdf}`).toEqual(this.baseline.get(dev));
      expect(dev.domain!.mappedBytes, `bytes still mapped on ${dev.bdf}`).toBe(0);
      expect(dev.cookie.fq?.pendingTotal ?? 0).toBe(0);
    }
    expect(this.fx.kernel.swiotlb!.stats.used).toBe(0);
    expect(this.fx.kernel.debugReports()).toEqual([]);
  }
}

describe("two-step and classic API sequences", () => {
  it("keep IOVAs unique, the device's view exact, and leave nothing mapped (strict, lazy, off)", () => {
    fc.assert(
      fc.property(setupArb, fc.array(opArb, { minLength: 1, maxLength: 24 }), (setup, ops) => {
        const sim = new Sim(setup);
        for (const op of ops) sim.run(op);
        sim.finish();
      }),
      { numRuns: 80 },
    );
  });

  it("lazy mode: every torn-down IOVA faults once the flush timeout has passed", () => {
    fc.assert(
      fc.property(
        fc.record({ mode: fc.constant("lazy" as const), untrustedNoncoherent: fc.boolean(), untrustedMinAlign: fc.boolean(), kmallocBounce: fc.boolean() }),
        fc.array(opArb.filter((op) => op.t !== "advance"), { minLength: 1, maxLength: 16 }),
        (setup, ops) => {
          const sim = new Sim(setup);
          for (const op of ops) sim.run(op);
          while (sim.live.length > 0) sim.teardown(sim.live[0]!);
          expect(sim.lazyPending.length).toBeLessThanOrEqual(sim.former.length);
          sim.advance();
          for (const r of sim.former) sim.expectNothingTranslates(r);
          sim.finish();
        },
      ),
      { numRuns: 50 },
    );
  });
});
