import type { PlatformSpec } from "@dmasim/pcie-p2p";
import type { DmabufWorkload, Scenario } from "./types.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const NIC = "0000:02:00.0";
const GPU = "0000:03:00.0";
const FAR_GPU = "0000:05:00.0";

/**
 * A host with an IOMMU whose host bridge forwards P2P between its root ports: rp0 leads to a switch with
 * the importer (an RDMA NIC) and a GPU with 32 MiB of VRAM behind BAR 0; another GPU sits on rp1.
 */
function dmabufHostSpec(): PlatformSpec {
  return {
    memory: { ramBytes: 2 * GiB },
    iommu: {},
    hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
    rootPorts: [{ id: "rp0" }, { id: "rp1" }],
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
    endpoints: [
      { bdf: NIC, parent: "sw0.dp0" },
      { bdf: GPU, parent: "sw0.dp1", bars: [{ size: 32 * MiB }] },
      { bdf: FAR_GPU, parent: "rp1", bars: [{ size: 32 * MiB }] },
    ],
  };
}

const NVME = "0000:02:00.0";
const VFIO = "0000:04:00.0";
const NVME_NIC = "0000:07:00.0";

/**
 * The NVMe importer's host: rp0 leads to a switch with the drive (BAR 0: its doorbells), a GPU with 32 MiB
 * of VRAM, a device whose BAR 0 VFIO exports, and a NIC; another GPU sits on rp1.
 */
function nvmeDmabufHostSpec(): PlatformSpec {
  return {
    memory: { ramBytes: 2 * GiB },
    iommu: {},
    hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
    rootPorts: [{ id: "rp0" }, { id: "rp1" }],
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 4 }],
    endpoints: [
      { bdf: NVME, parent: "sw0.dp0", bars: [{ size: 16 * 1024 }] },
      { bdf: GPU, parent: "sw0.dp1", bars: [{ size: 32 * MiB }] },
      { bdf: VFIO, parent: "sw0.dp2", bars: [{ size: 4 * MiB }] },
      { bdf: NVME_NIC, parent: "sw0.dp3" },
      { bdf: FAR_GPU, parent: "rp1", bars: [{ size: 32 * MiB }] },
    ],
  };
}

/** An NVMe-importer scenario: the drive reads and writes a dma-buf; classic (sg_table) vs two-step (range list), strict. */
function nvmeScenario(name: string, seed: number, description: string, workload: Omit<DmabufWorkload, "kind" | "device">, expect?: Scenario["expect"]): Scenario {
  return { name, description, platform: nvmeDmabufHostSpec(), axes: { iommu: ["strict"] }, seed, ...(expect === undefined ? {} : { expect }), workload: { kind: "dmabuf", device: NVME, ...workload } };
}

/** A dma-buf scenario, small so that `dmasim demo` stays quick; strict IOMMU only, classic (sg_table) vs two-step (range list). */
function dmabufScenario(name: string, seed: number, description: string, workload: Omit<DmabufWorkload, "kind" | "device">, expect?: Scenario["expect"]): Scenario {
  return { name, description, platform: dmabufHostSpec(), axes: { iommu: ["strict"] }, seed, ...(expect === undefined ? {} : { expect }), workload: { kind: "dmabuf", device: NIC, ...workload } };
}

/** dma-buf scenarios (@dmasim/dmabuf): classic maps the exporter's sg_table, two-step the physical-range list. */
export const DMABUF_SCENARIOS: readonly Scenario[] = [
  dmabufScenario("dmabuf-p2p-switch", 21, "A NIC imports a GPU's VRAM buffer under the same switch: bus addresses, no IOVA", { exporter: GPU, flow: "p2p", bytes: 4 * MiB }, { mapType: "BUS_ADDR" }),
  dmabufScenario("dmabuf-p2p-host-bridge", 22, "A NIC imports a GPU's VRAM buffer on another root port: one IOVA linked as MMIO, through the host bridge", { exporter: FAR_GPU, flow: "p2p", bytes: 4 * MiB }, { mapType: "THRU_HOST_BRIDGE" }),
  dmabufScenario("dmabuf-migrate", 23, "The GPU moves the buffer to RAM and back: copy, KERNEL fence, invalidate_mappings; the NIC rebinds and waits for the fence", { exporter: FAR_GPU, flow: "migrate", bytes: 4 * MiB }),
  dmabufScenario("dmabuf-mixed-remap", 24, "A buffer half in VRAM, half in RAM, one block moves: sg_table vs the physical-range list (metadata, IOVAs, PTE writes, syncs, remap)", { exporter: FAR_GPU, flow: "mixed-remap", bytes: 8 * MiB }),
  dmabufScenario("dmabuf-vfio-revoke", 25, "VFIO exports two BAR ranges; memory disable revokes, the NIC unmaps, enable lets it map again, close revokes for good", { exporter: GPU, flow: "vfio-revoke", bytes: 1 * MiB }),
  nvmeScenario("dmabuf-nvme-switch", 26, "An NVMe drive reads and writes a GPU's VRAM buffer under the same switch: PRPs of bus addresses, no IOVA", { exporter: GPU, flow: "nvme-p2p", bytes: 2 * MiB }, { mapType: "BUS_ADDR" }),
  nvmeScenario("dmabuf-nvme-host-bridge", 27, "An NVMe drive reads and writes a GPU's VRAM buffer on another root port: one IOVA mapped as MMIO, through the host bridge", { exporter: FAR_GPU, flow: "nvme-p2p", bytes: 2 * MiB }, { mapType: "THRU_HOST_BRIDGE" }),
  nvmeScenario("dmabuf-nvme-migrate", 28, "The GPU moves the buffer to RAM and back with NVMe commands in flight: they finish first, later ones map the new place, no write lost", { exporter: GPU, flow: "nvme-migrate", bytes: 2 * MiB }),
  nvmeScenario("dmabuf-nvme-revoke", 29, "VFIO revokes a BAR range with NVMe writes in flight: they finish, later commands fail, nothing reaches the BAR; enable, close", { exporter: VFIO, flow: "nvme-revoke", bytes: 1 * MiB }),
  nvmeScenario("dmabuf-nvme-nic-pressure", 30, "A GPU exports buffers to an NVMe drive and a NIC; VRAM pressure evicts both mid-workload; VFIO revokes a third buffer", { exporter: GPU, flow: "nvme-nic-pressure", bytes: 2 * MiB, nic: NVME_NIC, vfio: VFIO }),
];
