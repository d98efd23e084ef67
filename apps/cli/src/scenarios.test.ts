import { describe, expect, it } from "vitest";
import { runDemoScenario } from "./demo.js";
import type { RunResult } from "@dmasim/scenario";
import { BUILTIN_SCENARIOS, builtinScenario } from "@dmasim/scenario";

function sweepOf(name: string): { ok: boolean; run: (api: string, iommu: string) => RunResult; results: readonly RunResult[] } {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  const sec = runDemoScenario(s);
  const run = (api: string, iommu: string): RunResult => {
    const r = sec.results.find((x) => x.api === api && x.iommu === iommu);
    if (r === undefined) throw new Error(`no run ${api}/${iommu}`);
    return r;
  };
  return { ok: sec.ok, run, results: sec.results };
}

const c = (r: RunResult, name: keyof RunResult["counters"]): number => r.counters[name] ?? 0;
const invalidations = (r: RunResult): number => c(r, "IotlbInvalRange") + c(r, "IotlbInvalDomain") + c(r, "IotlbInvalGlobal");

describe("built-in scenarios", () => {
  it("every built-in has a unique name and is covered below", () => {
    const names = BUILTIN_SCENARIOS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual([
      "nvme-4k-randread",
      "nvme-128k-seqwrite",
      "single-256-pages",
      "sg-256",
      "p2p-switch",
      "p2p-host-bridge",
      "p2p-acs-redirect",
      "untrusted-unaligned",
      "confidential-guest",
      "lazy-stale-window",
      "hmm-fault-in",
      "hmm-race",
      "hmm-munmap",
      "hmm-madvise",
      "hmm-fork",
      "hmm-migrate",
      "odp-rc-traffic",
      "odp-rdma-write",
      "odp-rdma-read",
      "odp-atomic",
      "odp-prefetch-sync",
      "odp-prefetch-async",
      "odp-prefetch-no-fault",
      "odp-huge-pages",
      "odp-implicit",
      "odp-hodgepodge",
      "odp-nic-workload",
      "rdma-dmabuf-rc-traffic",
      "rdma-dmabuf-rdma-traffic",
      "rdma-dmabuf-migrate",
      "rdma-dmabuf-revoke",
      "odp-mixed-mr",
      "dmabuf-p2p-switch",
      "dmabuf-p2p-host-bridge",
      "dmabuf-migrate",
      "dmabuf-mixed-remap",
      "dmabuf-vfio-revoke",
      "dmabuf-nvme-switch",
      "dmabuf-nvme-host-bridge",
      "dmabuf-nvme-migrate",
      "dmabuf-nvme-revoke",
      "dmabuf-nvme-nic-pressure",
    ]);
  });

  it("nvme-4k-randread: one IOVA and one IOTLB sync per I/O either way (one dma_map_phys in the 6.17+ driver); lazy batches the invalidations", () => {
    const { ok, run } = sweepOf("nvme-4k-randread");
    expect(ok).toBe(true);
    for (const api of ["classic", "two-step"]) {
      const strict = run(api, "strict");
      expect(strict.metrics.verifiedBytes).toBe(2000 * 4096);
      expect(c(strict, "IovaAllocCache") + c(strict, "IovaAllocTree")).toBe(2000);
      expect(c(strict, "IotlbSyncMap")).toBe(2000);
      expect(c(strict, "PteWrites")).toBe(2000);
      expect(invalidations(strict)).toBe(2000);
      expect(invalidations(run(api, "lazy"))).toBeLessThan(20);
    }
    // A single-segment request takes nvme_pci_setup_data_simple: dma_map_bvec, no IOVA state.
    expect(c(run("two-step", "strict"), "DmaIovaTryAllocs")).toBe(0);
    expect(c(run("two-step", "strict"), "DmaMapCalls")).toBe(2000);
    expect(c(run("classic", "strict"), "DmaIovaLinks")).toBe(0);
    expect(c(run("classic", "strict"), "DmaMapCalls")).toBe(2000);
    expect(run("classic", "lazy").modelledNs).toBeLessThan(run("classic", "strict").modelledNs);
  });

  it("nvme-128k-seqwrite: 32 pages per request, one IOVA and one sync per request, a link per phys vec", () => {
    const { ok, run } = sweepOf("nvme-128k-seqwrite");
    expect(ok).toBe(true);
    const classic = run("classic", "strict");
    const twoStep = run("two-step", "strict");
    expect(classic.metrics.writes).toBe(200);
    expect(classic.metrics.verifiedBytes).toBe(200 * 128 * 1024);
    expect(c(twoStep, "DmaIovaTryAllocs")).toBe(200);
    expect(c(twoStep, "DmaIovaSyncs")).toBe(200);
    expect(c(twoStep, "DmaIovaLinks")).toBeGreaterThan(200 * 16);
    expect(c(twoStep, "DmaIovaLinks")).toBeLessThanOrEqual(200 * 32);
    expect(c(classic, "DmaIovaLinks")).toBe(0);
    // The page-table work is the same; only the number of calls differs.
    expect(c(twoStep, "PteWrites")).toBe(c(classic, "PteWrites"));
    expect(c(twoStep, "IotlbSyncMap")).toBe(c(classic, "IotlbSyncMap"));
  });

  it("single-256-pages: dma_map_phys needs an IOVA, a sync and an invalidation per page; two-step needs one of each", () => {
    const { ok, run } = sweepOf("single-256-pages");
    expect(ok).toBe(true);
    const classic = run("classic", "strict");
    const twoStep = run("two-step", "strict");
    expect(classic.metrics.verifiedBytes).toBe(256 * 4096);
    expect(twoStep.metrics.verifiedBytes).toBe(256 * 4096);
    expect(c(classic, "IovaAllocCache") + c(classic, "IovaAllocTree")).toBe(256);
    expect(c(classic, "IotlbSyncMap")).toBe(256);
    expect(invalidations(classic)).toBe(256);
    expect(c(twoStep, "IovaAllocCache") + c(twoStep, "IovaAllocTree")).toBe(1);
    expect(c(twoStep, "IotlbSyncMap")).toBe(1);
    expect(invalidations(twoStep)).toBe(1);
    expect(c(twoStep, "PteWrites")).toBe(256);
    expect(c(classic, "PteWrites")).toBe(256);
    expect(twoStep.apiCalls).toEqual({ dma_iova_try_alloc: 1, dma_iova_link: 256, dma_iova_sync: 1, dma_iova_destroy: 1 });
    // Lazy mode batches the per-page invalidations of the classic path into flush-queue flushes.
    expect(invalidations(run("classic", "lazy"))).toBeLessThan(256);
    expect(twoStep.modelledNs).toBeLessThan(classic.modelledNs);
  });

  it("sg-256: classic and two-step write the same 1,024 PTEs into 4 IOVAs and give 16 segments", () => {
    const { ok, results } = sweepOf("sg-256");
    expect(ok).toBe(true);
    for (const r of results) {
      expect(c(r, "PteWrites")).toBe(4 * 256);
      expect(c(r, "IovaAllocCache") + c(r, "IovaAllocTree")).toBe(4);
      expect(c(r, "IotlbSyncMap")).toBe(4);
      expect(r.metrics.dmaSegments).toBe(16);
      expect(r.metrics.verifiedBytes).toBe(4 * 256 * 4096);
    }
    const twoStep = results.find((r) => r.api === "two-step" && r.iommu === "strict");
    expect(twoStep?.apiCalls.dma_iova_link).toBe(4 * 256);
  });

  it("p2p-switch: BUS_ADDR, every TLP turns around in the switch, nothing is IOMMU-mapped", () => {
    const { ok, results } = sweepOf("p2p-switch");
    expect(ok).toBe(true);
    for (const r of results) {
      expect(r.checks.find((k) => k.name === "P2P route")?.ok).toBe(true);
      expect(r.metrics).toMatchObject({ tlpsPeerViaSwitch: 32, tlpsPeerViaHostBridge: 0, verifiedBytes: 128 * 1024 });
      expect(r.metrics.distance).toBeGreaterThan(0);
      expect(c(r, "PteWrites")).toBe(0);
    }
  });

  it("p2p-host-bridge and p2p-acs-redirect: THRU_HOST_BRIDGE, an IOVA mapped for the BAR, TLPs cross the root complex", () => {
    for (const name of ["p2p-host-bridge", "p2p-acs-redirect"]) {
      const { ok, results } = sweepOf(name);
      expect(ok).toBe(true);
      for (const r of results) {
        expect(r.metrics).toMatchObject({ tlpsPeerViaSwitch: 0, tlpsPeerViaHostBridge: 32 });
        expect(c(r, "PteWrites")).toBe(32);
      }
    }
  });

  it("untrusted-unaligned: everything bounces classically; two-step bounces only the partial granules", () => {
    const { ok, run } = sweepOf("untrusted-unaligned");
    expect(ok).toBe(true);
    const classic = run("classic", "strict");
    const twoStep = run("two-step", "strict");
    expect(c(classic, "SwiotlbBounceBytes")).toBe(16 * (2 * 4096 + 300));
    expect(c(twoStep, "SwiotlbBounceBytes")).toBeGreaterThan(0);
    expect(c(twoStep, "SwiotlbBounceBytes")).toBeLessThan(c(classic, "SwiotlbBounceBytes"));
    expect(twoStep.checks.find((k) => k.name === "no neighbouring data exposed")?.ok).toBe(true);
    // Untrusted devices are always strict: lazy mode changes nothing.
    expect(invalidations(run("two-step", "lazy"))).toBe(invalidations(twoStep));
  });

  it("confidential-guest: no IOMMU, every byte the device touches goes through swiotlb, and it still verifies", () => {
    const { ok, results } = sweepOf("confidential-guest");
    expect(ok).toBe(true);
    expect(results.map((r) => r.iommu)).toEqual(["off", "off"]);
    for (const r of results) {
      expect(c(r, "SwiotlbBounceBytes")).toBeGreaterThanOrEqual(r.metrics.verifiedBytes ?? Infinity);
      expect(c(r, "PteWrites")).toBe(0);
      expect(c(r, "PrivateMemoryBlocked")).toBe(0);
    }
  });

  it("lazy-stale-window: strict closes at once; lazy keeps translating until the 10 ms flush-queue timeout", () => {
    const { ok, run } = sweepOf("lazy-stale-window");
    expect(ok).toBe(true);
    for (const api of ["classic", "two-step"]) {
      expect(run(api, "strict").metrics).toMatchObject({ staleReads: 0, windowNs: 0 });
      const lazy = run(api, "lazy");
      expect(lazy.metrics.staleReads).toBe(100);
      expect(lazy.metrics.windowNs).toBe(10_000_000);
    }
  });

  it("hmm-*: every mirrored-process scenario passes its checks with the pfn-list driver and with hmm_dma_map (and batched)", () => {
    for (const name of ["hmm-fault-in", "hmm-race", "hmm-munmap", "hmm-madvise", "hmm-fork", "hmm-migrate"]) {
      const { ok, run } = sweepOf(name);
      expect(ok).toBe(true);
      const classic = run("classic", "strict");
      const two = run("two-step", "strict");
      // One IOVA per dma_map_page against one for the whole range; the batched variant syncs once per 64 links.
      expect(c(classic, "IovaAllocTree") + c(classic, "IovaAllocCache")).toBe(c(classic, "DmaMapCalls"));
      expect(c(two, "IovaAllocTree") + c(two, "IovaAllocCache")).toBe(1);
      expect(two.metrics.batchedIotlbSyncs).toBe(Math.ceil(c(two, "DmaIovaLinks") / 64));
      expect(two.checks.some((x) => x.name === "batched variant" && x.ok)).toBe(true);
    }
  });

  it("odp-*: rdma-core's test_odp.py cases pass with ODP before the two-step API, hmm_dma_map and batched; every byte verified", () => {
    const cases = ["odp-rc-traffic", "odp-rdma-write", "odp-rdma-read", "odp-atomic", "odp-prefetch-sync", "odp-prefetch-async", "odp-prefetch-no-fault", "odp-huge-pages", "odp-implicit"];
    for (const name of cases) {
      const { ok, run } = sweepOf(name);
      expect(ok).toBe(true);
      const classic = run("classic", "strict");
      const two = run("two-step", "strict");
      // A dma_map_page (and an IOVA) per faulted page against one IOVA per umem reserved at registration.
      expect(c(classic, "IovaAllocTree") + c(classic, "IovaAllocCache")).toBe(c(classic, "DmaMapCalls"));
      expect(c(two, "DmaMapCalls")).toBe(0);
      expect(two.metrics.verifiedBytes).toBeGreaterThan(0);
      expect(two.checks.some((x) => x.name === "batched variant" && x.ok)).toBe(true);
    }
  });

  it("odp-hodgepodge and odp-nic-workload: one MR over every kind of memory under strict and lazy; the comparison's counters", () => {
    const h = sweepOf("odp-hodgepodge");
    expect(h.ok).toBe(true);
    expect(h.results.map((r) => `${r.api}/${r.iommu}`)).toEqual(["two-step/strict", "two-step/lazy"]);
    const { ok, run } = sweepOf("odp-nic-workload");
    expect(ok).toBe(true);
    expect(run("classic", "strict").metrics).toMatchObject({ iovaAllocations: 512, iotlbSyncs: 512, nicFaults: 32 });
    expect(run("two-step", "strict").metrics).toMatchObject({ iovaAllocations: 1, iotlbSyncs: 512, batchedIotlbSyncs: 33, nicFaults: 32 });
  });

  it("rdma-dmabuf-*: dmabuf MRs pass their checks with the exporter's sg_table and the umem-mapped range list", () => {
    for (const name of ["rdma-dmabuf-rc-traffic", "rdma-dmabuf-rdma-traffic", "rdma-dmabuf-migrate", "rdma-dmabuf-revoke"]) {
      const { ok, results } = sweepOf(name);
      expect(ok).toBe(true);
      expect(results.map((r) => `${r.api}/${r.iommu}`)).toEqual(["classic/strict", "two-step/strict"]);
      for (const r of results) expect(r.checks.map((x) => x.name)).toEqual(expect.arrayContaining(["every byte verified", "no dma-buf left", "nothing left mapped"]));
    }
    expect(sweepOf("rdma-dmabuf-migrate").run("two-step", "strict").metrics).toMatchObject({ migrations: 5, dmabufMrFaults: 5 });
  });

  it("odp-mixed-mr: one MR over user VA and dma-bufs; every source's events, quiescence and first DMA reported", () => {
    const { ok, results, run } = sweepOf("odp-mixed-mr");
    expect(ok).toBe(true);
    expect(results.map((r) => `${r.api}/${r.iommu}`)).toEqual(["two-step/strict", "two-step/lazy"]);
    for (const src of ["mm", "gpu", "vfio"]) expect(run("two-step", "strict").metrics[`${src}FirstDmaMaxNs`]).toBeGreaterThan(0);
  });

  it("dmabuf-*: every dma-buf scenario passes its checks with the exporter's sg_table and with the importer-mapped range list", () => {
    for (const name of ["dmabuf-p2p-switch", "dmabuf-p2p-host-bridge", "dmabuf-migrate", "dmabuf-mixed-remap", "dmabuf-vfio-revoke", "dmabuf-nvme-switch", "dmabuf-nvme-host-bridge", "dmabuf-nvme-migrate", "dmabuf-nvme-revoke", "dmabuf-nvme-nic-pressure"]) {
      const { ok, results } = sweepOf(name);
      expect(ok).toBe(true);
      expect(results.map((r) => `${r.api}/${r.iommu}`)).toEqual(["classic/strict", "two-step/strict"]);
      for (const r of results) expect(r.checks.map((x) => x.name)).toEqual(expect.arrayContaining(["dma-buf rules clean", "no dma-buf leaked", "nothing left mapped"]));
    }
    // After a move the range list relinks into the importer's IOVA; the exporter's sg_table needs a new one.
    const { run } = sweepOf("dmabuf-mixed-remap");
    expect(run("classic", "strict").metrics.remapIovaAllocs).toBe(1);
    expect(run("two-step", "strict").metrics.remapIovaAllocs).toBe(0);
  });
});
