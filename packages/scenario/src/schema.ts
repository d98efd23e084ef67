import { COST_PROFILE_NAMES } from "@dmasim/dma";
import type { PlatformSpec } from "@dmasim/pcie-p2p";
import { z } from "zod";

/**
 * The scenario file format as a zod 4 schema: the TypeScript types of a scenario come from it
 * (types.ts), `validateScenario` checks with it, and scenario.schema.json is generated from it for
 * editors. Every message is the "expected …" part of an issue; the path comes from the schema.
 * Checks that relate several fields (block sizes against the namespace, the platform's BDFs) are in
 * refine.ts.
 */

const PAGE = 4096;
const MiB = 1024 * 1024;

const n = (v: number): string => v.toLocaleString("en-US");

/** A safe integer in [min, max]; one message for every way of missing it. */
function int(min: number, max: number, what: string): z.ZodNumber {
  const error = `${what} from ${n(min)} to ${n(max)}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** One of `choices`, named in the message. */
function oneOf<const T extends readonly [string, ...string[]]>(choices: T): z.ZodEnum<{ [K in T[number]]: K }> {
  return z.enum(choices, { error: `one of ${choices.map((c) => `"${c}"`).join(", ")}` });
}

/** An object that rejects unknown keys, naming the known ones, so a typo is never silently ignored. */
function fields<S extends z.ZodRawShape>(shape: S, what: string): z.ZodObject<S, z.core.$strict> {
  const known = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (iss) => (iss.code === "unrecognized_keys" ? `no such field (known: ${known})` : what),
  });
}

const str = z.string({ error: "a non-empty string" }).min(1, { error: "a non-empty string" });
const bdf = str.describe('a PCI address "dddd:bb:dd.f" of one of the platform\'s endpoints');

/** The DMA API paths a scenario can run: the scatterlist-era `classic` one, or the `two-step` dma_iova_* one. */
export const APIS = ["classic", "two-step"] as const;
/** The kernel's IOMMU modes a scenario can ask for (the DMA kernel's `iommuMode`). */
export const IOMMU_MODES = ["strict", "lazy", "passthrough", "off"] as const;
/** Every workload `kind` a scenario may name, in the order the schema lists them. */
export const WORKLOAD_KINDS = ["nvme", "sg", "single", "p2p", "stale-window", "hmm", "rdma-odp", "dmabuf"] as const;
/** What happens to an HMM workload's mirrored range after the device faulted it in. */
export const HMM_EVENTS = ["fault-in", "munmap", "madvise", "fork", "migrate"] as const;
/** The step of the device's first fault at which an HMM workload can inject an invalidation. */
export const HMM_RACE_STEPS = ["after-read-begin", "in-hmm-range-fault", "before-driver-lock", "before-read-retry"] as const;
/** The rdma-odp workload's tests: rdma-core's test_odp.py RC cases, the hodgepodge MR and the NIC workload. */
export const RDMA_ODP_TESTS = [
  "rc-traffic",
  "rdma-write",
  "rdma-read",
  "atomic",
  "prefetch-sync",
  "prefetch-async",
  "prefetch-no-fault",
  "huge-pages",
  "hodgepodge",
  "nic-workload",
  "dmabuf-rc-traffic",
  "dmabuf-rdma-traffic",
  "dmabuf-migrate",
  "dmabuf-revoke",
  "mixed-mr",
] as const;
/** What a dmabuf workload does with the shared buffer: P2P access, migration, a partial remap, a VFIO revoke; NVMe reading and writing the buffer by P2P (through a switch or the host bridge), while it migrates, is revoked, or under VRAM pressure beside a NIC. */
export const DMABUF_FLOWS = ["p2p", "migrate", "mixed-remap", "vfio-revoke", "nvme-p2p", "nvme-migrate", "nvme-revoke", "nvme-nic-pressure"] as const;
/** The pci_p2pdma_map_type names an expectation may give (without the PCI_P2PDMA_MAP_ prefix). */
export const P2P_MAP_TYPES = ["BUS_ADDR", "THRU_HOST_BRIDGE", "NOT_SUPPORTED", "NONE"] as const;

export const ApiSchema = oneOf(APIS).describe(
  "classic: the scatterlist-era path (dma_map_sg as upstream iommu_dma_map_sg, dma_map_phys per buffer); two-step: the dma_iova_* path",
);
export const IommuModeSchema = oneOf(IOMMU_MODES);

export const DeviceSpecSchema = fields(
  {
    coherent: z.boolean({ error: "true or false" }).exactOptional(),
    dmaMaskBits: int(12, 64, "a mask width in bits").exactOptional(),
    maxSegmentSize: int(1, 0xffffffff, "a byte count").exactOptional(),
    segBoundaryMask: int(0, Number.MAX_SAFE_INTEGER, "a mask").exactOptional(),
    minAlignMask: int(0, 0xffff, "a mask").exactOptional(),
  },
  "an object of device properties",
).describe("Per-device DMA properties (dma_set_mask, dma_set_max_seg_size, dma_set_seg_boundary, dma_set_min_align_mask)");

export const KernelSpecSchema = fields(
  {
    iommuMode: IommuModeSchema.exactOptional().describe('Default "strict" (a sweep\'s --iommu axis replaces it)'),
    swiotlbBytes: int(0, 1024 * MiB, "a byte count")
      .multipleOf(256 * 1024, { error: "a multiple of 262144 (one 128-slot segment)" })
      .exactOptional()
      .describe("swiotlb pool size in bytes (a multiple of 256 KiB); 0 for no swiotlb. Default 4 MiB"),
    debug: oneOf(["throw", "collect", "off"] as const).exactOptional().describe('dma-debug: "collect" (default: misuse becomes a failed check), "throw" or "off"'),
    costProfile: oneOf(COST_PROFILE_NAMES)
      .exactOptional()
      .describe('The cost profile that prices the counters: the IOMMU platform ("vtd", "smmuv3", …); default "default" (a CLI --profile replaces it)'),
    devices: z.record(bdf, DeviceSpecSchema, { error: "an object of device properties by BDF" }).exactOptional(),
  },
  "an object with iommuMode, swiotlbBytes, debug, costProfile, devices",
);

export const ScenarioExpectationsSchema = fields(
  {
    bounce: z.boolean({ error: "true or false" }).exactOptional().describe("true: some DMA must bounce through swiotlb; false: none may"),
    mapType: oneOf(P2P_MAP_TYPES).exactOptional().describe("The pci_p2pdma_map_type the provider and client must get (p2p workloads only)"),
  },
  "an object with bounce, mapType",
);

const nsBytes = int(64 * 1024, 256 * MiB, "a byte count").multipleOf(PAGE, { error: "a multiple of 4096" });
const blockSize = int(PAGE, 256 * MiB, "a block size").multipleOf(PAGE, { error: "a multiple of 4096" });

export const NvmeWorkloadSchema = fields(
  {
    kind: z.literal("nvme"),
    device: bdf.describe("The drive's BDF: an endpoint of the platform with a BAR0 of at least 16 KiB"),
    ops: int(1, 1_000_000, "a number of I/Os"),
    bsMin: blockSize.exactOptional().describe("Smallest block size in bytes, a multiple of 4 KiB; default 4 KiB"),
    bsMax: blockSize.exactOptional().describe("Largest block size in bytes; default bsMin"),
    readPct: int(0, 100, "a percentage").exactOptional().describe("Percentage of reads; default 100"),
    queueDepth: int(1, 1024, "a queue depth").exactOptional().describe("Default 32"),
    order: oneOf(["random", "sequential"] as const).exactOptional(),
    layout: oneOf(["contiguous", "scattered", "offset"] as const)
      .exactOptional()
      .describe("contiguous (one bvec), scattered (one random page per bvec), offset (starts 512 bytes into a page)"),
    namespaceBytes: nsBytes.exactOptional().describe("Size of the drive; default 8 MiB (it is prefilled, so keep it small)"),
    sglThreshold: int(0, Number.MAX_SAFE_INTEGER, "a byte count").exactOptional().describe("sgl_threshold in bytes; default 32 KiB"),
  },
  "an nvme workload object",
).describe("fio-like block I/O through the NVMe driver; every byte read and written is verified");

const entrySize = int(1, 16 * MiB, "a byte count");

export const SgWorkloadSchema = fields(
  {
    kind: z.literal("sg"),
    device: bdf,
    entries: int(1, 65_536, "a number of entries"),
    entryBytes: z
      .union([entrySize, z.tuple([entrySize, entrySize])], { error: "a byte count from 1 to 16 MiB, or a [min, max] pair of them" })
      .describe("Bytes per entry: a fixed size or a [min, max] range drawn from the seed"),
    offset: int(0, PAGE - 1, "an offset inside a page").exactOptional().describe("Offset of every entry inside its first page; default 0"),
    layout: oneOf(["contiguous", "scattered"] as const).exactOptional().describe("contiguous: entries back to back; scattered: a free page between entries"),
    iterations: int(1, 10_000, "a count").exactOptional().describe("Tables mapped one after another; default 1"),
  },
  "an sg workload object",
).describe("Scatter-gather tables mapped with dma_map_sgtable, read back by the device, unmapped");

export const SingleWorkloadSchema = fields(
  {
    kind: z.literal("single"),
    device: bdf,
    buffers: int(1, 65_536, "a number of buffers"),
    bytes: int(1, 64 * MiB, "a byte count"),
    offset: int(0, PAGE - 1, "an offset inside a page").exactOptional().describe("Offset of each buffer inside its first page; default 0"),
    iova: oneOf(["shared", "per-buffer"] as const)
      .exactOptional()
      .describe('Two-step: one IOVA for all buffers ("shared", needs page-aligned buffers) or one per buffer. Default "shared"'),
  },
  "a single workload object",
).describe("N buffers mapped one at a time (dma_map_phys) or in one IOVA (dma_iova_*), read by the device");

export const P2pWorkloadSchema = fields(
  {
    kind: z.literal("p2p"),
    device: bdf.describe("The NVMe drive (the P2P client)"),
    provider: fields({ bdf, bar: int(0, 5, "a BAR index").exactOptional() }, "an object with bdf and bar").describe(
      "The endpoint whose BAR is the P2P memory (pci_p2pdma_add_resource)",
    ),
    bytes: int(PAGE, 16 * MiB, "a byte count").multipleOf(PAGE, { error: "a multiple of 4096" }).exactOptional().describe("Bytes per transfer; default 64 KiB"),
    namespaceBytes: nsBytes.exactOptional(),
  },
  "a p2p workload object",
).describe("The NVMe drive writes a peer's BAR to its namespace and reads it back into the BAR");

export const StaleWindowWorkloadSchema = fields(
  {
    kind: z.literal("stale-window"),
    device: bdf,
    bytes: int(1, 16 * MiB, "a byte count").exactOptional().describe("Default 4 KiB"),
    probeIntervalNs: int(1000, 1e9, "nanoseconds").exactOptional().describe("Virtual time between probes; default 100 µs"),
    probeForNs: int(1000, 1e10, "nanoseconds").exactOptional().describe("Probe for this long at most; default 20 ms"),
  },
  "a stale-window workload object",
).describe("A buffer is unmapped, then the device keeps reading its old address: how long does it still work?");

export const HmmWorkloadSchema = fields(
  {
    kind: z.literal("hmm"),
    device: bdf.describe("The mirroring device (dmirror in DMA mode): an endpoint behind the platform's IOMMU"),
    event: oneOf(HMM_EVENTS).describe(
      "What happens to the mirrored range after the device faulted it in: nothing more (fault-in), munmap of its upper half, madvise(MADV_DONTNEED), fork with a COW write by the parent, or migration to another device's private memory and back",
    ),
    pages: int(1, 65_536, "a number of pages").exactOptional().describe("Pages of the mirrored range; default 256"),
    race: oneOf(HMM_RACE_STEPS)
      .exactOptional()
      .describe("Inject an invalidation (a NUMA migration of one page of the range) at this step of the device's first fault: a deterministic race the notifier sequence must catch"),
  },
  "an hmm workload object",
).describe(
  "A process range mirrored by a device through hmm_range_fault and an mmu_interval_notifier: classic is the pfn-list driver (dma_map_page per page), two-step is hmm_dma_map (one IOVA, a link and a sync per page) and its batched variant",
);

export const RdmaOdpWorkloadSchema = fields(
  {
    kind: z.literal("rdma-odp"),
    device: bdf.describe("The responder NIC (an mlx5-like ODP NIC): an endpoint behind the platform's IOMMU"),
    peer: bdf.exactOptional().describe("The requester NIC; default: a loopback QP pair on the device"),
    test: oneOf(RDMA_ODP_TESTS).describe(
      "An rdma-core tests/test_odp.py RC case (rc-traffic: SEND/RECV; rdma-write; rdma-read; atomic: fetch-and-add then compare-and-swap; prefetch-sync, prefetch-async, prefetch-no-fault: ibv_advise_mr; huge-pages: MAP_HUGETLB with IB_ACCESS_HUGETLB), hodgepodge (one ODP MR over anonymous pages, a THP, a file, two peer BARs and pages that migrate to a GPU), nic-workload (RDMA WRITEs in 64 KiB WQEs over fresh pages: the ODP DMA comparison), or a dmabuf MR test (ibv_reg_dmabuf_mr; classic maps the exporter's sg_table, two-step the physical-range list): dmabuf-rc-traffic and dmabuf-rdma-traffic (rdma-core's test_dmabuf_rc_traffic, test_dmabuf_rdma_traffic), dmabuf-migrate (the GPU moves the buffer under traffic), dmabuf-revoke (VFIO revokes a pinned-revocable and a dynamic MR)",
    ),
    implicit: z.boolean({ error: "true or false" }).exactOptional().describe("Implicit ODP MRs (the whole address space, 1 GiB children on demand); default false"),
    iterations: int(1, 10_000, "a count").exactOptional().describe("Iterations of a test_odp.py case, each after a madvise(MADV_DONTNEED) that forces faults on both sides; default 10"),
    messageBytes: int(8, 16 * 1024, "a byte count").exactOptional().describe("Bytes per message of a test_odp.py case; default 1024"),
    pages: int(1, 65_536, "a number of pages").exactOptional().describe("nic-workload: pages of the ODP MR; default 512"),
    wqeBytes: int(PAGE, 16 * MiB, "a byte count").multipleOf(PAGE, { error: "a multiple of 4096" }).exactOptional().describe("nic-workload: bytes per RDMA WRITE; default 64 KiB"),
    switchBar: bdf.exactOptional().describe("hodgepodge: a peer whose BAR 0 the NIC reaches by bus address (behind the NIC's switch)"),
    bridgeBar: bdf.exactOptional().describe("hodgepodge: a peer whose BAR 0 the NIC reaches through the host bridge"),
    exporter: bdf.exactOptional().describe("dmabuf-*: the GPU whose BAR 0 is the VRAM its dma-bufs live in (ibv_reg_dmabuf_mr)"),
    vfioDevice: bdf.exactOptional().describe("dmabuf-revoke: the device whose BAR 0 ranges VFIO exports as dma-bufs"),
    gpuVram: bdf.exactOptional().describe("mixed-mr (dmasim's proposal: one MR over user VA and dma-bufs): a GPU whose BAR 1 is VRAM, exporting a dma-buf that migrates"),
    vfioBar: bdf.exactOptional().describe("mixed-mr: a device whose BAR 1 VFIO exports as a dma-buf (revoked by a memory disable)"),
  },
  "an rdma-odp workload object",
).describe(
  "An mlx5-like NIC with on-demand paging (@dmasim/rdma): classic is ODP before the two-step API (a dma_map_page and a dma_addr_t per page), two-step is hmm_dma_map (one IOVA per umem) and its batched variant; every byte verified",
);

export const DmabufWorkloadSchema = fields(
  {
    kind: z.literal("dmabuf"),
    device: bdf.describe("The importer (an RDMA NIC, say): a dynamic importer that maps on access and unmaps in its invalidate_mappings callback"),
    exporter: bdf.describe("The exporting device: a GPU whose BAR 0 is its VRAM, or (vfio-revoke) a device whose BAR 0 VFIO exports"),
    flow: oneOf(DMABUF_FLOWS).describe(
      "p2p: a buffer in VRAM read and written by the importer; migrate: the buffer moves to RAM and back, the importer rebinds each time; mixed-remap: half the blocks in RAM, one block moves, the importer maps again (the sg_table vs physical-range list comparison); vfio-revoke: VFIO exports BAR ranges, memory disable revokes, enable lets the importer map again; nvme-p2p, nvme-migrate, nvme-revoke: the importer is an NVMe drive (device: BAR 0 of at least 16 KiB) reading and writing the buffer by P2P, the buffer moving or (exporter: a VFIO device) being revoked with commands in flight; nvme-nic-pressure: a GPU exports buffers to the drive and to a NIC (nic), VRAM pressure evicts them, VFIO (vfio) revokes a third",
    ),
    bytes: int(PAGE, 64 * MiB, "a byte count").multipleOf(PAGE, { error: "a multiple of 4096" }).exactOptional().describe("Size of the buffer; default 4 MiB"),
    blockBytes: int(PAGE, 16 * MiB, "a byte count").multipleOf(PAGE, { error: "a multiple of 4096" }).exactOptional().describe("The GPU's migration granule; default 1 MiB"),
    nic: bdf.exactOptional().describe("nvme-nic-pressure: an mlx5 NIC that registers a second GPU buffer beside the drive as a dynamic dmabuf MR (RDMA WRITE and READ in loopback) and a VFIO BAR range as a pinned-revocable one"),
    vfio: bdf.exactOptional().describe("nvme-nic-pressure: a device whose BAR 0 (at least 2 MiB) VFIO exports to the drive and to the NIC and then revokes"),
  },
  "a dmabuf workload object",
).describe(
  "A dma-buf shared between an exporter and an importer (@dmasim/dmabuf): classic maps the exporter's sg_table (dma_buf_map_attachment), two-step the physical-range list the importer maps itself with the dma_iova_* API",
);

export const WorkloadSchema = z.discriminatedUnion("kind", [NvmeWorkloadSchema, SgWorkloadSchema, SingleWorkloadSchema, P2pWorkloadSchema, StaleWindowWorkloadSchema, HmmWorkloadSchema, RdmaOdpWorkloadSchema, DmabufWorkloadSchema], {
  error: `an object whose kind is one of ${WORKLOAD_KINDS.map((k) => `"${k}"`).join(", ")}`,
});

/** The platform part is createPlatform's spec; its own validator checks it (refine.ts). */
export const PlatformSchema = z
  .custom<PlatformSpec>((v) => typeof v === "object" && v !== null && !Array.isArray(v), { error: 'a platform spec object such as { "memory": { "ramBytes": 4294967296 } }' })
  .meta({ type: "object", description: "Exactly the spec createPlatform takes (@dmasim/pcie-p2p): memory, iommu, hostBridges, rootPorts, switches, endpoints" });

/** The zod schema of a scenario file: validates and fills defaults; its descriptions are the field reference. */
export const ScenarioSchema = fields(
  {
    $schema: z.string({ error: "a string (the URL or path of scenario.schema.json)" }).exactOptional(),
    name: str.regex(/^[a-z0-9][a-z0-9-]*$/, { error: "lowercase letters, digits and dashes" }).describe("Shown in tables and traces"),
    description: str.describe("One line"),
    platform: PlatformSchema,
    kernel: KernelSpecSchema.exactOptional(),
    seed: int(0, 0xffffffff, "an integer seed").exactOptional().describe("Seeds every random choice of the workload; the same seed gives the same counters. Default 1"),
    api: ApiSchema.exactOptional().describe('The API a plain `dmasim run` uses; default "two-step"'),
    axes: fields(
      {
        api: z.array(ApiSchema, { error: "a list of APIs" }).min(1, { error: "a non-empty list" }).exactOptional(),
        iommu: z.array(IommuModeSchema, { error: "a list of IOMMU modes" }).min(1, { error: "a non-empty list" }).exactOptional(),
      },
      "an object with api, iommu",
    )
      .exactOptional()
      .describe("The sweep `dmasim demo` (and `compare` without axes) runs; default classic,two-step × strict,lazy"),
    expect: ScenarioExpectationsSchema.exactOptional().describe("Outcomes that must hold besides the checks every run makes (bytes, faults, leaks)"),
    workload: WorkloadSchema,
  },
  "a JSON object with name, description, platform and workload",
).describe("A dmasim scenario: a platform, the DMA kernel's options and what the driver does");
