import { describe, expect, it } from "vitest";
import { Counter } from "./counters.js";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import {
  DMA_BIT_MASK,
  DmaDebugError,
  DmaDirection,
  DmaInputError,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaSetMask,
  Errno,
} from "./index.js";
import type { DebugMode, DmaDebugCheck, DmaDevice, IommuMode } from "./index.js";
import { allocBuffer, firstDifference, makeKernel, tryDmaRead } from "./test-fixtures.js";
import type { Fixture, TestBuffer } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { unsafePhysAddr } from "@dmasim/memory";

// Misuse of the two-step API: each refused call is refused before it changes anything (page table,
// IOTLB, IOVA space, swiotlb, the state), and bad arguments get typed errors, never a TypeError.

const G = 4096;
const BIDI = DmaDirection.BIDIRECTIONAL;

interface Mapped {
  state: DmaIovaState;
  buf: TestBuffer;
}

/** A state over a fresh buffer of `granules` granules, every granule linked and synced. */
function mapped(fx: Fixture, dev: DmaDevice, granules: number, seed: number): Mapped {
  const buf = allocBuffer(fx.platform, granules * G, { seed });
  const state = new DmaIovaState();
  expect(dmaIovaTryAlloc(dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
  expect(dmaIovaLink(dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(0);
  expect(dmaIovaSync(dev, state, 0, buf.len)).toBe(0);
  return { state, buf };
}

/** What the device sees through each granule of a mapping: the bytes, or the fault. */
function deviceView(fx: Fixture, dev: DmaDevice, m: Mapped): (string | number)[] {
  const out: (string | number)[] = [];
  for (let i = 0; i < m.buf.len / G; i++) {
    const got = tryDmaRead(fx.endpoint(dev), m.state.addr + i * G, G);
    out.push(got instanceof PcieAccessError ? got.kind : got instanceof Error ? got.message : firstDifference(got, m.buf.bytes.subarray(i * G, (i + 1) * G)));
  }
  return out;
}

function snapshot(fx: Fixture, dev: DmaDevice): unknown {
  const c = fx.platform.trace.counters;
  return {
    ranges: dev.cookie?.iovad.ranges(),
    counters: [Counter.PteWrites, Counter.PteClears, Counter.IotlbInvalRange, Counter.FlushQueueEntries, Counter.IovaFreeCache, Counter.IovaFreeTree].map((k) => c.get(k)),
  };
}

function expectReport(fn: () => unknown, check: DmaDebugCheck): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DmaDebugError);
  expect((caught as DmaDebugError).report.check).toBe(check);
}

function expectInputError(fn: () => unknown, argument: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DmaInputError);
  expect((caught as DmaInputError).argument).toBe(argument);
  expect((caught as DmaInputError).code).toBe("EINVAL");
}

/** Two states whose IOVA ranges touch: `low` ends where `high` starts (allocation is top-down). */
function neighbours(debug: DebugMode, mode: IommuMode = "strict") {
  const fx = makeKernel({ debug, iommuMode: mode });
  const dev = fx.dev;
  const high = mapped(fx, dev, 2, 1);
  const low = mapped(fx, dev, 2, 2);
  expect(low.state.addr + low.state.size).toBe(high.state.addr);
  // The device has used both: the IOTLB holds their translations.
  expect(deviceView(fx, dev, high)).toEqual([-1, -1]);
  expect(deviceView(fx, dev, low)).toEqual([-1, -1]);
  return { fx, dev, high, low };
}

describe("a destroy or unlink past the state's allocation (throw mode)", () => {
  it.each(["strict", "lazy"] as const)("%s: destroy is refused before any PTE is cleared; the neighbour still maps", (mode) => {
    const { fx, dev, high, low } = neighbours("throw", mode);
    const before = snapshot(fx, dev);
    expectReport(() => { dmaIovaDestroy(dev, low.state, low.state.size + G, BIDI, 0); }, "iova-unlink-outside-allocation");
    expect(snapshot(fx, dev)).toEqual(before);
    expect(deviceView(fx, dev, high)).toEqual([-1, -1]);
    expect(deviceView(fx, dev, low)).toEqual([-1, -1]);
    // The refused destroy left the state live: the right one works.
    dmaIovaDestroy(dev, low.state, low.state.size, BIDI, 0);
    expect(deviceView(fx, dev, high)).toEqual([-1, -1]);
  });

  it("unlink is refused the same way", () => {
    const { fx, dev, high, low } = neighbours("throw");
    const before = snapshot(fx, dev);
    expectReport(() => { dmaIovaUnlink(dev, low.state, G, 2 * G, BIDI, 0); }, "iova-unlink-outside-allocation");
    expect(snapshot(fx, dev)).toEqual(before);
    expect(deviceView(fx, dev, high)).toEqual([-1, -1]);
    expect(deviceView(fx, dev, low)).toEqual([-1, -1]);
  });

  it("sync is refused the same way: the neighbour's PTEs are not synced on its behalf", () => {
    const { fx, dev, low } = neighbours("throw");
    const syncs = fx.platform.trace.counters.get(Counter.IotlbSyncMap);
    expectReport(() => dmaIovaSync(dev, low.state, G, 2 * G), "iova-sync-outside-allocation");
    expect(fx.platform.trace.counters.get(Counter.IotlbSyncMap)).toBe(syncs);
  });

  it("collect: recorded and skipped", () => {
    const { fx, dev, high, low } = neighbours("collect");
    const before = snapshot(fx, dev);
    dmaIovaDestroy(dev, low.state, low.state.size + G, BIDI, 0);
    expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["iova-unlink-outside-allocation"]);
    expect(snapshot(fx, dev)).toEqual(before);
    expect(deviceView(fx, dev, high)).toEqual([-1, -1]);
  });

  it("debug off: the kernel's behaviour (the neighbour is unmapped), and strict mode leaves no stale translation", () => {
    const { fx, dev, high, low } = neighbours("off");
    dmaIovaDestroy(dev, low.state, low.state.size + G, BIDI, 0);
    expect(deviceView(fx, dev, high)).toEqual(["iommu-fault", -1]);
  });
});

describe("strict mode never keeps a translation the page table dropped", () => {
  it("a WARN thrown by a short unmap comes after the IOTLB invalidation", () => {
    // A state allocated while dma-debug was off has no track, so nothing refuses its bad destroy; the
    // unmap then finds fewer bytes than asked and WARNs, which throws once the mode is "throw".
    const fx = makeKernel({ debug: "off" });
    const dev = fx.dev;
    const m = mapped(fx, dev, 2, 3);
    expect(deviceView(fx, dev, m)).toEqual([-1, -1]);
    fx.kernel.debug.mode = "throw";
    expectReport(() => { dmaIovaDestroy(dev, m.state, m.state.size + 64 * G, BIDI, 0); }, "api-warn");
    expect(deviceView(fx, dev, m)).toEqual(["iommu-fault", "iommu-fault"]);
  });
});

describe("dma_iova_link on a state that holds no IOVA", () => {
  it("throw: a state never allocated is reported, even as the kernel's first two-step call, and nothing is mapped", () => {
    const fx = makeKernel({ debug: "throw" });
    const buf = allocBuffer(fx.platform, G);
    const state = new DmaIovaState();
    const before = snapshot(fx, fx.dev);
    expectReport(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, G, BIDI, 0), "iova-state-not-allocated");
    expect(fx.dev.domain?.iovaToPhys(iova(0))).toBeUndefined();
    expect(snapshot(fx, fx.dev)).toEqual(before);
  });

  it("throw: a state whose dma_iova_try_alloc failed is reported the same way", () => {
    const fx = makeKernel({ debug: "throw" });
    expect(dmaSetMask(fx.dev, DMA_BIT_MASK(32))).toBe(0);
    const buf = allocBuffer(fx.platform, G);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), 8 * 2 ** 30)).toBe(false);
    expectReport(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, G, BIDI, 0), "iova-state-not-allocated");
    expect(fx.dev.domain?.iovaToPhys(iova(0))).toBeUndefined();
  });

  it("collect: link returns -EINVAL, sync and unlink are skipped; each is recorded", () => {
    const fx = makeKernel({ debug: "collect" });
    const buf = allocBuffer(fx.platform, G);
    const state = new DmaIovaState();
    const before = snapshot(fx, fx.dev);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, G, BIDI, 0)).toBe(-Errno.EINVAL);
    expect(dmaIovaSync(fx.dev, state, 0, G)).toBe(0);
    dmaIovaUnlink(fx.dev, state, 0, G, BIDI, 0);
    expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["iova-state-not-allocated", "iova-state-not-allocated", "iova-state-not-allocated"]);
    expect(snapshot(fx, fx.dev)).toEqual(before);
    expect(fx.platform.trace.counters.get(Counter.IotlbSyncMap)).toBe(0);
  });

  it("debug off: linked at IOVA 0 + offset as the kernel would (nothing checks it)", () => {
    const fx = makeKernel({ debug: "off" });
    const buf = allocBuffer(fx.platform, G);
    expect(dmaIovaLink(fx.dev, new DmaIovaState(), unsafePhysAddr(buf.phys), G, G, BIDI, 0)).toBe(0);
    expect(fx.dev.domain?.iovaToPhys(iova(G))).toBe(buf.phys);
  });
});

describe("a state of another device", () => {
  it.each(["link", "sync", "unlink", "destroy", "free"] as const)("throw: %s is reported and changes nothing", (call) => {
    const fx = makeKernel({ debug: "throw" });
    const m = mapped(fx, fx.dev, 2, 4);
    const other = fx.untrusted;
    const before = [snapshot(fx, fx.dev), snapshot(fx, other)];
    const calls = {
      link: () => dmaIovaLink(other, m.state, unsafePhysAddr(m.buf.phys), 0, G, BIDI, 0),
      sync: () => dmaIovaSync(other, m.state, 0, G),
      unlink: () => { dmaIovaUnlink(other, m.state, 0, G, BIDI, 0); },
      destroy: () => { dmaIovaDestroy(other, m.state, m.state.size, BIDI, 0); },
      free: () => { dmaIovaFree(other, m.state); },
    };
    expectReport(calls[call], "iova-state-foreign-device");
    expect([snapshot(fx, fx.dev), snapshot(fx, other)]).toEqual(before);
    expect(deviceView(fx, fx.dev, m)).toEqual([-1, -1]);
  });
});

describe("bad dev and state arguments get typed errors", () => {
  // With dma-debug on, as here, every link takes the checked path. With it off, a one-granule link of a
  // coherent device takes the fast path, which reads only what the kernel's link reads (dev's fields,
  // state.addr): a missing dev or state still reaches the checked path (see the last test), an object
  // made to look like a device or a state by hand may not.
  const fx = makeKernel({ debug: "throw" });
  const buf = allocBuffer(fx.platform, G);
  const good = new DmaIovaState();
  expect(dmaIovaTryAlloc(fx.dev, good, unsafePhysAddr(buf.phys), G)).toBe(true);
  const calls: [string, (dev: DmaDevice, state: DmaIovaState) => unknown][] = [
    ["dma_iova_try_alloc", (d, s) => dmaIovaTryAlloc(d, s, unsafePhysAddr(buf.phys), G)],
    ["dma_iova_link", (d, s) => dmaIovaLink(d, s, unsafePhysAddr(buf.phys), 0, G, BIDI, 0)],
    ["dma_iova_sync", (d, s) => dmaIovaSync(d, s, 0, G)],
    ["dma_iova_unlink", (d, s) => { dmaIovaUnlink(d, s, 0, G, BIDI, 0); }],
    ["dma_iova_destroy", (d, s) => { dmaIovaDestroy(d, s, G, BIDI, 0); }],
    ["dma_iova_free", (d, s) => { dmaIovaFree(d, s); }],
  ];
  const badDevs: [string, unknown][] = [
    ["undefined", undefined],
    ["null", null],
    ["a plain object", { bound: true, domain: fx.dev.domain, granule: G, coherent: true, kernel: fx.kernel }],
    ["a number", 1],
    ["a string", "0000:01:00.0"],
    ["an unbound device", (() => {
      const other = makeKernel();
      other.kernel.unbind(other.dev);
      return other.dev;
    })()],
  ];
  const bad = (mutate: (s: DmaIovaState) => void): DmaIovaState => {
    const s = new DmaIovaState();
    s.addr = good.addr;
    s.size = good.size;
    mutate(s);
    return s;
  };
  const badStates: [string, unknown][] = [
    ["undefined", undefined],
    ["null", null],
    ["a number", 4096],
    ["an object without the fields", { iova: good.addr }],
    ["a NaN addr", bad((s) => { s.addr = NaN as never; })],
    ["a string addr", bad((s) => { s.addr = "0x1000" as never; })],
    ["a negative size", bad((s) => { s.size = -1; })],
    ["a fractional size", bad((s) => { s.size = 0.5; })],
    ["a non-boolean useSwiotlb", bad((s) => { s.useSwiotlb = 1 as never; })],
  ];

  for (const [fn, call] of calls) {
    it.each(badDevs)(`${fn}: dev = %s`, (_what, dev) => {
      expectInputError(() => call(dev as DmaDevice, good), "dev");
    });
    it.each(badStates)(`${fn}: state = %s`, (_what, state) => {
      expectInputError(() => call(fx.dev, state as DmaIovaState), "state");
    });
  }

  it("dma_iova_sync and dma_iova_destroy: offsets, sizes and lengths that are not byte counts are named, the state kept", () => {
    const s = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, s, unsafePhysAddr(buf.phys), G)).toBe(true);
    const before = [s.addr, s.size, s.useSwiotlb];
    for (const v of [-1, 0.5, NaN, 2 ** 53, 4096n, "0"]) {
      expectInputError(() => dmaIovaSync(fx.dev, s, v as number, G), "offset");
      expectInputError(() => dmaIovaSync(fx.dev, s, 0, v as number), "size");
      expectInputError(() => { dmaIovaDestroy(fx.dev, s, v as number, BIDI, 0); }, "mappedLen");
    }
    expectInputError(() => { dmaIovaDestroy(fx.dev, s, G, 7 as DmaDirection, 0); }, "dir");
    expectInputError(() => { dmaIovaDestroy(fx.dev, s, G, BIDI, 1 << 30); }, "attrs");
    expect([s.addr, s.size, s.useSwiotlb]).toEqual(before);
    // The refused calls left the allocation to a well-formed destroy, which frees it.
    const destroys = fx.kernel.trace.counters.get(Counter.DmaIovaDestroys);
    dmaIovaDestroy(fx.dev, s, 0, BIDI, 0);
    expect(fx.kernel.trace.counters.get(Counter.DmaIovaDestroys)).toBe(destroys + 1);
  });

  it("dma_iova_try_alloc: a frozen state", () => {
    expectInputError(() => dmaIovaTryAlloc(fx.dev, Object.freeze(new DmaIovaState()), unsafePhysAddr(buf.phys), G), "state");
  });

  it("debug off: a missing dev or state reaches the checked path's typed error on the fast path's case too", () => {
    const off = makeKernel({ debug: "off" });
    const page = allocBuffer(off.platform, G);
    const s = new DmaIovaState();
    expect(dmaIovaTryAlloc(off.dev, s, unsafePhysAddr(page.phys), G)).toBe(true);
    for (const dev of [undefined, null, 1]) expectInputError(() => dmaIovaLink(dev as unknown as DmaDevice, s, unsafePhysAddr(page.phys), 0, G, BIDI, 0), "dev");
    for (const state of [undefined, null, 1, {}]) expectInputError(() => dmaIovaLink(off.dev, state as DmaIovaState, unsafePhysAddr(page.phys), 0, G, BIDI, 0), "state");
    expect(off.dev.domain?.iovaToPhys(iova(s.addr))).toBeUndefined();
  });

  it("debug off: BigInt, string and NaN arguments of a link reach the typed error, never a TypeError", () => {
    const off = makeKernel({ debug: "off" });
    const page = allocBuffer(off.platform, G);
    const s = new DmaIovaState();
    expect(dmaIovaTryAlloc(off.dev, s, unsafePhysAddr(page.phys), G)).toBe(true);
    const args = { phys: page.phys, offset: 0, size: G, dir: BIDI as number, attrs: 0 };
    const cases: [keyof typeof args, unknown][] = [
      ["phys", BigInt(page.phys)], ["offset", 0n], ["size", 4096n], ["dir", 1n], ["attrs", 0n],
      ["phys", String(page.phys)], ["offset", "0"], ["dir", "1"], ["attrs", "0"], ["offset", NaN], ["attrs", 0.5],
    ];
    for (const [name, value] of cases) {
      const a: typeof args = { ...args, [name]: value };
      expectInputError(() => dmaIovaLink(off.dev, s, unsafePhysAddr(a.phys), a.offset, a.size, a.dir as DmaDirection, a.attrs), name);
    }
    const big = new DmaIovaState();
    big.addr = BigInt(s.addr) as never;
    big.size = G;
    expectInputError(() => dmaIovaLink(off.dev, big, unsafePhysAddr(page.phys), 0, G, BIDI, 0), "state");
    expect(off.dev.domain?.iovaToPhys(iova(s.addr))).toBeUndefined();
  });

  it("the good state was never touched by the refused calls", () => {
    expect(fx.dev.domain?.iovaToPhys(iova(good.addr))).toBeUndefined();
    expect(dmaIovaLink(fx.dev, good, unsafePhysAddr(buf.phys), 0, G, BIDI, 0)).toBe(0);
    expect(fx.dev.domain?.iovaToPhys(iova(good.addr))).toBe(buf.phys);
  });
});
