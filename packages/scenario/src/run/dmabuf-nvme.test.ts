import { describe, expect, it } from "vitest";
import { builtinScenario } from "../builtins.js";
import { runScenario } from "./index.js";

const NAMES = ["dmabuf-nvme-switch", "dmabuf-nvme-host-bridge", "dmabuf-nvme-migrate", "dmabuf-nvme-revoke", "dmabuf-nvme-nic-pressure"];

function run(name: string, api: "classic" | "two-step") {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return runScenario(s, { api, iommu: "strict" });
}

describe("dmabuf-nvme-*: an NVMe drive as a dma-buf importer", () => {
  it.each(NAMES.flatMap((n) => [[n, "classic"], [n, "two-step"]] as const))("%s (%s) passes every check", (name, api) => {
    const r = run(name, api);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.metrics.verifiedBytes).toBeGreaterThan(0);
  });

  it("the route shows in the counters: the switch carries the P2P bytes, or the host bridge does", () => {
    const sw = run("dmabuf-nvme-switch", "two-step");
    expect(sw.metrics.bytesPeerViaSwitch).toBe(4 * 1024 * 1024); // 2 MiB each way
    expect(sw.metrics.bytesPeerViaHostBridge).toBe(0);
    const hb = run("dmabuf-nvme-host-bridge", "two-step");
    expect(hb.metrics.bytesPeerViaHostBridge).toBe(4 * 1024 * 1024);
    expect(hb.metrics.bytesPeerViaSwitch).toBe(0);
    expect(hb.counters.PteWrites ?? 0).toBeGreaterThan(0);
  });

  it("a migration with commands in flight: they finish first, the drive maps again", () => {
    const r = run("dmabuf-nvme-migrate", "classic");
    expect(r.metrics.drainedCommands).toBeGreaterThan(0);
    expect(r.metrics.rebinds).toBe(3);
    expect(r.metrics.migratedBytes).toBe(4 * 1024 * 1024);
  });

  it.each(["classic", "two-step"] as const)("nic-pressure (%s): the NIC's dynamic dmabuf MR faults once after the eviction, its revocable MR is revoked once", (api) => {
    const r = run("dmabuf-nvme-nic-pressure", api);
    // 8 WRITEs and 8 READs over buffer B, one WRITE before and one after the VFIO revoke.
    expect(r.metrics.rdmaWrs).toBe(18);
    expect(r.metrics.nicMrFaults).toBe(1);
    expect(r.metrics.nicRebinds).toBe(2);
    expect(r.metrics.nicMrRevokes).toBe(1);
    expect(r.metrics.nicWrNs).toBeGreaterThan(0);
    expect(r.checks.find((c) => c.name.startsWith("the NIC's revocable MR fails for good"))?.ok).toBe(true);
  });
});
