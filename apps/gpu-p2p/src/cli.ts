import { parseArgs } from "node:util";
import { builtinScenario, runScenario, ScenarioError, ScenarioSetupError, validateScenario } from "@dmasim/scenario";
import type { Api, RunResult, Scenario } from "@dmasim/scenario";

export const HELP = `gpu-p2p — a GPU exporting dma-bufs to an NVMe drive and a NIC, modelled (@dmasim/dmabuf, @dmasim/nvme, @dmasim/rdma)

Usage:
  gpu-p2p nvme [<case>|all]   the drive reads and writes a GPU buffer by P2P (default: all)
  gpu-p2p workload            a GPU exports buffers to the drive and to a NIC (an RDMA MR on the
                              dma-buf, RDMA WRITE and READ); VRAM pressure evicts them with NVMe
                              commands in flight and mid-RDMA; VFIO revokes BAR ranges of both

Cases: ${Object.keys(CASES()).join(", ")}

Options:
  --api <api>        classic (the exporter's sg_table), two-step (the physical-range list the importer
                     maps itself with the dma_iova_* API) or both (default both)
  --bytes <size>     size of each GPU buffer, e.g. 2M (default: the scenario's, 2 MiB; VFIO: 1 MiB)
  -v, --verbose      print every check of every run
  -h, --help         this text

Every run checks each byte on the namespace and in the buffers, that no NVMe command failed, that every
RDMA WR completed as expected, that the dma-buf rule checker found nothing, and that nothing is left
mapped or attached. Each line gives the counters and the modelled time side by side.

Exit status: 0 when every check held, 1 when a check failed, 2 on bad usage.

Examples:
  gpu-p2p nvme
  gpu-p2p nvme migrate --api two-step -v
  gpu-p2p workload --bytes 4M
`;

/** The cases of `nvme` and the built-in scenario each runs. */
function CASES(): Record<string, string> {
  return { switch: "dmabuf-nvme-switch", "host-bridge": "dmabuf-nvme-host-bridge", migrate: "dmabuf-nvme-migrate", revoke: "dmabuf-nvme-revoke" };
}

/** Bad usage: one line on stderr, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Where the app writes: standard output and standard error. */
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

function apis(text: string | undefined): Api[] {
  if (text === undefined || text === "both") return ["classic", "two-step"];
  if (text === "classic" || text === "two-step") return [text];
  throw new UsageError(`--api ${JSON.stringify(text)} is invalid: expected classic, two-step or both`);
}

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        api: { type: "string" },
        bytes: { type: "string" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    if (e instanceof TypeError) throw new UsageError(e.message.split("\n")[0] ?? e.message);
    throw e;
  }
}

const mib = (v: number | undefined): string => `${((v ?? 0) / 1024 ** 2).toFixed(1)} MiB`;

/** One line per run: the verdict, what moved where, the counters and the modelled time side by side. */
function runLine(label: string, r: RunResult): string {
  const m = r.metrics;
  const c = r.counters;
  const parts = [
    `${r.api}/${r.iommu}`,
    r.ok ? "ok" : "FAILED",
    `${(m.verifiedBytes ?? 0).toLocaleString("en-US")} bytes verified`,
    `${m.nvmeCommands ?? 0} NVMe commands`,
    `P2P ${mib(m.bytesPeerViaSwitch)} via switch, ${mib(m.bytesPeerViaHostBridge)} via host bridge`,
    `${m.invalidations ?? 0} invalidation(s), ${mib(m.migratedBytes)} migrated, ${m.revokes ?? 0} revoke(s)`,
    `${(c.IovaAllocCache ?? 0) + (c.IovaAllocTree ?? 0)} IOVA alloc(s), ${c.PteWrites ?? 0} PTE writes, ${c.IotlbSyncMap ?? 0} IOTLB syncs`,
    `modelled ${(r.modelledNs / 1000).toFixed(1)} µs (fence waits ${((m.fenceWaitNs ?? 0) / 1000).toFixed(1)} µs)`,
  ];
  // The NIC of `workload`: RDMA WRs over its dmabuf MRs, the MR's faults and maps, revoked MRs, and the
  // virtual time its WRs took (faults, UMRs and fence waits included).
  if (m.rdmaWrs !== undefined) {
    parts.push(`NIC ${m.rdmaWrs} RDMA WR(s), ${m.nicMrFaults ?? 0} MR fault(s), ${m.nicRebinds ?? 0} map(s), ${m.nicMrRevokes ?? 0} MR(s) revoked, WRs ${((m.nicWrNs ?? 0) / 1000).toFixed(1)} µs`);
  }
  return `${label.padEnd(12)} ${parts.join(", ")}`;
}

function checksOf(r: RunResult, verbose: boolean): string[] {
  return r.checks.filter((c) => verbose || !c.ok).map((c) => `    ${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}`);
}

function scenarioFor(name: string, bytes: number | undefined): Scenario {
  const s = builtinScenario(name);
  if (s?.workload.kind !== "dmabuf") throw new Error(`no built-in ${name}`);
  // Validated again, so a size out of range is a one-line scenario error naming the field.
  return validateScenario({ ...s, workload: { ...s.workload, ...(bytes === undefined ? {} : { bytes }) } });
}

/** Runs the app; returns the exit status. Never throws for bad input (a one-line error, status 2). */
export function main(argv: readonly string[], io: Io): number {
  try {
    return run(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`gpu-p2p: ${e.message} (see --help)\n`);
      return 2;
    }
    if (e instanceof ScenarioError || e instanceof ScenarioSetupError) {
      io.err(`gpu-p2p: ${e.message.split("\n").join("; ")}\n`);
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
  const bytes = v.bytes === undefined ? undefined : size("--bytes", v.bytes);
  switch (command) {
    case "nvme": {
      if (rest.length > 1) throw new UsageError(`one case at most, got ${rest.length}`);
      const which = rest[0] ?? "all";
      const cases = Object.entries(CASES()).filter(([k]) => which === "all" || k === which);
      if (cases.length === 0) throw new UsageError(`no such case ${JSON.stringify(which)}: expected all or one of ${Object.keys(CASES()).join(", ")}`);
      return runAll(
        cases.map(([k, name]) => [k, scenarioFor(name, bytes)] as const),
        apis(v.api),
        verbose,
        io,
      );
    }
    case "workload": {
      if (rest.length > 0) throw new UsageError(`workload takes no arguments, got ${JSON.stringify(rest[0])}`);
      return runAll([["workload", scenarioFor("dmabuf-nvme-nic-pressure", bytes)]], apis(v.api), verbose, io);
    }
    case undefined:
      throw new UsageError("no command: expected nvme or workload");
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}: expected nvme or workload`);
  }
}

function runAll(list: readonly (readonly [string, Scenario])[], api: readonly Api[], verbose: boolean, io: Io): number {
  let failed = 0;
  let runs = 0;
  for (const [label, s] of list) {
    for (const a of api) {
      const r = runScenario(s, { api: a, iommu: "strict" });
      runs++;
      if (!r.ok) failed++;
      io.out(`${[runLine(label, r), ...checksOf(r, verbose)].join("\n")}\n`);
    }
  }
  io.out(failed === 0 ? `All ${runs} run(s) passed every check.\n` : `${failed} of ${runs} run(s) FAILED a check.\n`);
  return failed === 0 ? 0 : 1;
}
