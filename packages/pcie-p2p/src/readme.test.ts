// The README's example, kept here so it keeps working.
import { IommuProt } from "@dmasim/iommu";
import { GiB, MiB } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PciP2pdmaMapType, PcieAccessError, createPlatform } from "./index.js";

describe("README example", () => {
  it("runs as printed", () => {
    const platform = createPlatform({
      memory: { ramBytes: 4 * GiB },
      iommu: {},
      hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
      rootPorts: [{ id: "rp0" }],
      switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
      endpoints: [
        { bdf: "0000:02:00.0", parent: "sw0.dp0" }, // a NIC
        { bdf: "0000:03:00.0", parent: "sw0.dp1", bars: [{ size: 256 * MiB }] }, // an NVMe drive with a CMB
      ],
    });
    expect(platform.describe()).toBe(`hb0, host bridge, p2p same-host-bridge, window 0x100000000+1 TiB
└─ rp0, root port
   └─ sw0.up, switch upstream port
      ├─ sw0.dp0, switch downstream port
      │  └─ 0000:02:00.0, endpoint, iommu0
      └─ sw0.dp1, switch downstream port
         └─ 0000:03:00.0, endpoint, iommu0, BAR0 0x100000000 (bus 0x100000000) 256 MiB`);

    // P2P: the CMB becomes P2PDMA memory; the NIC reaches it by bus address, through the switch.
    const cmb = platform.addP2pdmaProvider("0000:03:00.0", 0);
    expect(platform.pciP2pdmaMapType(cmb, "0000:02:00.0")).toBe(PciP2pdmaMapType.BUS_ADDR);
    expect(platform.pciP2pdmaDistance(cmb, ["0000:02:00.0"])).toBe(4);
    const nic = platform.endpoint("0000:02:00.0");
    nic.dmaWrite(cmb.bus + 4096, new TextEncoder().encode("hello"));
    expect(new TextDecoder().decode(platform.memory.read(cmb.phys + 4096, 5))).toBe("hello");

    // Memory: through the IOMMU. Nothing is attached at creation; the DMA layer normally does this.
    const iommu = platform.iommuFor("0000:02:00.0")!;
    const domain = iommu.allocDomain("paging");
    iommu.attachDevice("0000:02:00.0", domain);
    domain.map(0x10000000, 0x200000, 8192, IommuProt.READ | IommuProt.WRITE);
    platform.memory.write(0x200000, new Uint8Array(8192).fill(7));
    expect(nic.dmaRead(0x10000000, 8192).every((b) => b === 7)).toBe(true);
    const err = (() => {
      try {
        nic.dmaRead(0x10000000 + 4096, 8192); // runs past the end of the mapping
      } catch (e) {
        return e as PcieAccessError;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(PcieAccessError);
    expect([err?.kind, err?.completed]).toEqual(["iommu-fault", 4096]);
    expect(platform.trace.counters.snapshot().nonZero()).toMatchObject({
      TlpsToMemory: 3,
      BytesToMemory: 12288,
      TlpsPeerViaSwitch: 1,
      BytesPeerViaSwitch: 5,
      IotlbMisses: 3,
      IotlbHits: 1,
      IommuFaults: 1,
    });
  });
});
