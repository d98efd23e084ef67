import { beforeAll, describe, expect, it } from "vitest";
import { costProfiles } from "@dmasim/dma";
import { CALIBRATION_GROUPS, CALIBRATION_PROFILES, PUBLISHED_FIGURES, calibrate, caseNames, checkExpectations, parseExpectation, priceCalibration, publishedExpectations } from "./calibrate.js";
import { CONCLUSIONS, assumedCounters, renderSweep, sweepAssumed } from "./calibrate-sweep.js";
import type { CalibrationGroup, CalibrationReport } from "./calibrate.js";
import { main } from "./cli.js";
import { recordingIo } from "./test-io.js";

/** The nvme-4k group with fewer I/Os: the same shape, a quarter of the run time. */
const SMALL: readonly CalibrationGroup[] = CALIBRATION_GROUPS.filter((g) => g.name === "nvme-4k").map((g) => ({
  ...g,
  cases: g.cases.map((c) => ({ ...c, workload: { ...c.workload, ops: 500 } })),
}));

function capture(argv: readonly string[]): { code: number; out: string; err: string } {
  const r = recordingIo();
  const code = main(argv, r.io);
  return { code, out: r.out(), err: r.err() };
}

describe("calibration", () => {
  let full: CalibrationReport;
  // A whole calibration runs every case once: seconds, several times that on a loaded machine.
  beforeAll(() => {
    full = calibrate();
  }, 300_000);

  it("has a figure for every case on every profile, ratios to the group's first case, and the rows each rests on", () => {
    expect(full.profiles).toEqual(CALIBRATION_PROFILES);
    expect(CALIBRATION_PROFILES).not.toContain("default");
    expect(full.figures).toHaveLength(caseNames().length * CALIBRATION_PROFILES.length);
    for (const g of CALIBRATION_GROUPS) {
      for (const p of CALIBRATION_PROFILES) {
        const figs = full.figures.filter((f) => f.group === g.name && f.profile === p);
        expect(figs.map((f) => f.name)).toEqual(g.cases.map((c) => c.name));
        expect(figs[0]!.ratio).toBe(1);
        for (const [i, f] of figs.entries()) {
          expect(f.iops).toBeGreaterThan(0);
          expect(f.iops).toBeLessThanOrEqual(g.host.deviceIops + 1e-6);
          expect(f.ratio).toBeCloseTo(f.iops / figs[0]!.iops, 9);
          const c = g.cases[i]!;
          if (c.premapped === true) expect(f.restsOn).toEqual([]);
          else {
            expect(f.restsOn.length).toBeGreaterThan(0);
            for (const r of f.restsOn) expect(r.assumed).toBe(costProfiles[p][r.counter]!.assumed);
          }
        }
      }
    }
  });

  it("pins the shape of the conclusions: strict loses to lazy wherever invalidations cost, a sync per map loses to one per request", () => {
    const fig = (p: string, n: string) => full.figures.find((f) => f.profile === p && f.name === n)!;
    for (const p of CALIBRATION_PROFILES) {
      expect(fig(p, "nvme-4k-strict").iops).toBeLessThan(fig(p, "nvme-4k-lazy").iops);
      expect(fig(p, "nvme-4k-strict").bottleneck).toBe("inval-queue");
      expect(fig(p, "virtio-strict").iops).toBeLessThanOrEqual(fig(p, "virtio-strict-sync-map").iops);
    }
    // On bare metal lazy reaches the drives; in a guest, every sync and invalidation is a trap.
    for (const p of ["vtd", "smmuv3", "amd-vi"]) expect(fig(p, "nvme-4k-lazy").bottleneck).toBe("device");
    expect(fig("virtio-iommu", "virtio-strict").iops).toBeLessThan(fig("virtio-iommu", "virtio-strict-sync-map").iops);
    // Splitting at 128 KiB takes IOVAs from the range cache; what still reaches the tree is the cold start
    // of lazy mode (frees wait in the flush queue until its 256-slot ring fills, so about as many allocations miss the cache).
    expect(full.countersPerRequest["large-uncached"]!.IovaAllocTree).toBe(1);
    expect(full.countersPerRequest["large-cached"]!.IovaAllocTree ?? 0).toBeLessThanOrEqual(256 / 1200 + 1e-9);
  });

  it("moves when a profile row moves: a dearer invalidation wait lowers strict, leaves premapped alone", () => {
    const base = calibrate(["vtd"], SMALL);
    const dear = calibrate(["vtd"], SMALL, { IotlbInvalRange: 4 * costProfiles.vtd.IotlbInvalRange!.ns });
    const at = (r: CalibrationReport, n: string) => r.figures.find((f) => f.name === n)!;
    expect(at(dear, "nvme-4k-strict").iops).toBeLessThan(at(base, "nvme-4k-strict").iops / 2);
    expect(at(dear, "nvme-4k-premapped").iops).toBe(at(base, "nvme-4k-premapped").iops);
    expect(dear.countersPerRequest).toEqual(base.countersPerRequest);
  });

  it("sweeps the assumed rows: each conclusion holds or names the rows that break it, all of them assumed", () => {
    const outcomes = sweepAssumed(full.countersPerRequest);
    expect(outcomes.map((o) => o.conclusion.id)).toEqual(CONCLUSIONS.map((c) => c.id));
    const assumed = assumedCounters();
    for (const o of outcomes) for (const f of o.flips) expect([...assumed, "baseNs"]).toContain(f.counter);
    expect(outcomes.find((o) => o.conclusion.id === "lazy-beats-strict")).toMatchObject({ holdsAtBase: true, flips: [] });
    // Scaling an assumed row moves the figures resting on it; a cited row is left alone.
    const base = priceCalibration(full.countersPerRequest, ["vtd", "smmuv3"]);
    const cheap = priceCalibration(full.countersPerRequest, ["vtd", "smmuv3"], CALIBRATION_GROUPS, { scaleAssumed: { IotlbInvalRange: 0.25 } });
    const at = (r: CalibrationReport, p: string, n: string) => r.figures.find((f) => f.profile === p && f.name === n)!;
    expect(at(cheap, "vtd", "nvme-4k-strict").iops).toBeGreaterThan(2 * at(base, "vtd", "nvme-4k-strict").iops);
    expect(at(cheap, "smmuv3", "nvme-4k-strict").iops).toBe(at(base, "smmuv3", "nvme-4k-strict").iops);
    expect(renderSweep(outcomes, [0.25, 4])).toMatch(/^ {2}\[holds\] NVMe 4 KiB: lazy gives more IOPS than strict on every profile: robust$/m);
  });

  it("is deterministic: the same report twice", () => {
    expect(calibrate(["vtd", "virtio-iommu"], SMALL)).toEqual(calibrate(["vtd", "virtio-iommu"], SMALL));
  });

  it("compares published and user figures with the modelled ones", () => {
    const published = checkExpectations(full, publishedExpectations());
    expect(published).toHaveLength(PUBLISHED_FIGURES.length);
    for (const r of published) {
      expect(r.error).toBeCloseTo((r.modelled - r.expectation.value) / r.expectation.value, 12);
      expect(r.expectation.source.length).toBeGreaterThan(40);
    }
    const e = parseExpectation("nvme-4k-lazy.iops=2.5M", caseNames());
    expect(e).toMatchObject({ name: "nvme-4k-lazy", metric: "iops", value: 2.5e6 });
    expect(checkExpectations(full, [e])).toHaveLength(CALIBRATION_PROFILES.length);
    expect(checkExpectations(full, [parseExpectation("default/nvme-4k-lazy.ratio=1", caseNames())]).map((r) => r.profile)).toEqual(["smmuv3"]);
    expect(() => parseExpectation("nvme-4k-lazy=3", caseNames())).toThrow(/\[profile\/\]case\.iops=N/);
    expect(() => parseExpectation("power9/nvme-4k-lazy.iops=3", caseNames())).toThrow(/no profile power9/);
    expect(() => parseExpectation("nvme-8k.iops=3", caseNames())).toThrow(/no calibration case nvme-8k/);
  });
});

describe("dmasim calibrate and --profile", () => {
  it("prints the table for the profiles asked, the published figures' errors and each --expect's", () => {
    const r = capture(["calibrate", "--profile", "vtd,smmuv3", "--expect", "smmuv3/nvme-4k-strict.ratio=0.2", "--sweep"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^case +vtd +smmuv3$/m);
    expect(r.out).toMatch(/^nvme-4k-strict +\S+ [Mk] \(0\.\d\d\) q/m);
    expect(r.out).toMatch(/nvme-4k-strict rests on: IotlbInvalRange \(queued on inval-queue/);
    expect(r.out).toMatch(/^smmuv3\/nvme-4k-strict\.ratio +0\.170 +0\.\d{3} +[+-]\d+\.\d %$/m);
    expect(r.out).toMatch(/^smmuv3\/nvme-4k-strict\.ratio +0\.200 /m);
    expect(r.out).toMatch(/^Conclusions, with every assumed row and the hosts' baseNs scaled by ×0\.25 and ×4/m);
    const json = JSON.parse(capture(["calibrate", "--profile", "amd-vi", "--json"]).out) as { profiles: string[]; figures: unknown[] };
    expect(json.profiles).toEqual(["amd-vi"]);
    expect(json.figures).toHaveLength(caseNames().length);
  }, 300_000);

  it("refuses a bad profile, a bad --expect, and options the command does not take", () => {
    expect(capture(["calibrate", "--profile", "vtd,power9"])).toMatchObject({ code: 2 });
    expect(capture(["calibrate", "--profile", "vtd,power9"]).err).toMatch(/--profile.*power9/);
    expect(capture(["calibrate", "--expect", "x"]).err).toMatch(/--expect "x"/);
    expect(capture(["list", "--profile", "vtd"]).code).toBe(2);
    expect(capture(["compare", "sg-256", "--sweep"]).code).toBe(2);
    expect(capture(["run", "nvme-4k-randread", "--profile", "power9"]).code).toBe(2);
    expect(capture(["run", "nvme-4k-randread", "--expect", "nvme-4k-lazy.iops=1"]).code).toBe(2);
  });

  it("run and compare price with the profile named", () => {
    const run = (profile: string) => (JSON.parse(capture(["run", "single-256-pages", "--api", "classic", "--profile", profile, "--json"]).out) as { result: { modelledNs: number; counters: Record<string, number> } }).result;
    const bare = run("vtd");
    const guest = run("vtd-caching-mode");
    expect(guest.counters).toEqual(bare.counters);
    expect(guest.modelledNs - bare.modelledNs).toBeGreaterThanOrEqual((bare.counters.IotlbSyncMap ?? 0) * costProfiles["vtd-caching-mode"].IotlbSyncMap!.ns);
    expect(capture(["run", "single-256-pages", "--profile", "amd-vi"]).out).toMatch(/^== single-256-pages \(two-step, IOMMU strict, cost profile amd-vi\)/);
    const compared = capture(["compare", "lazy-stale-window", "--profile", "virtio-iommu"]);
    expect(compared.code).toBe(0);
    expect(compared.out).toMatch(/prices the counters with the "virtio-iommu" cost profile;/);
    expect(capture(["compare", "lazy-stale-window"]).out).toMatch(/prices the counters with the default cost profile;/);
  });
});
