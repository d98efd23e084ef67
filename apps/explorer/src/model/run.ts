import type { Host, RunLog, RunLogEntry, RunResult, Scenario } from "@dmasim/scenario";
import { defaultAxes, RunLogRecorder, sweep } from "@dmasim/scenario";
import type { Platform } from "@dmasim/pcie-p2p";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { LogEvent } from "./events.js";
import { DEFAULT_PGSIZE_BITMAP, Replay, type ReplayContext } from "./replay.js";
import { topologyOf, type Topology } from "./topology.js";

/** What the IOMMU of a run looked like at its end (read from the live Host). */
export interface IommuInfo {
  readonly unit: string;
  readonly pgsizeBitmap: number;
  readonly levels: number;
  readonly iotlbCapacity: number;
}

/** One run of a scenario as the page shows it. */
export interface RunView {
  readonly label: string;
  readonly events: readonly LogEvent[];
  readonly droppedEvents: number;
  readonly result: RunResult | undefined;
  readonly topology: Topology;
  readonly ctx: ReplayContext;
  readonly iommu: IommuInfo | undefined;
  readonly replay: Replay;
}

function platformInfo(platform: Platform): { deviceDomain: Record<string, number>; iommu: IommuInfo | undefined } {
  const deviceDomain: Record<string, number> = {};
  for (const ep of platform.endpoints) {
    const d = platform.iommuFor(ep.bdf)?.domainOf(ep.bdf);
    if (d?.type === "paging") deviceDomain[ep.bdf] = d.id;
  }
  const unit = platform.iommus[0];
  const iommu =
    unit === undefined
      ? undefined
      : {
          unit: unit.name,
          pgsizeBitmap: unit.pgsizeBitmap,
          // The unit's page-table depth: every paging domain of it has this many levels (Iommu's rule).
          levels: Math.ceil((unit.vaBits - 12) / 9),
          iotlbCapacity: unit.iotlb.capacity,
        };
  return { deviceDomain, iommu };
}

function viewOf(label: string, events: readonly LogEvent[], dropped: number, result: RunResult | undefined, topology: Topology, deviceDomain: Record<string, number>, iommu: IommuInfo | undefined): RunView {
  const ctx: ReplayContext = { deviceDomain, pgsizeBitmap: iommu?.pgsizeBitmap ?? DEFAULT_PGSIZE_BITMAP };
  return { label, events, droppedEvents: dropped, result, topology, ctx, iommu, replay: new Replay(events, ctx) };
}

/**
 * Runs a scenario in the page (every API × IOMMU mode of its axes, as `dmasim run` does), recording each
 * run's events and keeping each run's Host to read its topology, its devices' domains and its IOMMU.
 */
export function runInPage(s: Scenario, maxEventsPerRun = 1_000_000): { log: RunLog; runs: RunView[] } {
  const rec = new RunLogRecorder(s, { maxEventsPerRun });
  const hosts: Host[] = [];
  const results = sweep(s, defaultAxes(s), {
    onHost: (label, host) => {
      hosts.push(host);
      rec.attach(label, host);
    },
  });
  rec.detach();
  const log = rec.toJSON(results);
  const runs = log.runs.map((r, i) => {
    const host = hosts[i];
    const info = host === undefined ? undefined : platformInfo(host.platform);
    const topology = host === undefined ? topologyFromSpec(s) : topologyOf(s.platform, host.platform.endpoints, host.platform.hostBridges);
    return viewOf(r.label, r.events, r.droppedEvents, r.result, topology, info?.deviceDomain ?? {}, info?.iommu);
  });
  return { log, runs };
}

function topologyFromSpec(s: Scenario): Topology {
  const p = createPlatform(s.platform);
  return topologyOf(s.platform, p.endpoints, p.hostBridges);
}

/**
 * The runs of a recorded log (`dmasim run --record`), without re-running it: the topology is built from
 * the scenario's platform, and each device's domain is read from the IOTLB lookups it made (a log
 * without them: every device behind the IOMMU is taken to use the domain of the log's first map).
 */
export function runsOfLog(log: RunLog): RunView[] {
  const p = createPlatform(log.scenario.platform);
  const topology = topologyOf(log.scenario.platform, p.endpoints, p.hostBridges);
  return log.runs.map((r: RunLogEntry) => {
    const deviceDomain: Record<string, number> = {};
    // IOTLB lookups name the device and its domain; a log without them gets the first map's domain.
    for (const e of r.events) if (e.type === "iotlb.lookup") deviceDomain[e.device] ??= e.domain;
    const firstMap = r.events.find((e) => e.type === "iommu.map");
    if (Object.keys(deviceDomain).length === 0 && firstMap?.type === "iommu.map") for (const n of topology.nodes) if (n.behindIommu) deviceDomain[n.id] = firstMap.domain;
    return viewOf(r.label, r.events, r.droppedEvents, r.result, topology, deviceDomain, undefined);
  });
}
