import { Counter } from "./counters.js";
import { GiB, KiB, MiB, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { IommuProt, iova } from "@dmasim/iommu";
import { SparseStore } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PcieAccessError, PciError } from "./errors.js";
import { PciP2pdmaMapType } from "./p2pdma.js";
import { createPlatform } from "./platform.js";
import type { EndpointSpec, PlatformSpec } from "./spec.js";
import type { Platform } from "./types.js";
import { A, B, C, RW, bytes, switchSpec, withDomains, DEV } from "./test-fixtures.js";
import { unsafeBusAddr, unsafeDmaAddr } from "./index.js";

function accessError(fn: () => unknown): PcieAccessError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PcieAccessError) return e;
    throw e;
  }
  throw new Error("expected a PcieAccessError");
}

function map(p: Platform, bdf: string, at: number, phys: number, size: number, prot = RW): void {
  p.endpoint(bdf).iommu!.domainOf(bdf)!.map(iova(at), physAddr(phys), size, prot);
}

function tlps(p: Platform) {
  const c = p.trace.counters;
  return {
    memory: [c.get(Counter.TlpsToMemory), c.get(Counter.BytesToMemory)],
    viaSwitch: [c.get(Counter.TlpsPeerViaSwitch), c.get(Counter.BytesPeerViaSwitch)],
    viaHostBridge: [c.get(Counter.TlpsPeerViaHostBridge), c.get(Counter.BytesPeerViaHostBridge)],
    ur: c.get(Counter.UnsupportedRequests),
  };
}

function withEndpoints(spec: PlatformSpec, f: (e: EndpointSpec) => EndpointSpec): PlatformSpec {
  return { ...spec, endpoints: spec.endpoints!.map(f) };
}

describe("path memory: upstream through the IOMMU to RAM", () => {
  it("a read returns what memory holds at the translated address, split into TLPs at 4 KiB boundaries", () => {
    const p = withDomains({ ...switchSpec(), trace: { recordEvents: true } });
    const data = bytes(3 * 4096, 1);
    p.memory.write(physAddr(0x200000), data);
    map(p, A, 0x10000000, 0x200000, 3 * 4096);
    const got = p.endpoint(A).dmaRead(unsafeDmaAddr(0x10000000 + 100), 10000);
    expect(got).toEqual(data.subarray(100, 10100));
    expect(tlps(p)).toMatchObject({ memory: [3, 10000], viaSwitch: [0, 0], ur: 0 });
    expect(p.trace.events.events("tlp").map((e) => [e.addr, e.len, e.path, e.access, e.device])).toEqual([
      [0x10000000 + 100, 3996, "memory", "read", A],
      [0x10001000, 4096, "memory", "read", A],
      [0x10002000, 1908, "memory", "read", A],
    ]);
  });

  it("TLPs split at 4 KiB boundaries of IOVAs above 2^32 too (the boundary is taken from the low bits)", () => {
    const p = withDomains({ ...switchSpec(), trace: { recordEvents: true } });
    const iova = 0x3_0000_0000 + 0x5000;
    map(p, A, iova, 0x200000, 2 * 4096);
    const data = bytes(500, 3);
    p.endpoint(A).dmaWrite(unsafeDmaAddr(iova + 4096 - 200), data);
    expect(p.memory.read(unsafePhysAddr(0x200000 + 4096 - 200), 500)).toEqual(data);
    const dst = new Uint8Array(500);
    p.endpoint(A).dmaReadInto(unsafeDmaAddr(iova + 4096 - 200), dst);
    expect(dst).toEqual(data);
    expect(p.trace.events.events("tlp").map((e) => [e.addr, e.len, e.access])).toEqual([
      [iova + 4096 - 200, 200, "write"],
      [iova + 4096, 300, "write"],
      [iova + 4096 - 200, 200, "read"],
      [iova + 4096, 300, "read"],
    ]);
  });

  it("a write lands in memory and the CPU sees it; dmaReadInto fills a caller's buffer", () => {
    const p = withDomains(switchSpec());
    map(p, A, 0x4000, 0x9000, 8192);
    const data = bytes(5000, 2);
    p.endpoint(A).dmaWrite(unsafeDmaAddr(0x4000 + 3000), data);
    expect(p.memory.read(physAddr(0x9000 + 3000), 5000)).toEqual(data);
    const dst = new Uint8Array(5000);
    p.endpoint(A).dmaReadInto(unsafeDmaAddr(0x4000 + 3000), dst);
    expect(dst).toEqual(data);
    expect(tlps(p).memory).toEqual([4, 10000]);
  });

  it("without an IOMMU the address is used as the physical address", () => {
    const spec = switchSpec();
    delete (spec as { iommu?: unknown }).iommu;
    const p = createPlatform(spec);
    p.memory.write(physAddr(0x5000), Uint8Array.of(9, 8, 7));
    expect([...p.endpoint(A).dmaRead(unsafeDmaAddr(0x5000), 3)]).toEqual([9, 8, 7]);
  });

  it("an unmapped IOVA is an iommu-fault naming the address; TLPs before it completed", () => {
    const p = withDomains(switchSpec());
    map(p, A, 0x10000, 0x20000, 4096);
    const e = accessError(() => { p.endpoint(A).dmaWrite(unsafeDmaAddr(0x10000 + 4000), bytes(200, 3)); });
    expect(e).toMatchObject({ kind: "iommu-fault", code: "EFAULT", device: A, access: "write", addr: 0x11000, completed: 96 });
    expect(e.message).toMatch(/iommu0 refused the translation \(not-mapped\)/);
    expect(p.memory.read(physAddr(0x20000 + 4000), 96)).toEqual(bytes(200, 3).subarray(0, 96));
    expect(p.trace.counters.get(Counter.IommuFaults)).toBe(1);
    expect(tlps(p).memory).toEqual([1, 96]);
  });

  it("a read-only mapping faults a write (permission) and moves no byte", () => {
    const p = withDomains(switchSpec());
    map(p, A, 0x10000, 0x20000, 4096, IommuProt.READ);
    expect(accessError(() => { p.endpoint(A).dmaWrite(unsafeDmaAddr(0x10000), Uint8Array.of(1)); }).message).toMatch(/\(permission\)/);
    expect(p.memory.read(physAddr(0x20000), 1)[0]).toBe(0);
  });

  it("a device with no domain attached is blocked", () => {
    const p = createPlatform(switchSpec());
    expect(accessError(() => p.endpoint(A).dmaRead(unsafeDmaAddr(0), 4)).message).toMatch(/\(blocked\)/);
  });

  it("an address nothing claims is an Unsupported Request, counted and traced", () => {
    const spec = switchSpec({ trace: { recordEvents: true } });
    delete (spec as { iommu?: unknown }).iommu;
    const p = createPlatform(spec);
    const hole = 1 * GiB - 4096 + 2 * GiB; // above RAM, below nothing: no BAR there
    const e = accessError(() => p.endpoint(A).dmaRead(unsafeDmaAddr(hole), 8));
    expect(e).toMatchObject({ kind: "unsupported-request", code: "EIO", addr: hole, completed: 0 });
    expect(tlps(p).ur).toBe(1);
    expect(p.trace.events.events("unsupported-request")).toEqual([{ type: "unsupported-request", t: 0, device: A, access: "read", addr: hole, len: 8 }]);
  });

  it("MMIO that is no device's BAR is reached like memory when it has bytes, UR when it has none", () => {
    const spec = switchSpec();
    delete (spec as { iommu?: unknown }).iommu;
    const p = createPlatform(spec);
    p.memory.addMmio(unsafePhysAddr(0x80000000), 4096, { name: "doorbell", backing: new SparseStore(4096) });
    p.memory.addMmio(unsafePhysAddr(0x80001000), 4096, { name: "registers" });
    p.endpoint(A).dmaWrite(unsafeDmaAddr(0x80000000), Uint8Array.of(5));
    expect(p.memory.read(physAddr(0x80000000), 1)[0]).toBe(5);
    expect(accessError(() => p.endpoint(A).dmaRead(unsafeDmaAddr(0x80001000), 4)).kind).toBe("unsupported-request");
    expect(tlps(p)).toMatchObject({ memory: [1, 1], ur: 1 });
  });
});

describe("confidential guests", () => {
  const spec = (): PlatformSpec => ({ memory: { ramBytes: 64 * MiB, confidential: true }, endpoints: [{ bdf: DEV }] });
  it("private (encrypted) pages are unreachable; shared ones work", () => {
    const p = createPlatform(spec());
    const ep = p.endpoint(DEV);
    const e = accessError(() => ep.dmaRead(unsafeDmaAddr(0x3000), 16));
    expect(e).toMatchObject({ kind: "private-memory", code: "EACCES", completed: 0 });
    expect(p.trace.counters.get(Counter.PrivateMemoryBlocked)).toBe(1);
    p.memory.setMemoryDecrypted(unsafePhysAddr(0x3000), 1);
    ep.dmaWrite(unsafeDmaAddr(0x3000), Uint8Array.of(1, 2));
    expect([...p.memory.read(physAddr(0x3000), 2)]).toEqual([1, 2]);
    const partial = accessError(() => { ep.dmaWrite(unsafeDmaAddr(0x3000 + 4000), bytes(200, 1)); });
    expect(partial).toMatchObject({ kind: "private-memory", addr: 0x4000, completed: 96 });
  });
});

describe("peer-to-peer", () => {
  it("a bus address of a peer under the same switch goes straight there: no IOMMU, the CPU sees the bytes", () => {
    const p = withDomains({ ...switchSpec(), trace: { recordEvents: true } });
    const bar = p.endpoint(B).bars[0]!;
    const data = bytes(6000, 4);
    p.endpoint(A).dmaWrite(unsafeBusAddr(bar.bus + 1000), data);
    expect(p.memory.read(physAddr(bar.phys + 1000), 6000)).toEqual(data);
    p.memory.write(physAddr(bar.phys + 8192), Uint8Array.of(42));
    expect(p.endpoint(A).dmaRead(unsafeBusAddr(bar.bus + 8192), 1)[0]).toBe(42);
    expect(tlps(p)).toMatchObject({ viaSwitch: [3, 6001], memory: [0, 0] });
    expect(p.trace.counters.get(Counter.IotlbHits) + p.trace.counters.get(Counter.IotlbMisses)).toBe(0);
    expect(p.trace.events.events("tlp")[0]).toMatchObject({ path: "peer-via-switch", addr: bar.bus + 1000, len: 3096 });
  });

  it("bus addresses differ from CPU addresses by the host bridge's offset", () => {
    const p = withDomains(switchSpec({ hostBridges: [{ id: "hb0", busOffset: 16 * GiB }] }));
    const bar = p.endpoint(B).bars[0]!;
    expect(bar.bus).toBe(bar.phys + 16 * GiB);
    p.endpoint(A).dmaWrite(bar.bus, Uint8Array.of(7));
    expect(p.memory.read(bar.phys, 1)[0]).toBe(7);
  });

  it("a device reaches its own BAR without leaving the device", () => {
    const p = withDomains(switchSpec());
    const bar = p.endpoint(B).bars[1]!;
    p.endpoint(B).dmaWrite(bar.bus, Uint8Array.of(3));
    expect(p.memory.read(bar.phys, 1)[0]).toBe(3);
    expect(tlps(p).viaSwitch).toEqual([1, 1]);
  });

  it("ACS P2P request redirect at the requester's port sends the TLP up to the IOMMU", () => {
    const spec = switchSpec({ switches: [{ id: "sw0", parent: "rp0", downstreamPorts: [{ id: "sw0.dp0", acs: { rr: true } }, "sw0.dp1", "sw0.dp2"] }] });
    const p = withDomains(spec);
    const bar = p.endpoint(B).bars[0]!;
    const e = accessError(() => p.endpoint(A).dmaRead(bar.bus, 4));
    expect(e.kind).toBe("iommu-fault");
    expect(p.endpoint(A).iommu!.faults().at(-1)).toMatchObject({ device: A, iova: bar.bus, reason: "not-mapped" });
    expect(tlps(p).viaSwitch).toEqual([0, 0]);
  });

  it("redirected and mapped as MMIO through the IOMMU: peer-via-host-bridge when the host bridge is whitelisted", () => {
    const rr = { switches: [{ id: "sw0", parent: "rp0", downstreamPorts: [{ id: "sw0.dp0", acs: { rr: true } }, "sw0.dp1", "sw0.dp2"] }] };
    const p = withDomains(switchSpec({ ...rr, hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }] }));
    const prov = p.addP2pdmaProvider(B, 0);
    expect(p.pciP2pdmaMapType(prov, A)).toBe(PciP2pdmaMapType.THRU_HOST_BRIDGE);
    map(p, A, 0x100000, prov.phys, 8192, RW | IommuProt.MMIO);
    p.endpoint(A).dmaWrite(unsafeDmaAddr(0x100000 + 10), Uint8Array.of(1, 2, 3));
    expect([...p.memory.read(physAddr(prov.phys + 10), 3)]).toEqual([1, 2, 3]);
    expect(tlps(p).viaHostBridge).toEqual([1, 3]);

    const q = withDomains(switchSpec(rr)); // same, but the host bridge is not on the whitelist
    const qprov = q.addP2pdmaProvider(B, 0);
    expect(q.pciP2pdmaMapType(qprov, A)).toBe(PciP2pdmaMapType.NOT_SUPPORTED);
    map(q, A, 0x100000, qprov.phys, 8192);
    const e = accessError(() => { q.endpoint(A).dmaWrite(unsafeDmaAddr(0x100000), Uint8Array.of(1)); });
    expect(e.kind).toBe("unsupported-request");
    expect(e.message).toMatch(/does not forward peer-to-peer/);
    expect(q.memory.read(qprov.phys, 1)[0]).toBe(0);
  });

  it("ACS on the provider's port only: the kernel refuses bus addresses, the switch still turns the request", () => {
    const spec = switchSpec({ switches: [{ id: "sw0", parent: "rp0", downstreamPorts: ["sw0.dp0", { id: "sw0.dp1", acs: { rr: true } }, "sw0.dp2"] }] });
    const p = withDomains(spec);
    const prov = p.addP2pdmaProvider(B, 0);
    expect(p.pciP2pdmaMapType(prov, A)).toBe(PciP2pdmaMapType.NOT_SUPPORTED);
    p.endpoint(A).dmaWrite(prov.bus, Uint8Array.of(1));
    expect(tlps(p).viaSwitch).toEqual([1, 1]);
    expect(accessError(() => { p.endpoint(B).dmaWrite(p.endpoint(A).bars[0]!.bus, Uint8Array.of(1)); }).kind).toBe("iommu-fault");
  });

  it("an untrusted device never reaches a peer directly", () => {
    const p = withDomains(withEndpoints(switchSpec(), (e) => (e.bdf === A ? { ...e, untrusted: true } : e)));
    const bar = p.endpoint(B).bars[0]!;
    expect(accessError(() => p.endpoint(A).dmaRead(bar.bus, 4)).kind).toBe("iommu-fault");
    // The trusted peer still reaches the untrusted device's BAR: redirect acts where requests enter.
    p.endpoint(B).dmaWrite(p.endpoint(A).bars[0]!.bus, Uint8Array.of(1));
    expect(tlps(p).viaSwitch).toEqual([1, 1]);
  });

  it("a peer on another root port is reached only through the root complex", () => {
    const noIommu = (p2p: "none" | "any"): PlatformSpec => {
      const s = switchSpec({ hostBridges: [{ id: "hb0", p2p }] });
      delete (s as { iommu?: unknown }).iommu;
      return s;
    };
    const p = createPlatform(noIommu("none"));
    const bar = p.endpoint(B).bars[0]!;
    expect(accessError(() => p.endpoint(C).dmaRead(bar.bus, 4)).kind).toBe("unsupported-request");
    const q = createPlatform(noIommu("any"));
    q.memory.write(bar.phys, Uint8Array.of(11));
    expect(q.endpoint(C).dmaRead(bar.bus, 1)[0]).toBe(11);
    expect(tlps(q).viaHostBridge).toEqual([1, 1]);
  });

  it("an IOVA equal to a peer's bus address is claimed by the switch before the IOMMU sees it", () => {
    // The reason iommu-dma reserves the host bridge windows from IOVA space (iova_reserve_pci_windows).
    const p = withDomains(switchSpec());
    const bar = p.endpoint(B).bars[0]!;
    p.memory.write(physAddr(0x7000), Uint8Array.of(1));
    map(p, A, bar.bus, 0x7000, 4096);
    expect(p.endpoint(A).dmaRead(bar.bus, 1)[0]).toBe(0); // the peer's BAR, not RAM
    expect(tlps(p).viaSwitch).toEqual([1, 1]);
    const w = p.endpoint(A).hostBridge.window;
    expect(bar.bus >= w.bus && bar.bus + bar.size <= w.bus + w.size).toBe(true);
  });

  it("kernel BUS_ADDR implies the fabric delivers the bus address directly, for every ACS setting of the switch ports", () => {
    const flags = [{}, { rr: true }, { cr: true }, { ec: true }, { sv: true, uf: true }];
    for (const a of flags) {
      for (const b of flags) {
        const spec = switchSpec({ switches: [{ id: "sw0", parent: "rp0", downstreamPorts: [{ id: "sw0.dp0", acs: a }, { id: "sw0.dp1", acs: b }, "sw0.dp2"] }] });
        const p = withDomains(spec);
        const prov = p.addP2pdmaProvider(B, 0);
        if (p.pciP2pdmaMapType(prov, A) !== PciP2pdmaMapType.BUS_ADDR) continue;
        p.endpoint(A).dmaWrite(prov.bus, Uint8Array.of(1));
        expect(tlps(p).viaSwitch).toEqual([1, 1]);
      }
    }
  });
});

describe("bad arguments", () => {
  it.each<[string, (p: Platform) => unknown, RegExp]>([
    ["negative address", (p) => p.endpoint(A).dmaRead(unsafeDmaAddr(-1), 4), /addr = -1/],
    ["fractional address", (p) => { p.endpoint(A).dmaWrite(unsafeDmaAddr(1.5), Uint8Array.of(1)); }, /addr = 1.5/],
    ["negative length", (p) => p.endpoint(A).dmaRead(unsafeDmaAddr(0), -4), /len = -4/],
    ["end beyond 2^53", (p) => p.endpoint(A).dmaRead(unsafeDmaAddr(2 ** 53 - 2), 4), /below 2\^53/],
    ["not a buffer", (p) => { p.endpoint(A).dmaWrite(unsafeDmaAddr(0), [1, 2] as unknown as Uint8Array); }, /Uint8Array/],
    ["unknown device", (p) => p.endpoint("0000:0f:00.0"), /ENODEV/],
  ])("%s is a PciError and moves nothing", (_name, call, msg) => {
    const p = withDomains(switchSpec());
    const before = p.trace.counters.snapshot();
    expect(() => call(p)).toThrow(PciError);
    expect(() => call(p)).toThrow(msg);
    expect(p.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });

  it("a zero-length access sends no TLP", () => {
    const p = withDomains(switchSpec());
    expect(p.endpoint(A).dmaRead(unsafeDmaAddr(0), 0)).toEqual(new Uint8Array(0));
    p.endpoint(A).dmaWrite(unsafeDmaAddr(0), new Uint8Array(0));
    expect(p.trace.counters.snapshot().nonZero()).toEqual({});
  });
});

describe("trace events", () => {
  it("are built only while someone listens; counters move either way", () => {
    const p = withDomains(switchSpec());
    const bar = p.endpoint(B).bars[0]!;
    p.endpoint(A).dmaWrite(bar.bus, bytes(8192, 1));
    expect(p.trace.events.events()).toEqual([]);
    const seen: string[] = [];
    const off = p.trace.events.subscribe((e) => seen.push(e.type === "tlp" ? `${e.path}:${e.len}` : e.type));
    p.endpoint(A).dmaWrite(bar.bus, bytes(4096, 1));
    expect(() => p.endpoint(A).dmaRead(unsafeDmaAddr(0x1000), 4)).toThrow(PcieAccessError);
    off();
    p.endpoint(A).dmaWrite(bar.bus, bytes(4096, 1));
    expect(seen).toEqual(["peer-via-switch:4096", "iotlb.lookup", "iommu.fault"]);
    expect(tlps(p).viaSwitch).toEqual([4, 16384]);
  });
});

describe("multiple devices and units", () => {
  it("each endpoint translates through its own unit", () => {
    const p = withDomains({
      memory: { ramBytes: 64 * MiB },
      iommu: [{}, {}],
      endpoints: [{ bdf: DEV }, { bdf: A, iommu: "iommu1", bars: [{ size: 64 * KiB }] }],
    });
    p.memory.write(physAddr(0x1000), Uint8Array.of(1));
    p.memory.write(physAddr(0x2000), Uint8Array.of(2));
    map(p, DEV, 0, 0x1000, 4096);
    map(p, A, 0, 0x2000, 4096);
    expect([p.endpoint(DEV).dmaRead(unsafeDmaAddr(0), 1)[0], p.endpoint(A).dmaRead(unsafeDmaAddr(0), 1)[0]]).toEqual([1, 2]);
    expect(p.iommus[1]!.domainOf(A)?.iommu).toBe(p.iommus[1]);
  });
});
