import { describe, expect, it } from "vitest";
import { Counter } from "./counters.js";
import {
  DmaDebugError,
  DmaDirection,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  Errno,
  unsafeDmaAddr,
} from "./index.js";
import type { DmaDebugCheck, DmaDevice } from "./index.js";
import { allocBuffer, makeKernel } from "./test-fixtures.js";
import type { Fixture, TestBuffer } from "./test-fixtures.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";
import { iova } from "@dmasim/iommu";

// The two-step checks dmasim adds to dma-debug (upstream does not track dma_iova_* at all). In "throw"
// mode the faulty call throws before it changes anything; in "collect" mode it is recorded and the call
// goes on as far as the kernel would go (or is skipped where going on would corrupt the model).

const G = 4096;
const BIDI = DmaDirection.BIDIRECTIONAL;

interface Rig {
  fx: Fixture;
  dev: DmaDevice;
  buf: TestBuffer;
  state: DmaIovaState;
}

/** A state of `granules` granules over one buffer, nothing linked yet. */
function rig(debug: "throw" | "collect", granules = 4, mode: "strict" | "lazy" = "strict"): Rig {
  const fx = makeKernel({ debug, iommuMode: mode });
  const buf = allocBuffer(fx.platform, granules * G);
  const state = new DmaIovaState();
  expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
  return { fx, dev: fx.dev, buf, state };
}

/** What the IO page table holds for each granule of the state. */
function ptes(r: Rig): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  for (let i = 0; i < r.buf.len / G; i++) out.push(r.dev.domain!.iovaToPhys(iova(r.state.addr + i * G)));
  return out;
}

/** Everything a refused call must leave alone: page table, IOVA ranges, swiotlb use, the state. */
function modelState(r: Rig): unknown {
  const c = r.fx.platform.trace.counters;
  return {
    ptes: ptes(r),
    ranges: r.dev.cookie!.iovad.ranges(),
    state: { addr: r.state.addr, size: r.state.size, useSwiotlb: r.state.useSwiotlb },
    counters: [Counter.PteWrites, Counter.PteClears, Counter.IotlbInvalRange, Counter.IotlbSyncMap, Counter.FlushQueueEntries, Counter.IovaFreeCache, Counter.IovaFreeTree].map((k) => c.get(k)),
  };
}

function expectThrows(fn: () => unknown, check: DmaDebugCheck): DmaDebugError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DmaDebugError);
  const err = caught as DmaDebugError;
  expect(err.report.check).toBe(check);
  expect(err.message).toContain(`[check ${check}]`);
  return err;
}

function checks(r: Rig): DmaDebugCheck[] {
  return r.fx.kernel.debugReports().map((x) => x.check);
}

function link(r: Rig, granule: number, count: number, offset = granule * G): number {
  return dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys + granule * G), offset, count * G, BIDI, 0);
}

describe("iova-link-outside-allocation", () => {
  it("throw: refuses a link past the allocation and leaves the table alone", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    const err = expectThrows(() => dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys + 3 * G), 3 * G, 2 * G, BIDI, 0), "iova-link-outside-allocation");
    expect(err.report.device).toBe(r.dev.bdf);
    expect(err.message).toMatch(/offset=12288.*size=8192/);
    expect(modelState(r)).toEqual(before);
  });

  it("collect: returns -EINVAL, records the report, maps nothing", () => {
    const r = rig("collect");
    const before = modelState(r);
    expect(dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys), 0, 5 * G, BIDI, 0)).toBe(-Errno.EINVAL);
    expect(checks(r)).toEqual(["iova-link-outside-allocation"]);
    expect(modelState(r)).toEqual(before);
  });
});

describe("iova-link-overlap", () => {
  it("throw: refuses a link over a linked granule; the old translation stays", () => {
    const r = rig("throw");
    expect(link(r, 0, 2)).toBe(0);
    const before = modelState(r);
    const other = allocBuffer(r.fx.platform, G, { seed: 3 });
    expectThrows(() => dmaIovaLink(r.dev, r.state, unsafePhysAddr(other.phys), G, G, BIDI, 0), "iova-link-overlap");
    expect(modelState(r)).toEqual(before);
    expect(r.dev.domain!.iovaToPhys(iova(r.state.addr + G))).toBe(r.buf.phys + G);
  });

  it("collect: returns -EINVAL and the table still maps the first link", () => {
    const r = rig("collect");
    expect(link(r, 1, 2)).toBe(0);
    const before = modelState(r);
    expect(link(r, 2, 2)).toBe(-Errno.EINVAL);
    expect(checks(r)).toEqual(["iova-link-overlap"]);
    expect(modelState(r)).toEqual(before);
  });

  it("a granule unlinked again may be linked again without a report", () => {
    const r = rig("throw");
    expect(link(r, 0, 2)).toBe(0);
    dmaIovaUnlink(r.dev, r.state, G, G, BIDI, 0);
    expect(link(r, 1, 1)).toBe(0);
    expect(r.fx.kernel.debugReports()).toEqual([]);
  });
});

describe("iova-link-unaligned-interior", () => {
  it("throw: an interior range that does not start on a granule is refused before any PTE is written", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    expectThrows(() => dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys + G), G + 100, G, BIDI, 0), "iova-link-unaligned-interior");
    expect(modelState(r)).toEqual(before);
  });

  it("throw: a range after one that ended inside a granule is refused", () => {
    const r = rig("throw");
    expect(dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys), 0, 100, BIDI, 0)).toBe(0);
    const before = modelState(r);
    expectThrows(() => link(r, 1, 1), "iova-link-unaligned-interior");
    expect(modelState(r)).toEqual(before);
  });

  it("collect: recorded, and the link goes on as the kernel's would (it does not check this rule)", () => {
    const r = rig("collect");
    expect(dmaIovaLink(r.dev, r.state, unsafePhysAddr(r.buf.phys), 0, 100, BIDI, 0)).toBe(0);
    expect(link(r, 1, 1)).toBe(0);
    expect(checks(r)).toEqual(["iova-link-unaligned-interior"]);
    expect(ptes(r).slice(0, 2)).toEqual([r.buf.phys, r.buf.phys + G]);
  });

  it("the last range may end inside a granule, and the first may start inside one", () => {
    const fx = makeKernel();
    const a = allocBuffer(fx.platform, G, { offset: 0x200 });
    const b = allocBuffer(fx.platform, 2 * G);
    const c = allocBuffer(fx.platform, 10);
    const state = new DmaIovaState();
    const total = (G - 0x200) + 2 * G + 10;
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(a.phys), total)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(a.phys), 0, G - 0x200, BIDI, 0)).toBe(0);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(b.phys), G - 0x200, 2 * G, BIDI, 0)).toBe(0);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(c.phys), 3 * G - 0x200, 10, BIDI, 0)).toBe(0);
    expect(dmaIovaSync(fx.dev, state, 0, total)).toBe(0);
    dmaIovaDestroy(fx.dev, state, total, BIDI, 0);
    expect(fx.kernel.debugReports()).toEqual([]);
  });
});

describe("iova-unlink-not-linked", () => {
  it("throw: unlinking a range never linked changes nothing", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    expectThrows(() => {
      dmaIovaUnlink(r.dev, r.state, 0, 2 * G, BIDI, 0);
    }, "iova-unlink-not-linked");
    expect(modelState(r)).toEqual(before);
  });

  it("collect: recorded, and the unlink is skipped (no PTE cleared, no invalidation)", () => {
    const r = rig("collect");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    dmaIovaUnlink(r.dev, r.state, G, G, BIDI, 0);
    expect(checks(r)).toEqual(["iova-unlink-not-linked"]);
    expect(modelState(r)).toEqual(before);
  });
});

describe("iova-destroy-length-mismatch", () => {
  it("throw: a mapped_len shorter than what is linked is refused; a correct destroy afterwards works", () => {
    const r = rig("throw");
    expect(link(r, 0, 3)).toBe(0);
    const before = modelState(r);
    const destroys = r.fx.count(Counter.DmaIovaDestroys);
    expectThrows(() => {
      dmaIovaDestroy(r.dev, r.state, G, BIDI, 0);
    }, "iova-destroy-length-mismatch");
    expect(modelState(r)).toEqual(before);
    expect(r.fx.count(Counter.DmaIovaDestroys)).toBe(destroys);
    dmaIovaDestroy(r.dev, r.state, 3 * G, BIDI, 0);
    expect(ptes(r)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it("throw: a mapped_len that covers granules never linked is refused too", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    expectThrows(() => {
      dmaIovaDestroy(r.dev, r.state, 4 * G, BIDI, 0);
    }, "iova-destroy-length-mismatch");
    expect(modelState(r)).toEqual(before);
  });

  it("collect: recorded; the destroy goes on as the kernel's would, leaving the granules past mapped_len mapped", () => {
    const r = rig("collect");
    expect(link(r, 0, 3)).toBe(0);
    dmaIovaDestroy(r.dev, r.state, G, BIDI, 0);
    expect(checks(r)).toEqual(["iova-destroy-length-mismatch"]);
    // The kernel unmaps [0, mapped_len) only: the rest is the leak the check warns about.
    expect(ptes(r)).toEqual([undefined, r.buf.phys + G, r.buf.phys + 2 * G, undefined]);
  });
});

describe("iova-free-with-links", () => {
  it("throw: free with a granule still linked is refused; the IOVA stays allocated", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    const before = modelState(r);
    expectThrows(() => {
      dmaIovaFree(r.dev, r.state);
    }, "iova-free-with-links");
    expect(modelState(r)).toEqual(before);
    // Still allocated: unlink then free is clean.
    dmaIovaUnlink(r.dev, r.state, 0, G, BIDI, 0);
    dmaIovaFree(r.dev, r.state);
    expect(r.fx.kernel.debugReports().map((x) => x.check)).toEqual(["iova-free-with-links"]);
  });

  it("collect: recorded; the IOVA is freed as the kernel would, with the PTE left behind", () => {
    const r = rig("collect");
    expect(link(r, 0, 1)).toBe(0);
    dmaIovaFree(r.dev, r.state);
    expect(checks(r)).toEqual(["iova-free-with-links"]);
    expect(ptes(r)[0]).toBe(r.buf.phys);
    expect(r.fx.kernel.iovaTracker.liveCount(r.dev.bdf)).toBe(0);
  });
});

describe("iova-use-after-destroy", () => {
  const uses: [string, (r: Rig) => unknown][] = [
    ["link", (r) => link(r, 0, 1)],
    ["sync", (r) => dmaIovaSync(r.dev, r.state, 0, G)],
    ["unlink", (r) => { dmaIovaUnlink(r.dev, r.state, 0, G, BIDI, 0); }],
    ["destroy", (r) => { dmaIovaDestroy(r.dev, r.state, G, BIDI, 0); }],
    ["free", (r) => { dmaIovaFree(r.dev, r.state); }],
  ];

  it.each(uses)("throw: %s after destroy throws and changes nothing", (_name, use) => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    dmaIovaDestroy(r.dev, r.state, G, BIDI, 0);
    const before = modelState(r);
    expectThrows(() => use(r), "iova-use-after-destroy");
    expect(modelState(r)).toEqual(before);
  });

  it.each(uses)("collect: %s after destroy is recorded and skipped", (_name, use) => {
    const r = rig("collect");
    expect(link(r, 0, 1)).toBe(0);
    dmaIovaDestroy(r.dev, r.state, G, BIDI, 0);
    const before = modelState(r);
    use(r);
    expect(checks(r)).toEqual(["iova-use-after-destroy"]);
    expect(modelState(r)).toEqual(before);
  });

  it("collect: a second destroy does not give the IOVA back twice (two new states never share it)", () => {
    const r = rig("collect", 1);
    dmaIovaDestroy(r.dev, r.state, 0, BIDI, 0);
    dmaIovaDestroy(r.dev, r.state, 0, BIDI, 0);
    expect(checks(r)).toEqual(["iova-use-after-destroy"]);
    const a = new DmaIovaState();
    const b = new DmaIovaState();
    expect(dmaIovaTryAlloc(r.dev, a, unsafePhysAddr(0), G)).toBe(true);
    expect(dmaIovaTryAlloc(r.dev, b, unsafePhysAddr(0), G)).toBe(true);
    expect(a.addr).not.toBe(b.addr);
  });

  it("use after free is reported the same way", () => {
    const r = rig("throw");
    dmaIovaFree(r.dev, r.state);
    expectThrows(() => link(r, 0, 1), "iova-use-after-destroy");
  });

  it("a state reused by a new try_alloc is live again", () => {
    const r = rig("throw");
    dmaIovaFree(r.dev, r.state);
    expect(dmaIovaTryAlloc(r.dev, r.state, unsafePhysAddr(r.buf.phys), r.buf.len)).toBe(true);
    expect(link(r, 0, 4)).toBe(0);
    dmaIovaDestroy(r.dev, r.state, 4 * G, BIDI, 0);
    expect(r.fx.kernel.debugReports()).toEqual([]);
  });
});

describe("iova-access-before-sync", () => {
  it("throw: a device read of a linked granule before dma_iova_sync is stopped before it reaches the IOMMU", () => {
    const r = rig("throw");
    expect(link(r, 0, 2)).toBe(0);
    const before = r.fx.platform.trace.counters.snapshot();
    expectThrows(() => r.fx.endpoint(r.dev).dmaRead(unsafeDmaAddr(r.state.addr + G), 16), "iova-access-before-sync");
    const moved = r.fx.platform.trace.counters.snapshot().diff(before);
    expect([moved.get(Counter.TlpsToMemory), moved.get(Counter.PtWalks), moved.get(Counter.IotlbHits)]).toEqual([0, 0, 0]);
  });

  it("throw: a device write before the sync leaves memory untouched", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    expectThrows(() => {
      r.fx.endpoint(r.dev).dmaWrite(r.state.addr, new Uint8Array(64).fill(0xab));
    }, "iova-access-before-sync");
    expect(r.fx.platform.memory.read(physAddr(r.buf.phys), 64)).toEqual(r.buf.bytes.subarray(0, 64));
  });

  it("collect: recorded, and on an IOMMU that needs no sync the access goes through", () => {
    const r = rig("collect");
    expect(link(r, 0, 1)).toBe(0);
    expect(r.fx.endpoint(r.dev).dmaRead(r.state.addr, 16)).toEqual(r.buf.bytes.subarray(0, 16));
    expect(checks(r)).toEqual(["iova-access-before-sync"]);
  });

  it("only granules outside the sync are reported; after a sync the range is clean", () => {
    const r = rig("collect");
    expect(link(r, 0, 4)).toBe(0);
    expect(dmaIovaSync(r.dev, r.state, 0, 2 * G)).toBe(0);
    r.fx.endpoint(r.dev).dmaRead(r.state.addr, 2 * G);
    expect(checks(r)).toEqual([]);
    r.fx.endpoint(r.dev).dmaRead(unsafeDmaAddr(r.state.addr + 3 * G), 8);
    expect(checks(r)).toEqual(["iova-access-before-sync"]);
    expect(dmaIovaSync(r.dev, r.state, 2 * G, 2 * G)).toBe(0);
    r.fx.endpoint(r.dev).dmaRead(r.state.addr, 4 * G);
    expect(checks(r)).toHaveLength(1);
  });

  it("a granule unlinked and linked again needs a new sync", () => {
    const r = rig("collect");
    expect(link(r, 0, 2)).toBe(0);
    expect(dmaIovaSync(r.dev, r.state, 0, 2 * G)).toBe(0);
    dmaIovaUnlink(r.dev, r.state, G, G, BIDI, 0);
    expect(link(r, 1, 1)).toBe(0);
    r.fx.endpoint(r.dev).dmaRead(r.state.addr, 8);
    expect(checks(r)).toEqual([]);
    r.fx.endpoint(r.dev).dmaRead(unsafeDmaAddr(r.state.addr + G), 8);
    expect(checks(r)).toEqual(["iova-access-before-sync"]);
  });
});

describe("iova-leak on unbind", () => {
  it("collect: a state still holding its IOVA is reported and counted", () => {
    const r = rig("collect");
    expect(link(r, 0, 2)).toBe(0);
    const done = new DmaIovaState();
    expect(dmaIovaTryAlloc(r.dev, done, unsafePhysAddr(0), G)).toBe(true);
    dmaIovaFree(r.dev, done);
    const report = r.fx.kernel.unbind(r.dev);
    expect(report.leakedIovaStates).toBe(1);
    expect(checks(r)).toEqual(["iova-leak"]);
    expect(r.fx.kernel.debugReports()[0]?.message).toMatch(/1 dma_iova_state/);
  });

  it("throw: unbind with a live state throws and leaves the device bound", () => {
    const r = rig("throw");
    expect(link(r, 0, 1)).toBe(0);
    expectThrows(() => r.fx.kernel.unbind(r.dev), "iova-leak");
    expect(r.dev.bound).toBe(true);
    dmaIovaDestroy(r.dev, r.state, G, BIDI, 0);
    expect(r.fx.kernel.unbind(r.dev).leakedIovaStates).toBe(0);
  });

  it("a destroy whose IOVA still waits in the lazy flush queue is not a leak", () => {
    const r = rig("throw", 4, "lazy");
    expect(link(r, 0, 4)).toBe(0);
    dmaIovaDestroy(r.dev, r.state, 4 * G, BIDI, 0);
    expect(r.dev.cookie!.fq!.pendingTotal).toBe(1);
    expect(r.fx.kernel.unbind(r.dev)).toEqual({ device: r.dev.bdf, leakedMappings: [], leakedIovaStates: 0 });
  });

  it("debug off: nothing is tracked or reported", () => {
    const fx = makeKernel({ debug: "off" });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0), 2 * G)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), 0, G, BIDI, 0)).toBe(0);
    expect(fx.kernel.unbind(fx.dev).leakedIovaStates).toBe(0);
    expect(fx.kernel.debugReports()).toEqual([]);
  });
});
