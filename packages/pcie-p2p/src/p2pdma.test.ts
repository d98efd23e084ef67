import { GiB, KiB, MiB } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PciError } from "./errors.js";
import { PciP2pdmaMapType } from "./p2pdma.js";
import { createPlatform } from "./platform.js";
import type { AcsSpec, HostBridgeP2p, PlatformSpec } from "./spec.js";
import { A, B, C, switchSpec, DEV } from "./test-fixtures.js";

const { BUS_ADDR, THRU_HOST_BRIDGE, NOT_SUPPORTED } = PciP2pdmaMapType;

function withAcs(port: "sw0.dp0" | "sw0.dp1" | "up" | "rp0", acs: AcsSpec, p2p: HostBridgeP2p = "none"): PlatformSpec {
  const base = switchSpec({ hostBridges: [{ id: "hb0", p2p }] });
  if (port === "rp0") return { ...base, rootPorts: [{ id: "rp0", acs }, { id: "rp1" }] };
  if (port === "up") return { ...base, switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 3, upstreamAcs: acs }] };
  const ports = ["sw0.dp0", "sw0.dp1", "sw0.dp2"].map((id) => (id === port ? { id, acs } : id));
  return { ...base, switches: [{ id: "sw0", parent: "rp0", downstreamPorts: ports }] };
}

function decide(spec: PlatformSpec, provider = B, client = A) {
  const p = createPlatform(spec);
  const prov = p.addP2pdmaProvider(provider, 0);
  const explained = p.pciP2pdmaExplain(prov, client);
  expect(p.pciP2pdmaMapType(prov, client)).toBe(explained.type);
  return { ...explained, distance: p.pciP2pdmaDistance(prov, [client]) };
}

describe("pciP2pdmaMapType / calc_map_type_and_dist", () => {
  it("the provider's own device is BUS_ADDR at distance 0", () => {
    expect(decide(switchSpec(), B, B)).toMatchObject({ type: BUS_ADDR, dist: 0, distance: 0 });
  });

  it("two devices below one switch: BUS_ADDR at distance 4 (dp → up → dp, as the kernel comment draws it)", () => {
    expect(decide(switchSpec())).toMatchObject({ type: BUS_ADDR, dist: 4, acsRedirect: [] });
  });

  it("two functions of one device on one root port: BUS_ADDR at distance 2", () => {
    const spec: PlatformSpec = {
      memory: { ramBytes: 64 * MiB },
      endpoints: [
        { bdf: DEV, bars: [{ size: 64 * KiB }] },
        { bdf: "0000:01:00.1", bars: [{ size: 64 * KiB }] },
      ],
    };
    expect(decide(spec, DEV, "0000:01:00.1")).toMatchObject({ type: BUS_ADDR, dist: 2 });
  });

  it("devices on different root ports of a host bridge not on the whitelist: NOT_SUPPORTED, distance -1", () => {
    expect(decide(switchSpec(), B, C)).toMatchObject({ type: NOT_SUPPORTED, dist: 6, distance: -1 });
  });

  it("separate parentless devices get separate root ports (not one shared link)", () => {
    const spec: PlatformSpec = { memory: { ramBytes: 64 * MiB }, endpoints: [{ bdf: DEV, bars: [{ size: 4096 }] }, { bdf: A }] };
    expect(decide(spec, DEV, A)).toMatchObject({ type: NOT_SUPPORTED, dist: 4 });
  });

  it.each<[HostBridgeP2p, number]>([
    ["none", NOT_SUPPORTED],
    ["same-host-bridge", THRU_HOST_BRIDGE],
    ["any", THRU_HOST_BRIDGE],
  ])("root ports of one host bridge whitelisted as %s → %i", (p2p, type) => {
    expect(decide(switchSpec({ hostBridges: [{ id: "hb0", p2p }] }), B, C).type).toBe(type);
  });

  it("cpu_supports_p2pdma() overrides the whitelist", () => {
    const r = decide(switchSpec({ cpuSupportsP2pdma: true }), B, C);
    expect(r).toMatchObject({ type: THRU_HOST_BRIDGE, distance: 6 });
  });

  it.each<[HostBridgeP2p, HostBridgeP2p, number]>([
    ["any", "any", THRU_HOST_BRIDGE],
    ["any", "same-host-bridge", NOT_SUPPORTED],
    ["same-host-bridge", "same-host-bridge", NOT_SUPPORTED],
    ["any", "none", NOT_SUPPORTED],
  ])("across host bridges %s and %s → %i (REQ_SAME_HOST_BRIDGE entries only forward within themselves)", (p0, p1, type) => {
    const spec: PlatformSpec = {
      memory: { ramBytes: 64 * MiB },
      hostBridges: [{ id: "hb0", p2p: p0 }, { id: "hb1", p2p: p1 }],
      rootPorts: [{ id: "rp0", hostBridge: "hb0" }, { id: "rp1", hostBridge: "hb1" }],
      endpoints: [
        { bdf: DEV, parent: "rp0", bars: [{ size: 64 * KiB }] },
        { bdf: "0001:01:00.0", parent: "rp1" },
      ],
    };
    expect(decide(spec, DEV, "0001:01:00.0").type).toBe(type);
  });

  it.each<[string, AcsSpec]>([
    ["RR", { rr: true }],
    ["CR", { cr: true }],
    ["EC", { ec: true }],
  ])("ACS %s on the client's downstream port forces the host bridge path", (_name, acs) => {
    expect(decide(withAcs("sw0.dp0", acs))).toMatchObject({ type: NOT_SUPPORTED, acsRedirect: ["sw0.dp0"], distance: -1 });
    expect(decide(withAcs("sw0.dp0", acs, "same-host-bridge"))).toMatchObject({ type: THRU_HOST_BRIDGE, dist: 4, distance: 4 });
  });

  it("ACS SV and UF alone do not redirect", () => {
    expect(decide(withAcs("sw0.dp0", { sv: true, uf: true })).type).toBe(BUS_ADDR);
  });

  it("ACS redirect on the provider's side counts as well", () => {
    expect(decide(withAcs("sw0.dp1", { rr: true }, "any"))).toMatchObject({ type: THRU_HOST_BRIDGE, acsRedirect: ["sw0.dp1"] });
  });

  it("the common bridge's own ACS counts (provider-side loop includes it); bridges above it do not", () => {
    expect(decide(withAcs("up", { rr: true }, "any"))).toMatchObject({ type: THRU_HOST_BRIDGE, acsRedirect: ["sw0.up"] });
    expect(decide(withAcs("rp0", { rr: true, cr: true }))).toMatchObject({ type: BUS_ADDR, acsRedirect: [] });
  });

  it("cascaded switches: distance grows with depth and ACS anywhere below the common bridge counts", () => {
    const spec = (acs: AcsSpec | undefined): PlatformSpec => ({
      memory: { ramBytes: 64 * MiB },
      rootPorts: [{ id: "rp0" }],
      switches: [
        { id: "top", parent: "rp0", downstreamPorts: 2 },
        { id: "low", parent: "top.dp0", downstreamPorts: [acs === undefined ? "low.dp0" : { id: "low.dp0", acs }] },
      ],
      endpoints: [
        { bdf: B, parent: "low.dp0" },
        { bdf: "0000:04:00.0", parent: "top.dp1", bars: [{ size: 64 * KiB }] },
      ],
    });
    // client: 03:00.0 → low.dp0 → low.up → top.dp0 → top.up (4); provider: 04:00.0 → top.dp1 → top.up (2)
    expect(decide(spec(undefined), "0000:04:00.0", B)).toMatchObject({ type: BUS_ADDR, dist: 6 });
    expect(decide(spec({ rr: true }), "0000:04:00.0", B)).toMatchObject({ type: NOT_SUPPORTED, acsRedirect: ["low.dp0"] });
  });

  it("an untrusted client's port is external-facing: its ACS redirect keeps it off bus addresses", () => {
    const spec = switchSpec();
    const eps = spec.endpoints!.map((e) => (e.bdf === A ? { ...e, untrusted: true } : e));
    const p = createPlatform({ ...spec, endpoints: eps });
    expect(p.endpoint(A).untrusted).toBe(true);
    expect(decide({ ...spec, endpoints: eps })).toMatchObject({ type: NOT_SUPPORTED, acsRedirect: ["sw0.dp0"] });
    expect(p.describe()).toMatch(/sw0\.dp0, switch downstream port, ACS SV\|TB\|RR\|CR\|UF, external-facing/);
  });

  it("repeated queries answer from the per-provider cache with the same result", () => {
    const p = createPlatform(switchSpec());
    const prov = p.addP2pdmaProvider(B, 0);
    expect([p.pciP2pdmaMapType(prov, A), p.pciP2pdmaMapType(prov, A), p.pciP2pdmaMapType(prov, C)]).toEqual([BUS_ADDR, BUS_ADDR, NOT_SUPPORTED]);
  });
});

describe("pciP2pdmaDistance / pci_p2pdma_distance_many", () => {
  const spec = switchSpec({ hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }] });
  it("sums the distance to every client", () => {
    const p = createPlatform(spec);
    const prov = p.addP2pdmaProvider(B, 0);
    expect(p.pciP2pdmaDistance(prov, [A, B])).toBe(4);
    expect(p.pciP2pdmaDistance(prov, [A, B, C])).toBe(10);
  });
  it("is -1 with no clients or when any client cannot reach the provider", () => {
    const p = createPlatform(switchSpec());
    const prov = p.addP2pdmaProvider(B, 0);
    expect(p.pciP2pdmaDistance(prov, [])).toBe(-1);
    expect(p.pciP2pdmaDistance(prov, [A, C])).toBe(-1);
  });
});

describe("bad arguments", () => {
  it("an unknown client or a provider of another platform is a PciError", () => {
    const p = createPlatform(switchSpec());
    const prov = p.addP2pdmaProvider(B, 0);
    expect(() => p.pciP2pdmaMapType(prov, "0000:09:00.0")).toThrow(PciError);
    expect(() => p.pciP2pdmaMapType(prov, "0000:09:00.0")).toThrow(/ENODEV: pciP2pdmaMapType: bdf = "0000:09:00.0"/);
    const other = createPlatform(switchSpec()).addP2pdmaProvider(B, 0);
    expect(() => p.pciP2pdmaMapType(other, A)).toThrow(/provider returned by this platform/);
    expect(() => p.pciP2pdmaDistance(prov, [A, "nope"])).toThrow(PciError);
    expect(() => p.pciP2pdmaDistance(prov, A as unknown as string[])).toThrow(/clients = "0000:02:00.0" is invalid: expected an array of BDFs/);
    expect(() => p.pciP2pdmaExplain({ ...prov }, A)).toThrow(PciError);
  });
  it("memory spec with no switch still answers: 4 GiB hello world has no providers", () => {
    const p = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: DEV }] });
    expect(p.providers).toEqual([]);
    expect(p.providerById(1)).toBeUndefined();
  });
});
