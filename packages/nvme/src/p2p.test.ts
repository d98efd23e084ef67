import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { describe, expect, it } from "vitest";
import { runP2pCase } from "./p2p.js";
import { createNvmeSystem } from "./system.js";

describe("P2P block I/O", () => {
  it("through the switch: bus addresses, TLPs turn around in the switch, no IOMMU mapping", () => {
    const sys = createNvmeSystem({ queueDepth: 4, namespaceBytes: 1024 * 1024 });
    const r = runP2pCase(sys, sys.peerViaSwitch);
    expect(r.mapType).toBe(PciP2pdmaMapType.BUS_ADDR);
    expect(r.verifiedBytes).toBe(128 * 1024);
    expect(r.tlpsPeerViaSwitch).toBe(32); // 16 TLPs each way for 64 KiB
    expect(r.tlpsPeerViaHostBridge).toBe(0);
    expect(r.pteWrites).toBe(0);
  });

  it("through the host bridge: one IOVA mapped as MMIO, TLPs cross the root complex", () => {
    const sys = createNvmeSystem({ queueDepth: 4, namespaceBytes: 1024 * 1024 });
    const r = runP2pCase(sys, sys.peerViaHostBridge);
    expect(r.mapType).toBe(PciP2pdmaMapType.THRU_HOST_BRIDGE);
    expect(r.tlpsPeerViaHostBridge).toBe(32);
    expect(r.tlpsPeerViaSwitch).toBe(0);
    expect(r.pteWrites).toBeGreaterThan(0);
    expect(sys.kernel.iovaTracker.liveCount(sys.driver.dev.bdf)).toBe(0);
  });
});
