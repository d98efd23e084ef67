import { costProfiles } from "@dmasim/dma";
import type { CounterName } from "@dmasim/dma";
import { CALIBRATION_GROUPS, CALIBRATION_PROFILES, priceCalibration } from "./calibrate.js";
import type { CalibrationFigure, CalibrationReport } from "./calibrate.js";

/**
 * Which conclusions of the calibration survive the assumed rows being wrong: every assumed row is
 * scaled by each factor (on every profile where it is assumed, shared part included), the measured
 * counters re-priced, and each conclusion tested again. A conclusion that holds everywhere is robust
 * to the assumptions; one that breaks names the rows and factors that break it.
 */
export interface Conclusion {
  readonly id: string;
  readonly text: string;
  readonly holds: (report: CalibrationReport) => boolean;
}

function fig(r: CalibrationReport, profile: string, name: string): CalibrationFigure {
  const f = r.figures.find((x) => x.profile === profile && x.name === name);
  if (f === undefined) throw new Error(`calibrate: no figure ${profile}/${name}`);
  return f;
}

const BARE = ["vtd", "smmuv3", "amd-vi"] as const;
const GUESTS = ["vtd-caching-mode", "virtio-iommu"] as const;

export const CONCLUSIONS: readonly Conclusion[] = [
  {
    id: "lazy-beats-strict",
    text: "NVMe 4 KiB: lazy gives more IOPS than strict on every profile",
    holds: (r) => CALIBRATION_PROFILES.every((p) => fig(r, p, "nvme-4k-lazy").iops > fig(r, p, "nvme-4k-strict").iops),
  },
  {
    id: "strict-queue-bound",
    text: "NVMe 4 KiB strict on 72 CPUs is limited by the invalidation queue, not the CPUs, on every profile",
    holds: (r) => CALIBRATION_PROFILES.every((p) => fig(r, p, "nvme-4k-strict").bottleneck === "inval-queue"),
  },
  {
    id: "strict-under-half",
    text: "NVMe 4 KiB strict reaches less than half of the premapped ceiling on bare metal",
    holds: (r) => BARE.every((p) => fig(r, p, "nvme-4k-strict").ratio < 0.5),
  },
  {
    id: "bare-lazy-at-drive",
    text: "NVMe 4 KiB lazy reaches the drives on bare metal (within 2 % of premapped)",
    holds: (r) => BARE.every((p) => fig(r, p, "nvme-4k-lazy").ratio >= 0.98),
  },
  {
    id: "guest-lazy-short",
    text: "NVMe 4 KiB lazy in a guest (caching-mode VT-d, virtio-iommu) stays under half the drives' IOPS",
    holds: (r) => GUESTS.every((p) => fig(r, p, "nvme-4k-lazy").ratio < 0.5),
  },
  {
    id: "sync-map-helps",
    text: "virtio-iommu: one iotlb_sync_map per request beats a sync per map_pages call",
    holds: (r) => fig(r, "virtio-iommu", "virtio-strict-sync-map").iops > fig(r, "virtio-iommu", "virtio-strict").iops,
  },
  {
    id: "virtio-lazy-best",
    text: "virtio-iommu: lazy is at least as fast as strict with sync_map",
    holds: (r) => fig(r, "virtio-iommu", "virtio-lazy").iops >= fig(r, "virtio-iommu", "virtio-strict-sync-map").iops,
  },
  {
    id: "split-free-bare",
    text: "512 KiB reads split at 128 KiB (IOVAs from the range cache) cost nothing on bare metal (within 1 %)",
    holds: (r) => BARE.every((p) => fig(r, p, "large-cached").ratio >= 0.99),
  },
];

export interface SweepOutcome {
  readonly conclusion: Conclusion;
  readonly holdsAtBase: boolean;
  /**
   * The assumed rows (a counter, or `baseNs`: the hosts' assumed CPU time per I/O outside the DMA API)
   * and factors under which the conclusion no longer holds as it does at the base.
   */
  readonly flips: readonly { readonly counter: CounterName | "baseNs"; readonly factor: number }[];
}

/** Counters assumed on at least one calibrated profile. */
export function assumedCounters(): CounterName[] {
  const out = new Set<CounterName>();
  for (const p of CALIBRATION_PROFILES) for (const row of Object.values(costProfiles[p])) if (row.assumed) out.add(row.counter);
  return [...out];
}

/** Each conclusion at the base and with each assumed row scaled by each factor (counters measured once). */
export function sweepAssumed(countersPerRequest: CalibrationReport["countersPerRequest"], factors: readonly number[] = [0.25, 4]): SweepOutcome[] {
  const base = priceCalibration(countersPerRequest, CALIBRATION_PROFILES, CALIBRATION_GROUPS);
  const variants: { counter: CounterName | "baseNs"; factor: number; report: CalibrationReport }[] = assumedCounters().flatMap((counter) =>
    factors.map((factor) => ({ counter, factor, report: priceCalibration(countersPerRequest, CALIBRATION_PROFILES, CALIBRATION_GROUPS, { scaleAssumed: { [counter]: factor } }) })),
  );
  for (const factor of factors) {
    const groups = CALIBRATION_GROUPS.map((g) => ({ ...g, host: { ...g.host, baseNs: g.host.baseNs * factor } }));
    variants.push({ counter: "baseNs", factor, report: priceCalibration(countersPerRequest, CALIBRATION_PROFILES, groups) });
  }
  return CONCLUSIONS.map((conclusion) => {
    const holdsAtBase = conclusion.holds(base);
    return { conclusion, holdsAtBase, flips: variants.filter((v) => conclusion.holds(v.report) !== holdsAtBase).map(({ counter, factor }) => ({ counter, factor })) };
  });
}

export function renderSweep(outcomes: readonly SweepOutcome[], factors: readonly number[]): string {
  const lines = [`Conclusions, with every assumed row and the hosts' baseNs scaled by ${factors.map((f) => `×${String(f)}`).join(" and ")} (one at a time):`];
  for (const o of outcomes) {
    const verdict = o.flips.length === 0 ? "robust" : `depends on ${o.flips.map((f) => `${f.counter} ×${String(f.factor)}`).join(", ")}`;
    lines.push(`  [${o.holdsAtBase ? "holds" : "fails"}] ${o.conclusion.text}: ${verdict}`);
  }
  return lines.join("\n");
}
