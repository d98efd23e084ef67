import { createPlatform } from "@dmasim/pcie-p2p";
import type { PlatformSpec } from "@dmasim/pcie-p2p";
import type { ScenarioIssue } from "./errors.js";
import type { RdmaOdpWorkload, Scenario } from "./types.js";

const PAGE = 4096;
const MiB = 1024 * 1024;

/**
 * The platform part, checked by @dmasim/pcie-p2p's own validator (createPlatform refuses a bad spec with a
 * PlatformSpecError naming the field). Returns the endpoints' BDFs when the spec is valid.
 */
export function platformIssues(spec: unknown, at: string, issues: ScenarioIssue[]): Set<string> | undefined {
  try {
    const platform = createPlatform(spec as PlatformSpec);
    return new Set(platform.endpoints.map((e) => e.bdf));
  } catch (e) {
    if (!(e instanceof Error)) throw e;
    const f = e as Error & { path?: unknown; argument?: unknown; value?: unknown; expected?: unknown };
    const sub = typeof f.path === "string" ? f.path : typeof f.argument === "string" ? f.argument.replace(/^spec\.?/, "") : "";
    const expected = typeof f.expected === "string" ? f.expected : (e.message.split(" is invalid: expected ")[1] ?? e.message);
    issues.push({ path: sub === "" ? at : `${at}.${sub}`, value: "value" in f ? f.value : spec, expected });
    return undefined;
  }
}

/**
 * What the schema cannot say field by field: sizes against each other, a BDF that is not on the platform,
 * and fields the workload would ignore (an error, not silence).
 */
export function crossFieldIssues(s: Scenario, at: string, bdfs: Set<string> | undefined, issues: ScenarioIssue[]): void {
  const w = s.workload;
  const wAt = `${at}.workload`;
  const onPlatform = (path: string, bdf: string): void => {
    if (bdfs !== undefined && !bdfs.has(bdf)) issues.push({ path, value: bdf, expected: `an endpoint of the platform (${[...bdfs].join(", ") || "none"})` });
  };
  onPlatform(`${wAt}.device`, w.device);
  for (const bdf of Object.keys(s.kernel?.devices ?? {})) onPlatform(`${at}.kernel.devices["${bdf}"]`, bdf);
  switch (w.kind) {
    case "nvme": {
      const ns = w.namespaceBytes ?? 8 * MiB;
      const bsMin = w.bsMin ?? PAGE;
      if (bsMin > ns) issues.push({ path: `${wAt}.bsMin`, value: bsMin, expected: `at most namespaceBytes (${ns})` });
      if (w.bsMax !== undefined && (w.bsMax < bsMin || w.bsMax > ns)) issues.push({ path: `${wAt}.bsMax`, value: w.bsMax, expected: `at least bsMin (${bsMin}) and at most namespaceBytes (${ns})` });
      break;
    }
    case "sg":
      if (Array.isArray(w.entryBytes) && w.entryBytes[0] > w.entryBytes[1]) issues.push({ path: `${wAt}.entryBytes`, value: w.entryBytes, expected: "a [min, max] pair with min <= max" });
      break;
    case "single":
      if ((w.iova ?? "shared") === "shared" && ((w.offset ?? 0) !== 0 || w.bytes % PAGE !== 0)) {
        issues.push({ path: `${wAt}.iova`, value: w.iova ?? "shared", expected: '"per-buffer" for buffers that are not whole pages (dma_iova_link: only the first range may be unaligned)' });
      }
      break;
    case "p2p":
      onPlatform(`${wAt}.provider.bdf`, w.provider.bdf);
      if (s.seed !== undefined) issues.push({ path: `${at}.seed`, value: s.seed, expected: "no seed: a p2p workload moves a fixed pattern and would ignore it" });
      break;
    case "rdma-odp":
      rdmaOdpIssues(w, wAt, onPlatform, issues);
      break;
    case "dmabuf":
      onPlatform(`${wAt}.exporter`, w.exporter);
      if (w.flow === "vfio-revoke" && w.blockBytes !== undefined) issues.push({ path: `${wAt}.blockBytes`, value: w.blockBytes, expected: "no blockBytes: a VFIO buffer is BAR ranges, never migrated" });
      break;
    case "stale-window":
    case "hmm":
      break;
  }
  if (s.expect?.mapType !== undefined && w.kind !== "p2p" && !(w.kind === "dmabuf" && w.flow !== "vfio-revoke")) {
    issues.push({ path: `${at}.expect.mapType`, value: s.expect.mapType, expected: `no mapType: only a p2p workload or a GPU dmabuf flow has a P2P route (a ${w.kind} workload would ignore it)` });
  }
}

/** Fields an rdma-odp test would ignore or cannot combine, and peers that must be on the platform. */
function rdmaOdpIssues(w: RdmaOdpWorkload, wAt: string, onPlatform: (path: string, bdf: string) => void, issues: ScenarioIssue[]): void {
  if (w.peer !== undefined) onPlatform(`${wAt}.peer`, w.peer);
  if (w.switchBar !== undefined) onPlatform(`${wAt}.switchBar`, w.switchBar);
  if (w.bridgeBar !== undefined) onPlatform(`${wAt}.bridgeBar`, w.bridgeBar);
  const mixed = w.test === "mixed-mr";
  const hodgepodge = w.test === "hodgepodge" || mixed;
  const workload = w.test === "nic-workload";
  if (!hodgepodge && (w.switchBar !== undefined || w.bridgeBar !== undefined)) {
    issues.push({ path: `${wAt}.${w.switchBar !== undefined ? "switchBar" : "bridgeBar"}`, value: w.switchBar ?? w.bridgeBar, expected: `no BAR: only the hodgepodge and mixed-mr tests map peer BARs (a ${w.test} test would ignore it)` });
  }
  // The mixed MR's dma-buf exporters: a GPU's BAR 1 (VRAM) and a device VFIO exports BAR 1 of.
  if (w.gpuVram !== undefined) onPlatform(`${wAt}.gpuVram`, w.gpuVram);
  if (w.vfioBar !== undefined) onPlatform(`${wAt}.vfioBar`, w.vfioBar);
  if (!mixed && (w.gpuVram !== undefined || w.vfioBar !== undefined)) {
    issues.push({ path: `${wAt}.${w.gpuVram !== undefined ? "gpuVram" : "vfioBar"}`, value: w.gpuVram ?? w.vfioBar, expected: `no dma-buf exporter: only the mixed-mr test has them (a ${w.test} test would ignore it)` });
  }
  if (!workload && (w.pages !== undefined || w.wqeBytes !== undefined)) {
    issues.push({ path: `${wAt}.${w.pages !== undefined ? "pages" : "wqeBytes"}`, value: w.pages ?? w.wqeBytes, expected: `no pages or wqeBytes: only nic-workload has them (a ${w.test} test would ignore them)` });
  }
  if (w.implicit === true && (w.test === "huge-pages" || workload)) issues.push({ path: `${wAt}.implicit`, value: true, expected: `false: a ${w.test} test registers an explicit MR` });
  if (workload && w.wqeBytes !== undefined && w.wqeBytes > (w.pages ?? 512) * PAGE) issues.push({ path: `${wAt}.wqeBytes`, value: w.wqeBytes, expected: `at most the MR (${(w.pages ?? 512) * PAGE} bytes)` });
  dmabufMrIssues(w, wAt, onPlatform, issues);
}

/** The dmabuf MR tests: a GPU exporter (and VFIO for the revoke) on the platform; other tests take neither. */
function dmabufMrIssues(w: RdmaOdpWorkload, wAt: string, onPlatform: (path: string, bdf: string) => void, issues: ScenarioIssue[]): void {
  const dmabuf = w.test.startsWith("dmabuf-");
  if (w.exporter !== undefined) onPlatform(`${wAt}.exporter`, w.exporter);
  if (w.vfioDevice !== undefined) onPlatform(`${wAt}.vfioDevice`, w.vfioDevice);
  if (dmabuf && w.exporter === undefined) issues.push({ path: `${wAt}.exporter`, value: undefined, expected: `the BDF of a GPU whose BAR 0 holds the dma-bufs (a ${w.test} test needs one)` });
  if (w.test === "dmabuf-revoke" && w.vfioDevice === undefined) issues.push({ path: `${wAt}.vfioDevice`, value: undefined, expected: "the BDF of the device whose BAR 0 VFIO exports (dmabuf-revoke needs one)" });
  if (!dmabuf && w.exporter !== undefined) issues.push({ path: `${wAt}.exporter`, value: w.exporter, expected: `no exporter: only the dmabuf-* tests use one (a ${w.test} test would ignore it)` });
  if (w.test !== "dmabuf-revoke" && w.vfioDevice !== undefined) issues.push({ path: `${wAt}.vfioDevice`, value: w.vfioDevice, expected: `no vfioDevice: only dmabuf-revoke uses one (a ${w.test} test would ignore it)` });
  if (dmabuf && w.implicit === true) issues.push({ path: `${wAt}.implicit`, value: true, expected: "false: a dmabuf MR is never implicit" });
}
