import type { PlatformSpec } from "@dmasim/pcie-p2p";
import { DMABUF_SCENARIOS } from "./builtins-dmabuf.js";
import type { HmmWorkload, RdmaOdpWorkload, Scenario } from "./types.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const NVME = "0000:02:00.0";
const PEER = "0000:03:00.0";
const REMOTE_PEER = "0000:05:00.0";
const EXTERNAL = "0000:07:00.0";

/**
 * A host with an IOMMU; host bridge hb0 forwards P2P between its root ports (an Intel Xeon whitelist
 * entry). rp0 leads to a switch with the NVMe drive and a peer with 64 MiB of P2P memory (a GPU, say);
 * another peer sits on rp1. `acs` sets the switch's downstream ports' ACS controls.
 */
function nvmeHostSpec(acs?: { rr: boolean; cr: boolean }): PlatformSpec {
  return {
    memory: { ramBytes: 4 * GiB },
    iommu: {},
    hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
    rootPorts: [{ id: "rp0" }, { id: "rp1" }],
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2, ...(acs === undefined ? {} : { acs }) }],
    endpoints: [
      { bdf: NVME, parent: "sw0.dp0", bars: [{ size: 16 * 1024 }] },
      { bdf: PEER, parent: "sw0.dp1", bars: [{ size: 64 * MiB }] },
      { bdf: REMOTE_PEER, parent: "rp1", bars: [{ size: 64 * MiB }] },
    ],
  };
}

/** A host with an IOMMU and one device that mirrors a process (a GPU or an ODP-capable NIC, say). */
const HMM_DEV = "0000:01:00.0";
const hmmHost: PlatformSpec = { memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: HMM_DEV }] };

/** A mirrored-process scenario on hmmHost with strict invalidation: 256 pages unless the workload says otherwise. */
function hmmScenario(name: string, seed: number, description: string, workload: Omit<HmmWorkload, "kind" | "device" | "pages"> & { pages?: number }): Scenario {
  const { event, pages = 256, ...rest } = workload;
  return { name, description, platform: hmmHost, axes: { iommu: ["strict"] }, seed, workload: { kind: "hmm", device: HMM_DEV, event, pages, ...rest } };
}

/** Mirrored-process scenarios (@dmasim/hmm-odp): classic is the pfn-list driver, two-step hmm_dma_map and its batched variant. */
const HMM_SCENARIOS: readonly Scenario[] = [
  {
    name: "hmm-fault-in",
    description: "A device faults in 1,024 pages of a process through hmm_range_fault: dma_map_page per page vs hmm_dma_map vs batched",
    platform: hmmHost,
    axes: { iommu: ["strict", "lazy"] },
    seed: 11,
    workload: { kind: "hmm", device: HMM_DEV, event: "fault-in", pages: 1024 },
  },
  hmmScenario("hmm-race", 16, "An invalidation lands between hmm_range_fault and the driver lock: read_retry fails, the fault loop retries, no stale PTE", { event: "fault-in", race: "before-driver-lock" }),
  hmmScenario("hmm-munmap", 12, "munmap of half a mirrored range: the notifier unmaps the device's pages first, a device access there fails", { event: "munmap" }),
  hmmScenario("hmm-madvise", 13, "madvise(MADV_DONTNEED) on a mirrored range: translations dropped, the device re-faults and reads zeros", { event: "madvise" }),
  hmmScenario("hmm-fork", 14, "fork of a mirrored process: COW write-protect invalidates, the parent's write lands in new pages the device re-faults", { event: "fork" }),
  hmmScenario("hmm-migrate", 15, "Pages migrate to another device's private memory and back: the mirror loses them, then faults them back to RAM", { event: "migrate" }),
];

/**
 * Two mlx5-like NICs with ODP: NIC B (the responder) behind a switch beside a GPU whose BAR it reaches by
 * bus address; another GPU on rp1 (through the host bridge) and NIC A (the requester) on rp2.
 */
const NIC_B = "0000:02:00.0";
const GPU_SWITCH = "0000:03:00.0";
const GPU_BRIDGE = "0000:05:00.0";
const NIC_A = "0000:06:00.0";
const rdmaHost: PlatformSpec = {
  memory: { ramBytes: 4 * GiB },
  iommu: {},
  hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
  rootPorts: [{ id: "rp0" }, { id: "rp1" }, { id: "rp2" }],
  switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
  endpoints: [
    { bdf: NIC_B, parent: "sw0.dp0" },
    { bdf: GPU_SWITCH, parent: "sw0.dp1", bars: [{ size: 4 * MiB }] },
    { bdf: GPU_BRIDGE, parent: "rp1", bars: [{ size: 4 * MiB }] },
    { bdf: NIC_A, parent: "rp2" },
  ],
};

/** rdmaHost with a BAR 1 on each GPU: VRAM exported as a dma-buf (switch GPU) and a BAR VFIO exports (bridge GPU). */
const mixedHost: PlatformSpec = {
  ...rdmaHost,
  endpoints: [
    { bdf: NIC_B, parent: "sw0.dp0" },
    { bdf: GPU_SWITCH, parent: "sw0.dp1", bars: [{ size: 4 * MiB }, { size: 64 * MiB }] },
    { bdf: GPU_BRIDGE, parent: "rp1", bars: [{ size: 4 * MiB }, { size: 4 * MiB }] },
    { bdf: NIC_A, parent: "rp2" },
  ],
};

/** An ODP scenario on rdmaHost, NIC A → NIC B, strict IOMMU; the api axis is the ODP DMA strategy. */
function rdmaScenario(name: string, seed: number, description: string, workload: Omit<RdmaOdpWorkload, "kind" | "device" | "peer">): Scenario {
  return { name, description, platform: rdmaHost, axes: { iommu: ["strict"] }, seed, workload: { kind: "rdma-odp", device: NIC_B, peer: NIC_A, ...workload } };
}

/**
 * dmabuf MRs (ibv_reg_dmabuf_mr) on rdmaHost: rdma-core's dmabuf traffic tests, a buffer the GPU behind
 * NIC B's switch moves under traffic, and a VFIO revoke (the peer on rp1 exports its BAR). Classic maps the
 * exporter's sg_table, two-step the physical-range list the NIC's umem maps itself.
 */
const RDMA_DMABUF_SCENARIOS: readonly Scenario[] = [
  rdmaScenario("rdma-dmabuf-rc-traffic", 32, "rdma-core test_dmabuf_rc_traffic: SEND/RECV both ways between dynamic dmabuf MRs over GPU VRAM", { test: "dmabuf-rc-traffic", exporter: GPU_SWITCH }),
  rdmaScenario("rdma-dmabuf-rdma-traffic", 33, "rdma-core test_dmabuf_rdma_traffic: RDMA WRITE both ways between dynamic dmabuf MRs over GPU VRAM", { test: "dmabuf-rdma-traffic", exporter: GPU_SWITCH }),
  rdmaScenario("rdma-dmabuf-migrate", 34, "The GPU moves a dynamic dmabuf MR's buffer between VRAM and RAM under traffic: MTT zapped, fault, map, KERNEL fence wait", { test: "dmabuf-migrate", exporter: GPU_SWITCH }),
  rdmaScenario("rdma-dmabuf-revoke", 35, "VFIO revokes a pinned-revocable and a dynamic dmabuf MR: the first fails for good, the second until memory is back; a pinned one does not move", {
    test: "dmabuf-revoke",
    exporter: GPU_SWITCH,
    vfioDevice: GPU_BRIDGE,
  }),
];

/** rdma-core's tests/test_odp.py RC cases, the hodgepodge MR and the ODP DMA comparison (@dmasim/rdma). */
const RDMA_SCENARIOS: readonly Scenario[] = [
  rdmaScenario("odp-rc-traffic", 21, "test_odp.py rc_traffic: SEND/RECV between ODP MRs, madvise(MADV_DONTNEED) forcing faults before every iteration", { test: "rc-traffic" }),
  rdmaScenario("odp-rdma-write", 22, "test_odp.py rc_rdma_write: RDMA WRITE into an ODP MR that faults every iteration", { test: "rdma-write" }),
  rdmaScenario("odp-rdma-read", 23, "test_odp.py rc_rdma_read: RDMA READ of an ODP MR whose MTT the madvise zapped", { test: "rdma-read" }),
  rdmaScenario("odp-atomic", 24, "test_odp.py rc_atomic: fetch-and-add then compare-and-swap on a page that faults every iteration", { test: "atomic" }),
  rdmaScenario("odp-prefetch-sync", 25, "test_odp.py sync_prefetch: ibv_advise_mr PREFETCH_WRITE with FLUSH, then the WRITE faults nothing", { test: "prefetch-sync" }),
  rdmaScenario("odp-prefetch-async", 26, "test_odp.py async_prefetch: the advice runs on the NIC's workqueue, then the WRITE faults nothing", { test: "prefetch-async" }),
  rdmaScenario("odp-prefetch-no-fault", 27, "test_odp.py prefetch_no_page_fault: PREFETCH_NO_FAULT maps present pages and faults none in", { test: "prefetch-no-fault" }),
  rdmaScenario("odp-huge-pages", 28, "test_odp.py rc_huge_rdma_write: MAP_HUGETLB and IB_ACCESS_HUGETLB, one fault maps 2 MiB", { test: "huge-pages", iterations: 4 }),
  rdmaScenario("odp-implicit", 29, "test_odp.py implicit_rc_traffic: implicit ODP MRs over the whole address space, 1 GiB children made on demand", { test: "rc-traffic", implicit: true }),
  {
    name: "odp-hodgepodge",
    description: "One ODP MR over anonymous pages, a THP, a file, two peer BARs and GPU-migrated pages, read and written while the process changes",
    platform: rdmaHost,
    axes: { api: ["two-step"], iommu: ["strict", "lazy"] },
    seed: 30,
    workload: { kind: "rdma-odp", device: NIC_B, peer: NIC_A, test: "hodgepodge", switchBar: GPU_SWITCH, bridgeBar: GPU_BRIDGE },
  },
  rdmaScenario("odp-nic-workload", 31, "RDMA WRITEs of 64 KiB over 2 MiB of fresh ODP pages: ODP before the two-step API vs hmm_dma_map vs batched", { test: "nic-workload", pages: 512 }),
  ...RDMA_DMABUF_SCENARIOS,
  {
    name: "odp-mixed-mr",
    description: "One MR over user VA and dma-bufs (GPU VRAM, a VFIO BAR), dmasim's proposal: munmap, fork, migrations, a revoke; per-source quiescence and first-DMA times",
    platform: mixedHost,
    axes: { api: ["two-step"], iommu: ["strict", "lazy"] },
    seed: 32,
    workload: { kind: "rdma-odp", device: NIC_B, peer: NIC_A, test: "mixed-mr", switchBar: GPU_SWITCH, bridgeBar: GPU_BRIDGE, gpuVram: GPU_SWITCH, vfioBar: GPU_BRIDGE },
  },
];

/** The built-in scenarios: the same data a scenario file holds (`dmasim show <name>` prints one). */
export const BUILTIN_SCENARIOS: readonly Scenario[] = [
  {
    name: "nvme-4k-randread",
    description: "NVMe 4 KiB random reads at queue depth 32, every byte verified",
    platform: nvmeHostSpec(),
    seed: 1,
    workload: { kind: "nvme", device: NVME, ops: 2000, bsMin: 4096, readPct: 100, queueDepth: 32, layout: "contiguous", namespaceBytes: 8 * MiB },
  },
  {
    name: "nvme-128k-seqwrite",
    description: "NVMe 128 KiB sequential writes from scattered page-cache pages (32 bvecs per request)",
    platform: nvmeHostSpec(),
    seed: 2,
    workload: { kind: "nvme", device: NVME, ops: 200, bsMin: 128 * 1024, readPct: 0, queueDepth: 16, order: "sequential", layout: "scattered", namespaceBytes: 8 * MiB },
  },
  {
    name: "single-256-pages",
    description: "256 scattered 4 KiB pages for one I/O: dma_map_phys per page vs one IOVA with the two-step API",
    platform: { memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: NVME }] },
    seed: 6,
    workload: { kind: "single", device: NVME, buffers: 256, bytes: 4096, iova: "shared" },
  },
  {
    name: "sg-256",
    description: "A 256-entry scatter-gather table of scattered 4 KiB pages: dma_map_sgtable classic vs two-step",
    platform: { memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: NVME }] },
    seed: 3,
    workload: { kind: "sg", device: NVME, entries: 256, entryBytes: 4096, layout: "scattered", iterations: 4 },
  },
  {
    name: "p2p-switch",
    description: "NVMe reads and writes a peer's BAR under the same switch: BUS_ADDR, TLPs turn around in the switch",
    platform: nvmeHostSpec(),
    expect: { mapType: "BUS_ADDR" },
    workload: { kind: "p2p", device: NVME, provider: { bdf: PEER }, bytes: 64 * 1024, namespaceBytes: MiB },
  },
  {
    name: "p2p-host-bridge",
    description: "NVMe and a peer on different root ports: THRU_HOST_BRIDGE, an IOVA mapped as MMIO",
    platform: nvmeHostSpec(),
    expect: { mapType: "THRU_HOST_BRIDGE" },
    workload: { kind: "p2p", device: NVME, provider: { bdf: REMOTE_PEER }, bytes: 64 * 1024, namespaceBytes: MiB },
  },
  {
    name: "p2p-acs-redirect",
    description: "The same switch with ACS P2P redirect: peer requests go up to the root complex and through the IOMMU",
    platform: nvmeHostSpec({ rr: true, cr: true }),
    expect: { mapType: "THRU_HOST_BRIDGE" },
    workload: { kind: "p2p", device: NVME, provider: { bdf: PEER }, bytes: 64 * 1024, namespaceBytes: MiB },
  },
  {
    name: "untrusted-unaligned",
    description: "An untrusted (external) device and buffers that start mid-page: partial granules bounce through swiotlb",
    platform: { memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: EXTERNAL, untrusted: true }] },
    kernel: { devices: { [EXTERNAL]: { minAlignMask: 4095 } } },
    seed: 4,
    expect: { bounce: true },
    workload: { kind: "single", device: EXTERNAL, buffers: 16, bytes: 2 * 4096 + 300, offset: 100, iova: "per-buffer" },
  },
  {
    name: "confidential-guest",
    description: "A confidential guest (SEV-SNP/TDX) without an IOMMU: private memory is out of reach, all DMA bounces",
    platform: { memory: { ramBytes: 4 * GiB, confidential: true }, endpoints: [{ bdf: NVME, bars: [{ size: 16 * 1024 }] }] },
    kernel: { swiotlbBytes: 16 * MiB },
    axes: { iommu: ["off"] },
    seed: 5,
    expect: { bounce: true },
    workload: { kind: "nvme", device: NVME, ops: 500, bsMin: 4096, bsMax: 16 * 1024, readPct: 70, queueDepth: 8, layout: "contiguous", namespaceBytes: 4 * MiB },
  },
  {
    name: "lazy-stale-window",
    description: "After unmap, how long can the device still read the old address? Strict: never; lazy: until the flush queue runs",
    platform: { memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: NVME }] },
    workload: { kind: "stale-window", device: NVME, bytes: 4096, probeIntervalNs: 100_000, probeForNs: 20_000_000 },
  },
  ...HMM_SCENARIOS,
  ...RDMA_SCENARIOS,
  ...DMABUF_SCENARIOS,
];

/** The built-in scenario of that name (as `dmasim list` shows it), or undefined. */
export function builtinScenario(name: string): Scenario | undefined {
  return BUILTIN_SCENARIOS.find((s) => s.name === name);
}
