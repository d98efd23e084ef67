import { runP2pCase } from "@dmasim/nvme";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pMapTypeName, P2pWorkload, Scenario } from "../types.js";
import { ScenarioSetupError } from "../errors.js";
import { finish } from "./finish.js";
import { setUp } from "./host.js";
import { nvmeHost } from "./nvme.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { Check, RunResult } from "./result.js";

export function mapTypeName(t: number): P2pMapTypeName | "UNKNOWN" {
  switch (t) {
    case PciP2pdmaMapType.BUS_ADDR:
      return "BUS_ADDR";
    case PciP2pdmaMapType.THRU_HOST_BRIDGE:
      return "THRU_HOST_BRIDGE";
    case PciP2pdmaMapType.NOT_SUPPORTED:
      return "NOT_SUPPORTED";
    case PciP2pdmaMapType.NONE:
      return "NONE";
    default:
      return "UNKNOWN";
  }
}

/**
 * Block I/O to and from a peer's BAR (drivers/pci/p2pdma.c decides the route): the drive writes the
 * peer's P2P memory to its namespace and reads it back into another part of the BAR. BUS_ADDR: bus
 * addresses, the TLPs turn around in the switch; THRU_HOST_BRIDGE: an IOVA mapped as MMIO, the TLPs
 * cross the root complex (and the IOMMU).
 */
export function runP2p(s: Scenario, w: P2pWorkload, ctx: RunContext): RunResult {
  const host = nvmeHost(s, ctx, w.device, { queueDepth: 4, ...(w.namespaceBytes === undefined ? {} : { namespaceBytes: w.namespaceBytes }) });
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const { platform } = host;
  const provider = setUp(`workload.provider of scenario "${s.name}"`, () => platform.addP2pdmaProvider(w.provider.bdf, w.provider.bar ?? 0));
  const type = mapTypeName(platform.pciP2pdmaMapType(provider, w.device));
  const distance = platform.pciP2pdmaDistance(provider, [w.device]);
  const bytes = w.bytes ?? 64 * 1024;
  const before = platform.trace.counters.snapshot();
  const checks: Check[] = [];
  const metrics: Record<string, number> = { distance };
  const mapped = [
    `P2P memory: BAR${w.provider.bar ?? 0} of ${w.provider.bdf}; client NVMe ${w.device}: pci_p2pdma_map_type → ${type}, distance ${distance}`,
    `${(bytes / 1024).toLocaleString("en-US")} KiB written from the BAR to the namespace and read back into it, mapped by ${ctx.api === "classic" ? "dma_map_sg (upstream iommu_dma_map_sg)" : "the block layer's DMA iterator"}`,
  ];
  if (s.expect?.mapType !== undefined) checks.push(check("P2P route", type === s.expect.mapType, `pci_p2pdma_map_type is ${type}, expected ${s.expect.mapType}`));
  try {
    const r = runP2pCase(host, provider, { bytes });
    metrics.verifiedBytes = r.verifiedBytes;
    metrics.tlpsPeerViaSwitch = r.tlpsPeerViaSwitch;
    metrics.tlpsPeerViaHostBridge = r.tlpsPeerViaHostBridge;
    checks.push(check("device saw the right bytes", true, `${r.verifiedBytes.toLocaleString("en-US")} bytes verified: ${r.tlpsPeerViaSwitch} TLPs turned around in the switch, ${r.tlpsPeerViaHostBridge} crossed the host bridge`));
  } catch (e) {
    if (!(e instanceof Error) || e instanceof ScenarioSetupError) throw e;
    checks.push(check("P2P I/O completed", false, e.message));
  }
  return finish(s, ctx, host, [w.device], before, { checks, mapped, metrics });
}
