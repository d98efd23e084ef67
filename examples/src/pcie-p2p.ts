// @dmasim/pcie-p2p: the PCIe fabric. Every DMA a device makes is a TLP that crosses the topology: to
// memory through the IOMMU, or peer to peer through a switch when ACS allows. pci_p2pdma_map_type
// says which way two devices may talk.
import { IommuProt, iova, unsafeIova } from "@dmasim/iommu";
import { GiB, MiB, physAddr } from "@dmasim/memory";
import { PciP2pdmaMapType, PcieAccessError, busAddr, createPlatform } from "@dmasim/pcie-p2p";
import { unsafeDmaAddr } from "@dmasim/dma";

const platform = createPlatform({
  memory: { ramBytes: 4 * GiB },
  iommu: {},
  rootPorts: [{ id: "rp0" }],
  switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
  endpoints: [
    { bdf: "0000:02:00.0", parent: "sw0.dp0" }, // a NIC
    { bdf: "0000:03:00.0", parent: "sw0.dp1", bars: [{ size: 256 * MiB }] }, // an NVMe drive with a CMB
  ],
});

// The drive's controller memory buffer becomes P2PDMA memory; the NIC writes it through the switch.
const cmb = platform.addP2pdmaProvider("0000:03:00.0", 0);
const mapType = platform.pciP2pdmaMapType(cmb, "0000:02:00.0");
const typeName = Object.entries(PciP2pdmaMapType).find(([, v]) => v === mapType)?.[0];
console.log(`map type NIC -> CMB: ${typeName}, distance ${platform.pciP2pdmaDistance(cmb, ["0000:02:00.0"])}`);
const nic = platform.endpoint("0000:02:00.0");
nic.dmaWrite(busAddr(cmb.bus + 4096), new TextEncoder().encode("hello"));
console.log(`the CPU reads the CMB: "${new TextDecoder().decode(platform.memory.read(physAddr(cmb.phys + 4096), 5))}"`);

// To memory: through the IOMMU, which the DMA layer would set up; here by hand, 8 KiB mapped.
const iommu = platform.iommuFor("0000:02:00.0");
if (iommu === undefined) throw new Error("no IOMMU in front of the NIC");
const domain = iommu.allocDomain("paging");
iommu.attachDevice("0000:02:00.0", domain);
domain.map(iova(0x1000_0000), physAddr(0x20_0000), 8192, IommuProt.READ | IommuProt.WRITE);
platform.memory.write(physAddr(0x20_0000), new Uint8Array(8192).fill(7));
console.log(`the NIC reads 8 KiB: sum ${nic.dmaRead(unsafeDmaAddr(unsafeIova(iova(0x1000_0000))), 8192).reduce((a, b) => a + b, 0)}`);
try {
  nic.dmaRead(unsafeDmaAddr(unsafeIova(iova(0x1000_0000 + 4096))), 8192); // runs 4 KiB past the mapping
} catch (e) {
  if (!(e instanceof PcieAccessError)) throw e;
  console.log(`${e.kind} after ${e.completed} bytes`);
}
console.log(`counters: ${JSON.stringify(platform.trace.counters.snapshot().nonZero())}`);
// Output:
// map type NIC -> CMB: BUS_ADDR, distance 4
// the CPU reads the CMB: "hello"
// the NIC reads 8 KiB: sum 57344
// iommu-fault after 4096 bytes
// counters: {"MemReadBytes":12293,"MemWriteBytes":8197,"MemPagesMaterialised":3,"IommuMapCalls":1,"PteWrites":2,"PtPagesAllocated":3,"PtWalks":3,"PtWalkLevels":12,"IotlbHits":1,"IotlbMisses":3,"IommuFaults":1,"TlpsToMemory":3,"BytesToMemory":12288,"TlpsPeerViaSwitch":1,"BytesPeerViaSwitch":5}
