import { describe, expect, it } from "vitest";
import { PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_MAPPING_ERROR,
  DmaDirection,
  dmaMapPhys,
  dmaUnmapPhys,
  PciP2pdmaMapState,
  dmaMapResource,
  dmaMappingError,
  dmaUnmapResource,
  p2pdmaProviderOf,
  pciP2pdmaBusAddrMap,
  pciP2pdmaState,
} from "./index.js";
import { CLIENT, FAR_CLIENT, PROVIDER, freshPages, moved, p2pRig, pattern } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

const { NONE, BUS_ADDR, THRU_HOST_BRIDGE, NOT_SUPPORTED } = PciP2pdmaMapType;

describe("pciP2pdmaState", () => {
  it("is NONE for RAM and BUS_ADDR for a provider under the same switch", () => {
    const { platform, kernel } = p2pRig();
    const provider = platform.addP2pdmaProvider(PROVIDER, 0);
    const dev = kernel.device(CLIENT);
    const state = new PciP2pdmaMapState();
    expect(pciP2pdmaState(state, dev, unsafePhysAddr(freshPages(platform, 1)))).toBe(NONE);
    expect(state.map).toBe(PciP2pdmaMapType.UNKNOWN);
    expect(pciP2pdmaState(state, dev, unsafePhysAddr(provider.phys + 5 * PAGE_SIZE))).toBe(BUS_ADDR);
    expect(state.mem).toBe(provider);
  });

  for (const [bridge, expected] of [
    ["none", NOT_SUPPORTED],
    ["same-host-bridge", THRU_HOST_BRIDGE],
    ["any", THRU_HOST_BRIDGE],
  ] as const) {
    it(`across root ports of a host bridge listed "${bridge}" is ${String(expected)}`, () => {
      const { platform, kernel } = p2pRig({ hostBridgeP2p: bridge });
      const provider = platform.addP2pdmaProvider(PROVIDER, 0);
      expect(pciP2pdmaState(new PciP2pdmaMapState(), kernel.device(FAR_CLIENT), provider.phys)).toBe(expected);
      // The switch path does not depend on the host bridge.
      expect(pciP2pdmaState(new PciP2pdmaMapState(), kernel.device(CLIENT), provider.phys)).toBe(BUS_ADDR);
    });
  }

  it("decides once per provider change while walking pages (P2pStateLookups)", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "any" });
    const b = platform.addP2pdmaProvider(PROVIDER, 0, { size: 1024 * 1024 });
    const b2 = platform.addP2pdmaProvider(PROVIDER, 0, { offset: 1024 * 1024, size: 1024 * 1024 });
    const c = platform.addP2pdmaProvider(FAR_CLIENT, 0);
    const ram = freshPages(platform, 1);
    const dev = kernel.device(CLIENT);
    const state = new PciP2pdmaMapState();
    const walk = [b.phys, b.phys + PAGE_SIZE, ram, b.phys + 2 * PAGE_SIZE, b2.phys, b2.phys + PAGE_SIZE, c.phys, c.phys + PAGE_SIZE, b.phys];
    const m = moved(platform, () => walk.map((p) => pciP2pdmaState(state, dev, unsafePhysAddr(p))));
    expect(m.result).toEqual([BUS_ADDR, BUS_ADDR, NONE, BUS_ADDR, BUS_ADDR, BUS_ADDR, THRU_HOST_BRIDGE, THRU_HOST_BRIDGE, BUS_ADDR]);
    // b, b2, c, b again: four changes of provider; RAM in between leaves the cached decision alone.
    expect(m.get(Counter.P2pStateLookups)).toBe(4);
    // One struct page read for RAM (is_pci_p2pdma_page), two for P2P pages (plus page_pgmap).
    expect(m.get(Counter.PageDescLookups)).toBe(1 + 2 * (walk.length - 1));
  });
});

describe("p2pdmaProviderOf and pciP2pdmaBusAddrMap", () => {
  it("find the owning provider and give the address a peer uses behind a bus offset", () => {
    const { platform, kernel, ep } = p2pRig({ busOffset: 0x4000_0000 });
    const provider = platform.addP2pdmaProvider(PROVIDER, 0, { offset: 64 * 1024, size: 256 * 1024 });
    const dev = kernel.device(CLIENT);
    expect(p2pdmaProviderOf(dev, unsafePhysAddr(provider.phys + 3 * PAGE_SIZE))).toBe(provider);
    expect(p2pdmaProviderOf(dev, unsafePhysAddr(provider.phys - PAGE_SIZE))).toBeUndefined(); // BAR, but not P2P memory
    expect(p2pdmaProviderOf(dev, unsafePhysAddr(freshPages(platform, 1)))).toBeUndefined();
    const phys = provider.phys + 2 * PAGE_SIZE + 0x10;
    const bus = pciP2pdmaBusAddrMap(provider, unsafePhysAddr(phys));
    expect(bus).toBe(phys + 0x4000_0000);
    // The peer's write by bus address goes through the switch straight into the provider's BAR.
    const m = moved(platform, () => {
      ep.dmaWrite(bus, pattern(256, 1));
    });
    expect(m.get(Counter.TlpsPeerViaSwitch)).toBe(1);
    expect(m.get(Counter.IommuMapCalls) + m.get(Counter.TlpsToMemory)).toBe(0);
    expect(platform.memory.read(physAddr(phys), 256)).toEqual(pattern(256, 1));
  });
});

describe("THRU_HOST_BRIDGE: a peer BAR mapped through the IOMMU", () => {
  it("P2P pages are mapped with dmaMapPhys(DMA_ATTR_MMIO) and the far device reads them through the host bridge", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "same-host-bridge" });
    const provider = platform.addP2pdmaProvider(PROVIDER, 0);
    const dev = kernel.device(FAR_CLIENT);
    expect(pciP2pdmaState(new PciP2pdmaMapState(), dev, provider.phys)).toBe(THRU_HOST_BRIDGE);
    platform.memory.write(physAddr(provider.phys + PAGE_SIZE), pattern(512, 2));
    const addr = dmaMapPhys(dev, physAddr(provider.phys + PAGE_SIZE), 512, DmaDirection.TO_DEVICE, DMA_ATTR_MMIO);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBe(provider.phys + PAGE_SIZE);
    const m = moved(platform, () => platform.endpoint(FAR_CLIENT).dmaRead(addr, 512));
    expect(m.result).toEqual(pattern(512, 2));
    expect(m.get(Counter.TlpsPeerViaHostBridge)).toBe(1);
    dmaUnmapPhys(dev, addr, 512, DmaDirection.TO_DEVICE, DMA_ATTR_MMIO);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });

  it("dmaMapResource maps a BAR that is not P2P memory, and refuses the provider's pages", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "same-host-bridge", kernel: { debug: "collect" } });
    const provider = platform.addP2pdmaProvider(PROVIDER, 0);
    const dev = kernel.device(CLIENT);
    const bar = platform.endpoint(FAR_CLIENT).bars[0]!;
    platform.memory.write(physAddr(bar.phys + 0x100), pattern(64, 3));
    const addr = dmaMapResource(dev, physAddr(bar.phys + 0x100), 64, DmaDirection.BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    const m = moved(platform, () => platform.endpoint(CLIENT).dmaRead(addr, 64));
    expect(m.result).toEqual(pattern(64, 3));
    expect(m.get(Counter.TlpsPeerViaHostBridge)).toBe(1);
    dmaUnmapResource(dev, addr, 64, DmaDirection.BIDIRECTIONAL);
    expect(dmaMapResource(dev, provider.phys, 64, DmaDirection.BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["api-warn"]);
  });
});
