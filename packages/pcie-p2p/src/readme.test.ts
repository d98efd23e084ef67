// The README's example, read from the README and run as written, so it keeps working.
import * as iommuModule from "@dmasim/iommu";
import * as memoryModule from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as p2pModule from "./index.js";
import { PciP2pdmaMapType, PcieAccessError } from "./index.js";
import type { Endpoint, P2pdmaProvider, Platform } from "./index.js";
import { physAddr } from "@dmasim/memory";

describe("README example", () => {
  it("runs as printed", () => {
    const r = runReadmeBlock(new URL("../README.md", import.meta.url), {
      "@dmasim/pcie-p2p": p2pModule,
      "@dmasim/iommu": iommuModule,
      "@dmasim/memory": memoryModule,
    });
    const platform = r.platform as Platform;
    const cmb = r.cmb as P2pdmaProvider;
    const nic = r.nic as Endpoint;
    expect(platform.describe()).toBe(`hb0, host bridge, p2p same-host-bridge, window 0x100000000+1 TiB
└─ rp0, root port
   └─ sw0.up, switch upstream port
      ├─ sw0.dp0, switch downstream port
      │  └─ 0000:02:00.0, endpoint, iommu0
      └─ sw0.dp1, switch downstream port
         └─ 0000:03:00.0, endpoint, iommu0, BAR0 0x100000000 (bus 0x100000000) 256 MiB`);
    expect(platform.pciP2pdmaMapType(cmb, nic.bdf)).toBe(PciP2pdmaMapType.BUS_ADDR);
    expect(platform.pciP2pdmaDistance(cmb, [nic.bdf])).toBe(4);
    expect(new TextDecoder().decode(platform.memory.read(physAddr(cmb.phys + 4096), 5))).toBe("hello");
    expect(platform.memory.read(physAddr(0x200000), 8192).every((b) => b === 7)).toBe(true);
    const fault = r.fault as PcieAccessError;
    expect(fault).toBeInstanceOf(PcieAccessError);
    expect([fault.kind, fault.completed]).toEqual(["iommu-fault", 4096]);
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
