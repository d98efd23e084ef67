import { parseArgs } from "node:util";
import { odpComparisonTable } from "@dmasim/rdma";
import { builtinScenario, RDMA_ODP_TESTS, runScenario, ScenarioError, ScenarioSetupError, validateScenario } from "@dmasim/scenario";
import type { Api, RdmaOdpTest, RunResult, Scenario } from "@dmasim/scenario";

export const HELP = `rdma-odp — an mlx5-like NIC with on-demand paging, modelled (@dmasim/rdma)

Usage:
  rdma-odp test-odp [<case>|all]   run rdma-core's tests/test_odp.py RC cases (default: all)
  rdma-odp hodgepodge              one ODP MR over anonymous pages, a THP, a file, two peer BARs and
                                   GPU-migrated pages, read and written while the process changes
  rdma-odp mixed                   dmasim's proposal: ONE MR over that user memory and two dma-bufs (GPU
                                   VRAM that migrates, a VFIO BAR that is revoked); per-source quiescence
                                   and first-DMA times
  rdma-odp compare                 ODP before the two-step API vs hmm_dma_map vs batched, as a table

Cases: ${testCases().join(", ")}

Options:
  --api <api>            test-odp, hodgepodge: classic (ODP before the two-step API: dma_map_page per
                         page), two-step (hmm_dma_map) or both (default both; two-step adds the batched variant)
  --iommu <mode>         strict or lazy (default strict)
  --implicit             test-odp, hodgepodge: implicit ODP MRs (1 GiB children on demand)
  --iterations <n>       test-odp: iterations per case, each after madvise(MADV_DONTNEED) (default 10)
  --message-bytes <n>    test-odp: bytes per message, 8 to 16384 (default 1024)
  --sizes <list>         compare: MR sizes, e.g. 64K,2M,64M (default 64K,2M,64M)
  --wqe <size>           compare: bytes per RDMA WRITE (default 64K)
  -v, --verbose          print every check of every run
  -h, --help             this text

Exit status: 0 when every check held, 1 when a check failed, 2 on bad usage.

Examples:
  rdma-odp test-odp
  rdma-odp test-odp rdma-read --implicit --iterations 100
  rdma-odp hodgepodge --iommu lazy -v
  rdma-odp mixed -v
  rdma-odp compare --sizes 64K,2M,64M
`;

function testCases(): RdmaOdpTest[] {
  // test_odp.py's cases only: the dmabuf MR tests are the rdma-dmabuf-* built-ins of `dmasim`, the mixed MR has its own command.
  return RDMA_ODP_TESTS.filter((t) => t !== "hodgepodge" && t !== "nic-workload" && t !== "mixed-mr" && !t.startsWith("dmabuf-"));
}

/** Bad usage: one line on stderr, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const SIZE = /^(\d+)([KMG]?)$/i;

function size(flag: string, text: string): number {
  const m = SIZE.exec(text);
  if (m === null) throw new UsageError(`${flag} ${JSON.stringify(text)} is invalid: expected a size such as 4096, 64K or 2M`);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m[2] ?? "").toUpperCase()] ?? 1;
  return Number(m[1]) * unit;
}

function count(flag: string, text: string | undefined, dflt: number): number {
  if (text === undefined) return dflt;
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} ${JSON.stringify(text)} is invalid: expected a whole number`);
  return Number(text);
}

function apis(text: string | undefined): Api[] {
  if (text === undefined || text === "both") return ["classic", "two-step"];
  if (text === "classic" || text === "two-step") return [text];
  throw new UsageError(`--api ${JSON.stringify(text)} is invalid: expected classic, two-step or both`);
}

function iommu(text: string | undefined): "strict" | "lazy" {
  if (text === undefined || text === "strict" || text === "lazy") return text ?? "strict";
  throw new UsageError(`--iommu ${JSON.stringify(text)} is invalid: expected strict or lazy`);
}

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        api: { type: "string" },
        iommu: { type: "string" },
        implicit: { type: "boolean" },
        iterations: { type: "string" },
        "message-bytes": { type: "string" },
        sizes: { type: "string" },
        wqe: { type: "string" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    if (e instanceof TypeError) throw new UsageError(e.message.split("\n")[0] ?? e.message);
    throw e;
  }
}

/** One line per run: the verdict, then what the NIC did and what it cost. */
function runLine(label: string, r: RunResult): string {
  const m = r.metrics;
  const us = (v: number | undefined): string => (v === undefined ? "-" : `${(v / 1000).toFixed(1)} µs`);
  const parts = [`${r.api}/${r.iommu}`, r.ok ? "ok" : "FAILED", `${m.nicFaults ?? 0} NIC fault(s)`, `${(m.verifiedBytes ?? 0).toLocaleString("en-US")} bytes verified`, `per fault ${us(m.modelledFaultLatencyNs)}`];
  for (const src of ["mm", "gpu", "vfio"]) {
    const q = m[`${src}QuiescenceMaxNs`];
    if (q !== undefined) parts.push(`${src}: quiescence ≤ ${us(q)}, first DMA after ≤ ${us(m[`${src}FirstDmaMaxNs`])}`);
  }
  if (m.batchedIotlbSyncs !== undefined) parts.push(`batched: ${m.batchedIotlbSyncs} IOTLB sync(s) against ${r.counters.IotlbSyncMap ?? 0}, per fault ${us(m.batchedFaultLatencyNs)}`);
  return `${label.padEnd(20)} ${parts.join(", ")}`;
}

function checksOf(r: RunResult, verbose: boolean): string[] {
  return r.checks.filter((c) => verbose || !c.ok).map((c) => `    ${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}`);
}

function scenarioFor(test: RdmaOdpTest, patch: { implicit?: boolean; iterations?: number; messageBytes?: number }): Scenario {
  const name = test === "hodgepodge" ? "odp-hodgepodge" : test === "rc-traffic" && patch.implicit === true ? "odp-implicit" : `odp-${test}`;
  const s = builtinScenario(name);
  if (s?.workload.kind !== "rdma-odp") throw new Error(`no built-in ${name}`);
  // Validated again, so a value out of range is a one-line scenario error naming the field.
  return validateScenario({ ...s, workload: { ...s.workload, ...patch } });
}

/** Runs the app; returns the exit status. Never throws for bad input (a one-line error, status 2). */
export function main(argv: readonly string[], io: Io): number {
  try {
    return run(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`rdma-odp: ${e.message} (see --help)\n`);
      return 2;
    }
    if (e instanceof ScenarioError || e instanceof ScenarioSetupError) {
      io.err(`rdma-odp: ${e.message.split("\n").join("; ")}\n`);
      return 2;
    }
    throw e;
  }
}

function run(argv: readonly string[], io: Io): number {
  const { values: v, positionals } = parse(argv);
  if (v.help === true) {
    io.out(HELP);
    return 0;
  }
  const [command, ...rest] = positionals;
  const verbose = v.verbose === true;
  const only = (allowed: readonly string[]): void => {
    for (const k of Object.keys(v)) if (!allowed.includes(k) && k !== "verbose") throw new UsageError(`--${k} does not apply to ${command ?? "this command"}`);
  };
  switch (command) {
    case "test-odp": {
      only(["api", "iommu", "implicit", "iterations", "message-bytes"]);
      if (rest.length > 1) throw new UsageError(`one case at most, got ${rest.length}`);
      const which = rest[0] ?? "all";
      const cases = which === "all" ? testCases() : testCases().filter((t) => t === which);
      if (cases.length === 0) throw new UsageError(`no such case ${JSON.stringify(which)}: expected all or one of ${testCases().join(", ")}`);
      const patch = {
        ...(v.implicit === true ? { implicit: true } : {}),
        ...(v.iterations === undefined ? {} : { iterations: count("--iterations", v.iterations, 10) }),
        ...(v["message-bytes"] === undefined ? {} : { messageBytes: count("--message-bytes", v["message-bytes"], 1024) }),
      };
      if (v.implicit === true && which === "huge-pages") throw new UsageError("--implicit does not apply to huge-pages (test_odp.py registers it explicitly)");
      const todo = v.implicit === true ? cases.filter((t) => t !== "huge-pages") : cases;
      return runAll(
        todo.map((t) => [t, scenarioFor(t, patch)] as const),
        apis(v.api),
        iommu(v.iommu),
        verbose,
        io,
      );
    }
    case "hodgepodge": {
      only(["api", "iommu", "implicit"]);
      if (rest.length > 0) throw new UsageError(`hodgepodge takes no arguments, got ${JSON.stringify(rest[0])}`);
      const api = apis(v.api ?? "two-step");
      if (api.includes("classic")) throw new UsageError("--api classic does not apply to hodgepodge: ODP before the two-step API cannot map the peer BARs (P2P pages)");
      return runAll([["hodgepodge", scenarioFor("hodgepodge", v.implicit === true ? { implicit: true } : {})]], api, iommu(v.iommu), verbose, io);
    }
    case "mixed": {
      only(["iommu"]);
      if (rest.length > 0) throw new UsageError(`mixed takes no arguments, got ${JSON.stringify(rest[0])}`);
      const s = builtinScenario("odp-mixed-mr");
      if (s === undefined) throw new Error("no built-in odp-mixed-mr");
      return runAll([["mixed", s]], ["two-step"], iommu(v.iommu), verbose, io);
    }
    case "compare": {
      only(["sizes", "wqe"]);
      if (rest.length > 0) throw new UsageError(`compare takes no arguments, got ${JSON.stringify(rest[0])}`);
      const sizes = (v.sizes ?? "64K,2M,64M").split(",").map((x) => size("--sizes", x.trim()));
      const wqe = size("--wqe", v.wqe ?? "64K");
      for (const b of sizes) if (b < 4096 || b > 1024 ** 3 || b % 4096 !== 0) throw new UsageError(`--sizes ${b} is invalid: expected a multiple of 4 KiB from 4K to 1G`);
      if (wqe < 1 || wqe > 16 * 1024 ** 2) throw new UsageError(`--wqe ${wqe} is invalid: expected 1 byte to 16M`);
      io.out(`${odpComparisonTable(sizes, wqe)}\n`);
      return 0;
    }
    case undefined:
      throw new UsageError("no command: expected test-odp, hodgepodge, mixed or compare");
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}: expected test-odp, hodgepodge, mixed or compare`);
  }
}

function runAll(list: readonly (readonly [string, Scenario])[], api: readonly Api[], mode: "strict" | "lazy", verbose: boolean, io: Io): number {
  let failed = 0;
  let runs = 0;
  for (const [label, s] of list) {
    for (const a of api) {
      const r = runScenario(s, { api: a, iommu: mode });
      runs++;
      if (!r.ok) failed++;
      io.out(`${[runLine(label, r), ...checksOf(r, verbose)].join("\n")}\n`);
    }
  }
  io.out(failed === 0 ? `All ${runs} run(s) passed every check.\n` : `${failed} of ${runs} run(s) FAILED a check.\n`);
  return failed === 0 ? 0 : 1;
}
