import { bench, describe } from "vitest";
import { GiB, PAGE_SIZE, unsafePhysAddr, type PhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { Trace } from "@dmasim/trace";
import {
  createDmaKernel,
  DmaDirection,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
} from "./index.js";
import type { DebugMode, DmaDevice, IommuMode } from "./index.js";
import { IovaDomain } from "./iova/index.js";
import { TRUSTED_BDF } from "./test-fixtures.js";

// No cliff: each headline figure is measured first ("first:"), then every other configuration runs in the
// same process (lazy mode, dma-debug in "throw" and "collect", dma-direct, IOVA trees of 1 K to 400 K
// ranges), then the same figure is measured again ("after:"). `pnpm bench:check` fails when an "after:"
// median is more than 10 % above its "first:" median: a configuration that ran before would then have
// left the JIT in a state that slows another (a polymorphic structure, a deoptimised function).
//
// The closures of all configurations are made when the file is collected, from one factory per kind, so
// they share their code from the start: V8 cannot specialise the first one measured to its device and
// state as constants (a driver's code never gets that either), which would make the "first:" figure a
// one-configuration artefact, 20-25 % faster than any later one.

const STEADY = { warmupTime: 1000, time: 1000 };
const PAGE = PAGE_SIZE;
const TO_DEVICE = DmaDirection.TO_DEVICE;
const FROM_DEVICE = DmaDirection.FROM_DEVICE;

function kernelFor(mode: IommuMode, debug: DebugMode): { dev: DmaDevice; pages: number[] } {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: TRUSTED_BDF }] });
  const kernel = createDmaKernel(platform, { iommuMode: mode, debug });
  const dev = kernel.device(TRUSTED_BDF);
  const pages = Array.from({ length: 256 }, () => platform.memory.allocator.allocPages(1) + 0);
  return { dev, pages };
}

// Each case is a plain function of its fixture, as a driver's code is a function of its device; the
// benchmark closure builds the fixture on its first run (a 400 K-range tree built when the file is
// collected would have run before the "first:" figures) and keeps it in a variable it assigns, so V8
// never sees it as a constant.

/** dmaIovaTryAlloc + 256 one-page links + one sync + destroy. */
function twoStepBatch(dev: DmaDevice, state: DmaIovaState, pages: readonly number[]): void {
  const len = 256 * PAGE;
  dmaIovaTryAlloc(dev, state, unsafePhysAddr(pages[0] ?? 0), len);
  for (let i = 0; i < 256; i++) dmaIovaLink(dev, state, (pages[i] ?? 0) as PhysAddr, i * PAGE, PAGE, TO_DEVICE, 0);
  dmaIovaSync(dev, state, 0, len);
  dmaIovaDestroy(dev, state, len, TO_DEVICE, 0);
}

function twoStep(mode: IommuMode, debug: DebugMode): () => void {
  let fx: { dev: DmaDevice; pages: number[]; state: DmaIovaState } | undefined;
  return () => {
    fx ??= { ...kernelFor(mode, debug), state: new DmaIovaState() };
    twoStepBatch(fx.dev, fx.state, fx.pages);
  };
}

/** dmaMapPhys + dmaMappingError + dmaUnmapPhys of 4 KiB. */
function classicPair(dev: DmaDevice, phys: number, dir: DmaDirection): void {
  const addr = dmaMapPhys(dev, unsafePhysAddr(phys), PAGE, dir, 0);
  dmaMappingError(dev, addr);
  dmaUnmapPhys(dev, addr, PAGE, dir, 0);
}

function classic(mode: IommuMode, debug: DebugMode, dir: DmaDirection): () => void {
  let fx: { dev: DmaDevice; pages: number[] } | undefined;
  return () => {
    fx ??= kernelFor(mode, debug);
    classicPair(fx.dev, fx.pages[0] ?? 0, dir);
  };
}

const G = 4096;
const TOP = 2 ** 36 - 1;

/** alloc_iova + free_iova of `size` pages. */
function iovaPair(d: IovaDomain, size: number): void {
  const r = d.allocIova(size, TOP, true);
  if (r !== undefined) d.freeIova(r.pfnLo);
}

/** A tree of n ranges, packed or with misaligned 2-page holes (then 2-page size-aligned allocations). */
function iovaTree(n: number, misaligned: boolean): () => void {
  let d: IovaDomain | undefined;
  const size = misaligned ? 2 : 1;
  return () => {
    if (d === undefined) {
      d = new IovaDomain(new Trace(), { granule: G, startPfn: 1 });
      for (let i = 0; i < n; i++) {
        if (misaligned) d.reserveIova(TOP - 3 - 4 * i + 1, TOP - 3 - 4 * i + 2);
        else d.allocIova(1, TOP, false);
      }
    }
    iovaPair(d, size);
  };
}

/** The headline cases, measured before and after the rest. */
function headline(phase: "first" | "after"): void {
  describe(`${phase}: two-step, strict, dma-debug off`, () => {
    bench("alloc + link 256 × 4 KiB + one sync + destroy", twoStep("strict", "off"), STEADY);
  });
  describe(`${phase}: classic, strict, dma-debug off`, () => {
    bench("dmaMapPhys + dmaUnmapPhys 4 KiB (range-cache hit)", classic("strict", "off", TO_DEVICE), STEADY);
  });
  describe(`${phase}: classic, strict, dma-debug throw`, () => {
    bench("dmaMapPhys + dmaUnmapPhys 4 KiB FROM_DEVICE (tracked)", classic("strict", "throw", FROM_DEVICE), STEADY);
  });
  describe(`${phase}: IOVA tree, 1 K packed ranges`, () => {
    bench("alloc_iova + free_iova, 1 page", iovaTree(1000, false), STEADY);
  });
}

headline("first");

describe("others: two-step", () => {
  for (const [mode, debug] of [
    ["lazy", "off"],
    ["strict", "throw"],
    ["lazy", "collect"],
  ] as const) {
    bench(`${mode}, dma-debug ${debug}`, twoStep(mode, debug));
  }
});

describe("others: classic", () => {
  for (const [mode, debug, dir] of [
    ["lazy", "off", TO_DEVICE],
    ["strict", "collect", TO_DEVICE],
    ["off", "throw", FROM_DEVICE],
    ["off", "off", TO_DEVICE],
  ] as const) {
    bench(`${mode}, dma-debug ${debug}, ${dir === TO_DEVICE ? "TO_DEVICE" : "FROM_DEVICE"}`, classic(mode, debug, dir));
  }
});

describe("others: IOVA trees", () => {
  for (const n of [1_000, 10_000, 100_000, 400_000]) {
    for (const misaligned of [false, true]) bench(`${n} ranges, ${misaligned ? "misaligned holes, 2 pages" : "packed, 1 page"}`, iovaTree(n, misaligned));
  }
});

headline("after");
