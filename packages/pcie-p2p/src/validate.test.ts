import { GiB, KiB, MiB, TiB, physAddr } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { platformSpecSchema } from "./spec.js";
import { PlatformSpecError } from "./errors.js";
import { createPlatform } from "./platform.js";
import type { PlatformSpec } from "./spec.js";
import { switchSpec, DEV } from "./test-fixtures.js";

const mem = { ramBytes: 64 * MiB };

function specError(spec: unknown): PlatformSpecError {
  try {
    createPlatform(spec as PlatformSpec);
  } catch (e) {
    if (e instanceof PlatformSpecError) return e;
    throw e;
  }
  throw new Error("expected a PlatformSpecError");
}

describe("spec validation", () => {
  const cases: [string, unknown, string, RegExp][] = [
    ["not an object", 42, "", /a platform spec object/],
    ["unknown top-level field", { memory: mem, endpoint: [] }, "endpoint", /no such field/],
    ["no memory", {}, "memory", /ramBytes or ram/],
    ["both ramBytes and ram", { memory: { ramBytes: 4096, ram: [{ base: 0, size: 4096 }] } }, "memory", /exactly one/],
    ["ramBytes not page aligned", { memory: { ramBytes: 1000 } }, "memory.ramBytes", /multiple of 4096/],
    ["ram regions overlap", { memory: { ram: [{ base: 0, size: 2 * MiB }, { base: MiB, size: MiB }] } }, "memory.ram[1].base", /not overlapping memory.ram\[0\]/],
    ["confidential not boolean", { memory: { ...mem, confidential: "yes" } }, "memory.confidential", /true or false/],
    ["iommu not an object", { memory: mem, iommu: true }, "iommu", /IOMMU options/],
    ["duplicate iommu names", { memory: mem, iommu: [{ name: "x" }, { name: "x" }] }, "iommu[1].name", /no other IOMMU unit/],
    ["iommu option the IOMMU refuses", { memory: mem, iommu: { vaBits: 99 } }, "iommu", /vaBits/],
    ["bad BDF", { memory: mem, endpoints: [{ bdf: "00:01.0" }] }, "endpoints[0].bdf", /dddd:bb:dd\.f/],
    ["uppercase BDF", { memory: mem, endpoints: [{ bdf: "0000:0A:00.0" }] }, "endpoints[0].bdf", /lowercase/],
    ["device number above 1f", { memory: mem, endpoints: [{ bdf: "0000:01:20.0" }] }, "endpoints[0].bdf", /device <= 1f/],
    ["duplicate BDF", { memory: mem, endpoints: [{ bdf: DEV }, { bdf: DEV }] }, "endpoints[1].bdf", /no other endpoint/],
    ["unknown parent", { memory: mem, endpoints: [{ bdf: DEV, parent: "rp9" }] }, "endpoints[0].parent", /root port or switch downstream port/],
    ["parent is a switch upstream port", { ...switchSpec(), endpoints: [{ bdf: DEV, parent: "sw0.up" }] }, "endpoints[0].parent", /root port or switch downstream port/],
    ["unknown host bridge", { memory: mem, rootPorts: [{ id: "rp0", hostBridge: "hb7" }] }, "rootPorts[0].hostBridge", /host bridge id/],
    ["duplicate port id", { memory: mem, rootPorts: [{ id: "rp0" }, { id: "rp0" }] }, "rootPorts[1].id", /already used/],
    ["switch parent unknown", { memory: mem, switches: [{ id: "s", parent: "nope", downstreamPorts: 1 }] }, "switches[0].parent", /root port or switch/],
    ["switches in a cycle", { memory: mem, switches: [{ id: "s1", parent: "s2.dp0", downstreamPorts: 1 }, { id: "s2", parent: "s1.dp0", downstreamPorts: 1 }] }, "switches[0].parent", /cycle/],
    ["no downstream ports", { memory: mem, switches: [{ id: "s", downstreamPorts: 0 }] }, "switches[0].downstreamPorts", /count 1\.\.32/],
    ["ACS not an object", { memory: mem, rootPorts: [{ id: "rp0", acs: "RR" }] }, "rootPorts[0].acs", /ACS bits/],
    ["unknown ACS bit", { memory: mem, rootPorts: [{ id: "rp0", acs: { rr: true, xx: true } }] }, "rootPorts[0].acs.xx", /no such field/],
    ["unknown iommu unit", { memory: mem, iommu: {}, endpoints: [{ bdf: DEV, iommu: "iommu3" }] }, "endpoints[0].iommu", /one of the IOMMU units \(iommu0\)/],
    ["iommu unit with no IOMMU", { memory: mem, endpoints: [{ bdf: DEV, iommu: "iommu0" }] }, "endpoints[0].iommu", /has no IOMMU/],
    ["BAR size not a power of two", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 12288 }] }] }, "endpoints[0].bars[0].size", /power of two >= 4096/],
    ["BAR smaller than a page", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 256 }] }] }, "endpoints[0].bars[0].size", /power of two/],
    ["BAR index reused", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 4096 }, { index: 0, size: 4096 }] }] }, "endpoints[0].bars[1].index", /not used twice/],
    ["BAR index out of range", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ index: 6, size: 4096 }] }] }, "endpoints[0].bars[0].index", /0\.\.5/],
    ["BAR phys unaligned", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 64 * KiB, phys: GiB + 4096 }] }] }, "endpoints[0].bars[0].phys", /aligned to the BAR size/],
    ["BAR outside the window", { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 4096, phys: 4096 }] }] }, "endpoints[0].bars[0].phys", /inside its host bridge's MMIO window/],
    [
      "BARs overlapping",
      { memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 8192, phys: GiB }] }, { bdf: "0000:02:00.0", bars: [{ size: 4096, phys: GiB + 4096 }] }] },
      "endpoints[1].bars[0].phys",
      /not overlapping endpoints\[0\]\.bars\[0\]/,
    ],
    ["BAR that does not fit the window", { memory: mem, hostBridges: [{ id: "hb0", mmio: { base: GiB, size: MiB } }], endpoints: [{ bdf: DEV, bars: [{ size: 2 * MiB }] }] }, "endpoints[0].bars[0].size", /no free naturally aligned range/],
    ["window overlapping RAM", { memory: mem, hostBridges: [{ id: "hb0", mmio: { base: 32 * MiB, size: 64 * MiB } }] }, "hostBridges[0].mmio", /not overlapping RAM/],
    ["windows overlapping", { memory: mem, hostBridges: [{ id: "a", mmio: { base: GiB, size: GiB } }, { id: "b", mmio: { base: GiB, size: MiB } }] }, "hostBridges[1].mmio", /another host bridge's window/],
    ["bad p2p value", { memory: mem, hostBridges: [{ id: "hb0", p2p: true }] }, "hostBridges[0].p2p", /"none", "same-host-bridge" or "any"/],
    ["bus offset making bus addresses negative", { memory: mem, hostBridges: [{ id: "hb0", busOffset: -2 * TiB }] }, "hostBridges[0].busOffset", /bus addresses/],
    ["untrusted not boolean", { memory: mem, endpoints: [{ bdf: DEV, untrusted: 1 }] }, "endpoints[0].untrusted", /true or false/],
    ["id reused across kinds", { memory: mem, rootPorts: [{ id: DEV }], endpoints: [{ bdf: DEV }] }, "endpoints[0].bdf", /already used \(by rootPorts\[0\]\.id\)/],
  ];

  it.each(cases)("%s", (_name, spec, path, expected) => {
    const e = specError(spec);
    expect(e.path).toBe(path);
    expect(e.code).toBe("EINVAL");
    expect(e.message).toMatch(expected);
    expect(e.message.startsWith(`${path === "" ? "spec" : `spec.${path}`} = `)).toBe(true);
  });

  it("reports every issue of the shape at once, each with its path from the root", () => {
    const e = specError({
      memory: { ramBytes: 1000 },
      iommu: [{ vaBit: 48 }],
      endpoints: [{ bdf: "0000:01:00.0", untrusted: 1, bars: [{ size: 12288 }] }, { bdf: "00:02.0" }],
      swtiches: [],
    });
    expect(e.issues.map((i) => i.path)).toEqual([
      "memory.ramBytes",
      "iommu[0].vaBit",
      "endpoints[0].untrusted",
      "endpoints[0].bars[0].size",
      "endpoints[1].bdf",
      "swtiches",
    ]);
    expect(e.issues[1]).toEqual({ path: "iommu[0].vaBit", value: 48, expected: "no such field (allowed: name, iotlbEntries, iotlbWays, pgsizeBitmap, requiresSyncMap, vaBits)" });
    expect(e.path).toBe("memory.ramBytes");
    expect(e.message.split("\n")).toHaveLength(6);
    expect(e.message).toContain("\n  and spec.endpoints[1].bdf = \"00:02.0\" is invalid");
  });

  it("reports every reference issue at once once the shape is sound", () => {
    const e = specError({
      memory: mem,
      rootPorts: [{ id: "rp0", hostBridge: "hb7" }, { id: "rp0" }],
      endpoints: [{ bdf: "0000:01:00.0", parent: "rp9" }, { bdf: "0000:02:00.0", iommu: "iommu0" }],
    });
    expect(e.issues.map((i) => i.path)).toEqual(["rootPorts[0].hostBridge", "rootPorts[1].id", "endpoints[0].parent", "endpoints[1].iommu"]);
  });

  it("names the value in the message", () => {
    expect(specError({ memory: mem, endpoints: [{ bdf: DEV, bars: [{ size: 12288 }] }] }).message).toBe(
      "spec.endpoints[0].bars[0].size = 0x3000 is invalid: expected a power of two >= 4096 bytes",
    );
  });
});

describe("defaults", () => {
  it("the hello-world spec: one default host bridge, root port and iommu0 serving the endpoint", () => {
    const p = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: DEV }] });
    const ep = p.endpoint(DEV);
    expect(p.iommus).toHaveLength(1);
    expect(ep.iommu).toBe(p.iommus[0]);
    expect(p.iommuFor(DEV)?.name).toBe("iommu0");
    expect(ep.parent).toBe("rp:0000:01");
    expect(ep.hostBridge.id).toBe("hb0");
    expect(ep.bars).toEqual([]);
    expect(p.memory.isRam(physAddr(0), 4 * GiB)).toBe(true);
    expect(p.hostBridges[0]!.window).toEqual({ phys: 4 * GiB, bus: 4 * GiB, size: TiB });
  });

  it("no iommu key: no IOMMU at all", () => {
    const p = createPlatform({ memory: mem, endpoints: [{ bdf: DEV }] });
    expect(p.iommus).toEqual([]);
    expect(p.iommuFor(DEV)).toBeUndefined();
  });

  it("several units: names by position, per host bridge default, per endpoint override and null", () => {
    const p = createPlatform({
      memory: mem,
      iommu: [{}, { name: "smmu1", iotlbEntries: 256 }],
      hostBridges: [{ id: "hb0" }, { id: "hb1", iommu: "smmu1" }],
      rootPorts: [{ id: "r0" }, { id: "r1", hostBridge: "hb1" }],
      endpoints: [
        { bdf: DEV, parent: "r0" },
        { bdf: "0001:01:00.0", parent: "r1" },
        { bdf: "0001:01:00.1", parent: "r1", iommu: "iommu0" },
        { bdf: "0001:01:00.2", parent: "r1", iommu: null },
      ],
    });
    expect(p.iommus.map((u) => u.name)).toEqual(["iommu0", "smmu1"]);
    expect(p.iommus[1]!.iotlb.capacity).toBe(256);
    expect([DEV, "0001:01:00.0", "0001:01:00.1", "0001:01:00.2"].map((b) => p.iommuFor(b)?.name)).toEqual(["iommu0", "smmu1", "iommu0", undefined]);
  });

  it("explicit RAM regions and confidential memory reach PhysicalMemory", () => {
    const p = createPlatform({ memory: { ram: [{ base: 0, size: MiB }, { base: 4 * GiB, size: MiB, name: "high" }], confidential: true } });
    expect(p.memory.confidential).toBe(true);
    expect(p.memory.isRam(physAddr(4 * GiB), MiB)).toBe(true);
    expect(p.memory.isRam(physAddr(MiB), 4096)).toBe(false);
    expect(p.hostBridges[0]!.window.phys).toBe(5 * GiB); // first GiB boundary above the highest RAM
  });

  it("a switch with no parent gets a root port of its own; downstream ports by count are named <id>.dp<i>", () => {
    const p = createPlatform({ memory: mem, switches: [{ id: "sw", downstreamPorts: 2 }], endpoints: [{ bdf: "0000:02:00.0", parent: "sw.dp1" }] });
    expect(p.describe()).toBe(
      ["hb0, host bridge, p2p none, window 0x40000000+1 TiB", "└─ rp:sw, root port", "   └─ sw.up, switch upstream port", "      ├─ sw.dp0, switch downstream port", "      └─ sw.dp1, switch downstream port", "         └─ 0000:02:00.0, endpoint, no IOMMU"].join("\n"),
    );
  });
});

describe("the address layout", () => {
  it("reports every window and BAR it cannot place, placing the rest", () => {
    const e = specError({
      memory: mem,
      hostBridges: [{ id: "hb0", mmio: { base: 32 * MiB, size: 64 * MiB } }, { id: "hb1", mmio: { base: GiB, size: MiB } }],
      rootPorts: [{ id: "r1", hostBridge: "hb1" }],
      endpoints: [
        { bdf: "0000:01:00.0", parent: "r1", bars: [{ size: 4096, phys: 4096 }, { size: 2 * MiB }, { size: 4096 }] },
      ],
    });
    expect(e.issues.map((i) => i.path)).toEqual(["hostBridges[0].mmio", "endpoints[0].bars[0].phys", "endpoints[0].bars[1].size"]);
  });
});

describe("the spec schema", () => {
  it("converts to a JSON Schema that refuses unknown keys (for editors completing scenario files)", () => {
    const json = z.toJSONSchema(platformSpecSchema, { unrepresentable: "any" }) as { additionalProperties?: unknown; required?: unknown; properties?: Record<string, unknown> };
    expect(json.additionalProperties).toBe(false);
    expect(json.required).toEqual(["memory"]);
    expect(Object.keys(json.properties ?? {})).toEqual(["memory", "iommu", "cpuSupportsP2pdma", "hostBridges", "rootPorts", "switches", "endpoints", "trace"]);
  });
});
