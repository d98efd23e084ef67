import { costProfiles } from "@dmasim/dma";
import type { CostProfileName } from "@dmasim/dma";
import type { CalibrationReport, ExpectationResult } from "./calibrate.js";
import { table } from "./format.js";

function iops(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

function pct(e: number): string {
  return `${e >= 0 ? "+" : ""}${(e * 100).toFixed(1)} %`;
}

/** The rows a case's figures rest on, over every profile: counter, and the profiles where it is assumed. */
function restsOn(report: CalibrationReport, name: string): string {
  const rows = new Map<string, Set<CostProfileName>>();
  for (const f of report.figures) {
    if (f.name !== name) continue;
    for (const r of f.restsOn) {
      const assumed = rows.get(r.counter) ?? new Set<CostProfileName>();
      if (r.assumed) assumed.add(f.profile);
      rows.set(r.counter, assumed);
    }
  }
  if (rows.size === 0) return "no DMA API work per I/O";
  return [...rows]
    .map(([counter, assumed]) => {
      const shared = report.profiles.map((p) => costProfiles[p][counter]?.shared?.resource).find((r) => r !== undefined);
      const tags = [shared === undefined ? "" : `queued on ${shared}`, assumed.size === 0 ? "" : assumed.size === report.profiles.length ? "assumed" : `assumed on ${[...assumed].join(", ")}`].filter((t) => t !== "");
      return tags.length === 0 ? counter : `${counter} (${tags.join("; ")})`;
    })
    .join(", ");
}

function expectationTable(title: string, results: readonly ExpectationResult[]): string {
  if (results.length === 0) return "";
  const rows = results.map((r) => [
    `${r.profile}/${r.expectation.name}.${r.expectation.metric}${r.expectation.fitted === true ? " (fitted)" : ""}`,
    r.expectation.metric === "iops" ? iops(r.expectation.value) : r.expectation.value.toFixed(3),
    r.expectation.metric === "iops" ? iops(r.modelled) : r.modelled.toFixed(3),
    pct(r.error),
  ]);
  const sources = [...new Set(results.map((r) => r.expectation.source))].filter((s) => s !== "--expect");
  return [title, table(["figure", "expected", "modelled", "error"], rows), ...sources.map((s) => `  source: ${s}`)].join("\n");
}

/** The calibration as text: per group a table of modelled IOPS (ratio to the baseline) by profile. */
export function renderCalibration(report: CalibrationReport, published: readonly ExpectationResult[], expected: readonly ExpectationResult[]): string {
  const out: string[] = ["dmasim calibrate — modelled IOPS of the calibration scenarios on each cost profile (ratio to the group's first row)", ""];
  for (const g of report.groups) {
    out.push(`== ${g.name}: ${g.description}`, `   host: ${g.host.note}`);
    const rows = g.cases.map((c) => [
      c.name,
      ...report.profiles.map((p) => {
        const f = report.figures.find((x) => x.name === c.name && x.profile === p);
        return f === undefined ? "" : `${iops(f.iops)} (${f.ratio.toFixed(2)})${f.bottleneck === "device" || f.bottleneck === "cpu" ? "" : " q"}`;
      }),
    ]);
    out.push(table(["case", ...report.profiles], rows));
    for (const c of g.cases) out.push(`   ${c.name} rests on: ${restsOn(report, c.name)}`);
    out.push("");
  }
  out.push("q: limited by a shared resource (the invalidation queue or the IOVA tree lock) rather than the CPUs or the device.", "");
  const sections = [expectationTable("Published figures (ratios) against the model:", published), expectationTable("--expect:", expected)].filter((s) => s !== "");
  return [...out, ...sections.flatMap((s) => [s, ""])].join("\n").trimEnd();
}
