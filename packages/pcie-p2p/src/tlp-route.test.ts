import { describe, expect, it } from "vitest";
import { createPlatform } from "./platform.js";
import type { TlpEvent } from "./events.js";
import { switchTopology, TestBdf } from "./testing.js";
import { unsafeDmaAddr } from "./dma-addr.js";

function tlpsOf(p: ReturnType<typeof createPlatform>, f: () => void): TlpEvent[] {
  const seen: TlpEvent[] = [];
  const off = p.trace.events.subscribe((e) => {
    if (e.type === "tlp") seen.push(e);
  });
  f();
  off();
  return seen;
}

describe("the route of a TLP", () => {
  it("a switch turnaround, memory through the IOMMU, and an ACS redirect to the root complex", () => {
    const bars = [{ size: 1 << 20 }];
    const p = createPlatform(switchTopology({ hostBridgeP2p: "same-host-bridge", switchPeer: { bars }, bridgePeer: { bars } }));
    const mmu = p.iommus[0]!;
    const dom = mmu.allocDomain("identity");
    mmu.attachDevice(TestBdf.CLIENT, dom);
    const peerBar = p.endpoint(TestBdf.SWITCH_PEER).bars[0]!;
    const [peer] = tlpsOf(p, () => {
      p.endpoint(TestBdf.CLIENT).dmaWrite(peerBar.bus, Uint8Array.of(1));
    });
    expect(peer).toMatchObject({ path: "peer-via-switch", target: TestBdf.SWITCH_PEER, phys: peerBar.phys, acsRedirect: false });
    expect(peer?.hops).toEqual([TestBdf.CLIENT, "sw0.dp0", "sw0.up", "sw0.dp1", TestBdf.SWITCH_PEER]);
    const [mem] = tlpsOf(p, () => p.endpoint(TestBdf.CLIENT).dmaRead(unsafeDmaAddr(0x1000), 4));
    expect(mem).toMatchObject({ path: "memory", target: "ram", addr: 0x1000, phys: 0x1000, acsRedirect: false });
    expect(mem?.hops).toEqual([TestBdf.CLIENT, "sw0.dp0", "sw0.up", "rp0", "hb0", "iommu0", "ram"]);
    const spec = switchTopology({ hostBridgeP2p: "same-host-bridge", switchPeer: { bars } });
    const sw0 = spec.switches?.[0] ?? { id: "sw0", parent: "rp0", downstreamPorts: 3 };
    const acs = createPlatform({ ...spec, switches: [{ ...sw0, acs: { rr: true } }] });
    acs.iommus[0]!.attachDevice(TestBdf.CLIENT, acs.iommus[0]!.allocDomain("identity"));
    const bar2 = acs.endpoint(TestBdf.SWITCH_PEER).bars[0]!;
    const [up] = tlpsOf(acs, () => {
      acs.endpoint(TestBdf.CLIENT).dmaWrite(bar2.bus, Uint8Array.of(1));
    });
    // RR at the ingress port sends the peer write up to the root complex and back down.
    expect(up).toMatchObject({ path: "peer-via-host-bridge", target: TestBdf.SWITCH_PEER, acsRedirect: true });
    expect(up?.hops).toEqual([TestBdf.CLIENT, "sw0.dp0", "sw0.up", "rp0", "hb0", "iommu0", "rp0", "sw0.up", "sw0.dp1", TestBdf.SWITCH_PEER]);
  });
});
