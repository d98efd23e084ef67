import { COST_PROFILE_NAMES, costProfile, costProfiles, modelThroughput, priceCounts } from "@dmasim/dma";
import type { CostOverrides, CostProfile, CostProfileName, CostRow, CounterName, IommuMode, ThroughputResult } from "@dmasim/dma";
import { builtinScenario, runScenario } from "@dmasim/scenario";
import type { NvmeWorkload, Scenario } from "@dmasim/scenario";

/**
 * `dmasim calibrate`: the calibration scenarios, each run once (counters do not depend on the cost
 * profile), priced with every named profile, and turned into modelled IOPS for a multi-queue host by
 * modelThroughput. Figures are compared with published macro results and with what the user expects.
 */

const KiB = 1024;

/** The host a group's figures are for: CPUs with one queue each, what they share, the device's limit. */
export interface CalibrationHost {
  readonly cpus: number;
  /** CPU time per I/O outside the DMA API (block layer, NVMe driver, interrupt). */
  readonly baseNs: number;
  /** The device's (devices') I/Os per second. */
  readonly deviceIops: number;
  /** IOVA domains (one per drive) and IOMMU units the CPUs spread over. */
  readonly treeLocks: number;
  readonly invalQueues: number;
  /** Why these numbers. */
  readonly note: string;
}

export interface CalibrationCase {
  /** Figure names are `<case>.iops` and `<case>.ratio` (to the group's first case). */
  readonly name: string;
  readonly description: string;
  readonly iommu: IommuMode;
  /** Requests one reported I/O takes (a 512 KiB read split at 128 KiB takes 4). */
  readonly requestsPerIo: number;
  /** Buffers mapped once at setup (io_uring fixed buffers, a premapping driver): no DMA API work per I/O. */
  readonly premapped?: boolean;
  /** virtio-iommu before iotlb_sync_map (v6.7 and older): every map_pages call synced on its own. */
  readonly syncPerMap?: boolean;
  /** An NVMe workload (fields over the built-in nvme-4k-randread's), or an sg one: tables mapped, read, unmapped. */
  readonly workload?: Partial<NvmeWorkload>;
  readonly sg?: { readonly entryBytes: number; readonly iterations: number };
}

export interface CalibrationGroup {
  readonly name: string;
  readonly description: string;
  readonly host: CalibrationHost;
  /** The first case is the group's baseline: ratios are to it. */
  readonly cases: readonly CalibrationCase[];
}

/** A published macro figure the calibration should reproduce, with where it comes from. */
export interface PublishedFigure {
  readonly figure: string;
  readonly profile: Exclude<CostProfileName, "default">;
  readonly value: number;
  readonly source: string;
  /** The profile's rows were fitted to this figure: it checks the fit, it is not a prediction. */
  readonly fitted?: boolean;
}

const NVME_4K: Partial<NvmeWorkload> = { ops: 2000, bsMin: 4 * KiB, readPct: 100, queueDepth: 32, layout: "contiguous", order: "random" };

export const CALIBRATION_GROUPS: readonly CalibrationGroup[] = [
  {
    name: "nvme-4k",
    description: "NVMe 4 KiB random reads, queue depth 32 per CPU",
    host: {
      cpus: 72,
      baseNs: 1000,
      deviceIops: 8e6,
      treeLocks: 4,
      invalQueues: 1,
      note: "one socket of NVIDIA's Grace runs: 72 CPUs, 4 drives of 2 M IOPS behind one IOMMU; 1 µs of CPU per I/O outside the DMA API (assumed: interrupt-driven fio; polled io_uring does 2.58 M IOPS per core, Axboe 2020)",
    },
    cases: [
      { name: "nvme-4k-premapped", description: "buffers mapped once (the passthrough-like ceiling)", iommu: "strict", requestsPerIo: 1, premapped: true, workload: NVME_4K },
      { name: "nvme-4k-strict", description: "dma_map_sg / dma_unmap_sg per I/O, strict invalidation", iommu: "strict", requestsPerIo: 1, workload: NVME_4K },
      { name: "nvme-4k-lazy", description: "the same, invalidation deferred to the flush queue", iommu: "lazy", requestsPerIo: 1, workload: NVME_4K },
    ],
  },
  {
    name: "large-iova",
    description: "512 KiB random reads: one 512 KiB IOVA (above the range cache) or four 128 KiB ones (dma_opt_mapping_size splitting)",
    host: {
      cpus: 1,
      baseNs: 2000,
      deviceIops: 12_600,
      treeLocks: 1,
      invalQueues: 1,
      note: "one fio job (one CPU) at queue depth 32 on a drive of 6.6 GB/s (12,600 × 512 KiB per second); 2 µs of CPU per request outside the DMA API (assumed)",
    },
    cases: [
      { name: "large-uncached", description: "512 KiB per request: IOVA from the tree, under its lock", iommu: "lazy", requestsPerIo: 1, sg: { entryBytes: 512 * KiB, iterations: 300 } },
      { name: "large-cached", description: "four 128 KiB requests: IOVAs from the range cache", iommu: "lazy", requestsPerIo: 4, sg: { entryBytes: 128 * KiB, iterations: 1200 } },
    ],
  },
  {
    name: "virtio-bw",
    description: "64 KiB random writes from scattered pages (16 segments), 16 jobs: bandwidth against the host's",
    host: {
      cpus: 16,
      baseNs: 1000,
      deviceIops: 40_960,
      treeLocks: 1,
      invalQueues: 1,
      note: "Brucker's run: 16 jobs, one drive of 2.5 GiB/s (40,960 × 64 KiB per second), one virtio-iommu request queue; 1 µs of CPU per I/O outside the DMA API (assumed)",
    },
    cases: [
      { name: "virtio-host", description: "no per-I/O mapping (the host's own bandwidth)", iommu: "strict", requestsPerIo: 1, premapped: true, workload: virtio64k() },
      { name: "virtio-strict", description: "strict, every map_pages synced alone (before iotlb_sync_map)", iommu: "strict", requestsPerIo: 1, syncPerMap: true, workload: virtio64k() },
      { name: "virtio-strict-sync-map", description: "strict, one iotlb_sync_map per request", iommu: "strict", requestsPerIo: 1, workload: virtio64k() },
      { name: "virtio-lazy", description: "lazy: unmaps batched by the flush queue", iommu: "lazy", requestsPerIo: 1, workload: virtio64k() },
    ],
  },
];

function virtio64k(): Partial<NvmeWorkload> {
  return { ops: 500, bsMin: 64 * KiB, readPct: 0, queueDepth: 16, layout: "scattered", order: "random" };
}

const NVIDIA = "NVIDIA Grace, 2 sockets × 4 Samsung PM1743, 4 KiB random reads: passthrough 16.5 M, lazy 16.4 M, strict 2.8 M IOPS (NVIDIA/NV-Kernels PR #182, 2025)";
const BRUCKER = "virtio-iommu, NVMe passed through to a KVM guest, 16 jobs × QD16 64 KiB randwrite, bandwidth vs host: strict 81.3 %, strict+sync_map 92.7 %, lazy+sync_map 99.9 % (J-P. Brucker, LKML 20230802123612.GA6142@myrica)";

/** Published macro results the calibration is checked against (figures are ratios to the group's baseline). */
export const PUBLISHED_FIGURES: readonly PublishedFigure[] = [
  { figure: "nvme-4k-strict.ratio", profile: "smmuv3", value: 2.8 / 16.5, source: NVIDIA },
  { figure: "nvme-4k-lazy.ratio", profile: "smmuv3", value: 16.4 / 16.5, source: NVIDIA },
  { figure: "virtio-strict.ratio", profile: "virtio-iommu", value: 0.813, source: BRUCKER, fitted: true },
  { figure: "virtio-strict-sync-map.ratio", profile: "virtio-iommu", value: 0.927, source: BRUCKER },
  { figure: "virtio-lazy.ratio", profile: "virtio-iommu", value: 0.999, source: BRUCKER },
  {
    figure: "large-cached.ratio",
    profile: "amd-vi",
    value: 6607 / 6612,
    source: "bare-metal EPYC 9124 (AMD-Vi), Samsung PM9A3, 512 KiB random reads QD32: 6607 MiB/s split at 128 KiB vs 6612 unsplit (nvme-pci max_hw_sectors measurement campaign, 2026)",
  },
  {
    figure: "large-cached.ratio",
    profile: "vtd-caching-mode",
    value: 1 / 1.89,
    source: "512 KiB random reads in a KVM guest with an emulated VT-d and a RAM-backed emulated NVMe: +89 % once nvme-pci stopped splitting at dma_opt_mapping_size (commit 358580dd598b, 'nvme-pci: don't hard-cap max_hw_sectors by the DMA-optimal size'); that drive is not the group's 6.6 GB/s one",
  },
];

/** One case on one profile. */
export interface CalibrationFigure {
  readonly group: string;
  readonly name: string;
  readonly profile: CostProfileName;
  /** Modelled I/Os per second (an I/O being `requestsPerIo` requests). */
  readonly iops: number;
  /** iops over the group baseline's on the same profile. */
  readonly ratio: number;
  readonly bottleneck: ThroughputResult["bottleneck"];
  /** Modelled ns per I/O of DMA API work, and the part resting on assumed rows. */
  readonly dmaNs: number;
  readonly assumedNs: number;
  /** The rows this figure rests on: those carrying most of its cost, and every shared one. */
  readonly restsOn: readonly { readonly counter: CounterName; readonly ns: number; readonly assumed: boolean }[];
}

export interface CalibrationReport {
  readonly groups: readonly CalibrationGroup[];
  readonly profiles: readonly CostProfileName[];
  readonly figures: readonly CalibrationFigure[];
  /** Per case, the counters of one request (the same on every profile). */
  readonly countersPerRequest: Readonly<Record<string, Readonly<Partial<Record<CounterName, number>>>>>;
}

/** The profiles a calibration prices: every named one but `default` (which is one of them). */
export const CALIBRATION_PROFILES: readonly CostProfileName[] = COST_PROFILE_NAMES.filter((n) => n !== "default");

function scenarioFor(c: CalibrationCase): Scenario {
  const base = builtinScenario("nvme-4k-randread");
  if (base?.workload.kind !== "nvme") throw new Error("calibrate: the built-in nvme-4k-randread scenario is missing");
  // The NVMe driver caps a request at dma_opt_mapping_size (nvme-pci since 3710e2b056cb), so a 512 KiB
  // IOVA comes from a one-entry sg table mapped with dma_map_sgtable, as a driver without the cap maps it.
  if (c.sg !== undefined) {
    const device = base.workload.device;
    return {
      ...base,
      name: c.name,
      description: c.description,
      // A driver mapping 512 KiB segments says so (dma_set_max_seg_size); PCI's default is 64 KiB.
      kernel: { ...base.kernel, devices: { [device]: { maxSegmentSize: c.sg.entryBytes } } },
      workload: { kind: "sg", device, entries: 1, entryBytes: c.sg.entryBytes, layout: "contiguous", iterations: c.sg.iterations },
    };
  }
  return { ...base, name: c.name, description: c.description, workload: { ...base.workload, ...c.workload } };
}

/** Counters per request of one case, from one verified run (empty for premapped buffers). */
function countersOf(c: CalibrationCase): Partial<Record<CounterName, number>> {
  if (c.premapped === true) return {};
  const s = scenarioFor(c);
  const r = runScenario(s, { api: "classic", iommu: c.iommu });
  if (!r.ok) throw new Error(`calibrate: scenario ${c.name} failed its checks: ${r.checks.filter((k) => !k.ok).map((k) => k.name).join(", ")}`);
  const ops = s.workload.kind === "nvme" ? s.workload.ops : s.workload.kind === "sg" ? (s.workload.iterations ?? 1) : 1;
  const counts = { ...(r.counters as Partial<Record<CounterName, number>>) };
  if (c.syncPerMap === true) counts.IotlbSyncMap = counts.IommuMapCalls ?? 0;
  const out: Partial<Record<CounterName, number>> = {};
  for (const [k, v] of Object.entries(counts) as [CounterName, number][]) out[k] = v / ops;
  return out;
}

/** Per case, the counters of one request: every case run once (a premapped case does no DMA API work). */
export function measureCases(groups: readonly CalibrationGroup[] = CALIBRATION_GROUPS): Record<string, Partial<Record<CounterName, number>>> {
  const out: Record<string, Partial<Record<CounterName, number>>> = {};
  for (const g of groups) for (const c of g.cases) out[c.name] = countersOf(c);
  return out;
}

/** How a sweep changes the profiles: absolute overrides on every profile, or factors on assumed rows only. */
export interface ProfileAdjustment {
  readonly overrides?: CostOverrides;
  /** Multiplies a row's figure (and its shared part) wherever the row is assumed. */
  readonly scaleAssumed?: Readonly<Partial<Record<CounterName, number>>>;
}

function adjusted(profile: CostProfileName, adjust: ProfileAdjustment): CostProfile {
  const rows: Record<string, CostRow> = { ...costProfile(profile, adjust.overrides ?? {}) };
  for (const [counter, factor] of Object.entries(adjust.scaleAssumed ?? {}) as [CounterName, number][]) {
    const row = rows[counter];
    if (row?.assumed !== true) continue;
    rows[counter] = { ...row, ns: row.ns * factor, ...(row.shared === undefined ? {} : { shared: { resource: row.shared.resource, ns: row.shared.ns * factor } }) };
  }
  return rows;
}

/** Prices measured counters on each profile and models the group's host. Pure: no run, no clock. */
export function priceCalibration(
  countersPerRequest: Readonly<Record<string, Readonly<Partial<Record<CounterName, number>>>>>,
  profiles: readonly CostProfileName[] = CALIBRATION_PROFILES,
  groups: readonly CalibrationGroup[] = CALIBRATION_GROUPS,
  adjust: ProfileAdjustment = {},
): CalibrationReport {
  const figures: CalibrationFigure[] = [];
  for (const g of groups) {
    for (const profile of profiles) {
      const rows = adjusted(profile, adjust);
      const sharedCounters = new Set(Object.values(rows).filter((row) => row.shared !== undefined).map((row) => row.counter));
      let baseline = 0;
      for (const c of g.cases) {
        const report = priceCounts(countersPerRequest[c.name] ?? {}, rows);
        const t = modelThroughput({
          cpus: g.host.cpus,
          report,
          ios: 1,
          baseNs: g.host.baseNs,
          deviceIops: g.host.deviceIops * c.requestsPerIo,
          instances: { "iova-tree-lock": g.host.treeLocks, "inval-queue": g.host.invalQueues },
        });
        const iops = t.iops / c.requestsPerIo;
        if (baseline === 0) baseline = iops;
        const restsOn = report.lines
          .filter((l) => l.ns >= 0.1 * report.totalNs || (sharedCounters.has(l.counter) && l.ns >= 0.05 * report.totalNs))
          .sort((a, b) => b.ns - a.ns)
          .slice(0, 4)
          .map((l) => ({ counter: l.counter, ns: l.ns * c.requestsPerIo, assumed: l.assumed }));
        figures.push({
          group: g.name,
          name: c.name,
          profile,
          iops,
          ratio: iops / baseline,
          bottleneck: t.bottleneck,
          dmaNs: report.totalNs * c.requestsPerIo,
          assumedNs: report.assumedNs * c.requestsPerIo,
          restsOn,
        });
      }
    }
  }
  return { groups, profiles, figures, countersPerRequest };
}

/** Runs every calibration case once and prices it on each profile. Deterministic: no clock, seeded runs. */
export function calibrate(
  profiles: readonly CostProfileName[] = CALIBRATION_PROFILES,
  groups: readonly CalibrationGroup[] = CALIBRATION_GROUPS,
  /** Per-event overrides on every profile. */
  overrides: CostOverrides = {},
): CalibrationReport {
  return priceCalibration(measureCases(groups), profiles, groups, { overrides });
}

/** An expectation: `[profile/]case.iops|ratio` = value; without a profile it applies to every profile. */
export interface Expectation {
  readonly profile?: CostProfileName;
  readonly name: string;
  readonly metric: "iops" | "ratio";
  readonly value: number;
  readonly source: string;
  readonly fitted?: boolean;
}

/** Parses `--expect` values; undefined-free: a bad one throws with what was expected. */
export function parseExpectation(text: string, known: readonly string[]): Expectation {
  const m = /^(?:([a-z0-9-]+)\/)?([a-z0-9-]+)\.(iops|ratio)=([0-9.]+(?:e[0-9]+)?)([kKmM]?)$/.exec(text);
  const bad = (why: string): Error => new Error(`--expect ${JSON.stringify(text)}: ${why}`);
  if (m === null) throw bad("expected [profile/]case.iops=N or [profile/]case.ratio=N, such as smmuv3/nvme-4k-strict.ratio=0.17 or nvme-4k-lazy.iops=2.5M");
  const [, profile, name = "", metric, num = "", suffix = ""] = m;
  if (profile !== undefined && !(COST_PROFILE_NAMES as readonly string[]).includes(profile)) throw bad(`no profile ${profile} (profiles: ${COST_PROFILE_NAMES.join(", ")})`);
  if (!known.includes(name)) throw bad(`no calibration case ${name} (cases: ${known.join(", ")})`);
  const scale = suffix === "" ? 1 : suffix.toLowerCase() === "k" ? 1e3 : 1e6;
  const value = Number(num) * scale;
  if (!Number.isFinite(value) || value <= 0) throw bad("the value must be a number > 0");
  return { ...(profile === undefined ? {} : { profile: profile as CostProfileName }), name, metric: metric === "iops" ? "iops" : "ratio", value, source: "--expect" };
}

export interface ExpectationResult {
  readonly expectation: Expectation;
  readonly profile: CostProfileName;
  readonly modelled: number;
  /** (modelled − expected) / expected. */
  readonly error: number;
}

/** Each expectation against the figure it names, on its profile (or on each profile priced). */
export function checkExpectations(report: CalibrationReport, expectations: readonly Expectation[]): ExpectationResult[] {
  const out: ExpectationResult[] = [];
  for (const e of expectations) {
    const profile = e.profile === "default" ? costProfileTarget() : e.profile;
    for (const f of report.figures) {
      if (f.name !== e.name || (profile !== undefined && f.profile !== profile)) continue;
      const modelled = e.metric === "iops" ? f.iops : f.ratio;
      out.push({ expectation: e, profile: f.profile, modelled, error: (modelled - e.value) / e.value });
    }
  }
  return out;
}

function costProfileTarget(): CostProfileName {
  const d = costProfiles.default;
  return CALIBRATION_PROFILES.find((n) => costProfiles[n] === d) ?? "default";
}

/** The published figures as expectations. */
export function publishedExpectations(): Expectation[] {
  return PUBLISHED_FIGURES.map((p) => {
    const [name = "", metric = ""] = p.figure.split(".");
    return { profile: p.profile, name, metric: metric === "iops" ? "iops" : "ratio", value: p.value, source: p.source, ...(p.fitted === true ? { fitted: true } : {}) };
  });
}

export function caseNames(groups: readonly CalibrationGroup[] = CALIBRATION_GROUPS): string[] {
  return groups.flatMap((g) => g.cases.map((c) => c.name));
}
