import type { z } from "zod";
import type {
  ApiSchema,
  DeviceSpecSchema,
  DmabufWorkloadSchema,
  HmmWorkloadSchema,
  KernelSpecSchema,
  NvmeWorkloadSchema,
  P2pWorkloadSchema,
  RdmaOdpWorkloadSchema,
  ScenarioExpectationsSchema,
  ScenarioSchema,
  SgWorkloadSchema,
  SingleWorkloadSchema,
  StaleWindowWorkloadSchema,
  WorkloadSchema,
} from "./schema.js";

/**
 * A scenario: plain JSON, so a file and a built-in are the same thing. `platform` is exactly what
 * createPlatform takes; `kernel` are the DMA kernel's options; `workload` says what the driver does.
 * The types come from the zod schema (schema.ts), which documents every field.
 */
export type Scenario = z.output<typeof ScenarioSchema>;
/** classic: the scatterlist-era path; two-step: the `dma_iova_*` path. */
export type Api = z.output<typeof ApiSchema>;
/** The DMA kernel's options a scenario sets (IOMMU mode, dma-debug, costs). */
export type KernelSpec = z.output<typeof KernelSpecSchema>;
/** Which endpoint does the DMA and what the device allows (its DMA mask). */
export type DeviceSpec = z.output<typeof DeviceSpecSchema>;
/** What a run must show to pass (P2P map type, faults, counters); each becomes a check of the result. */
export type ScenarioExpectations = z.output<typeof ScenarioExpectationsSchema>;
/** A PCI_P2PDMA_MAP_* type by its name without the prefix ("BUS_ADDR"). */
export type P2pMapTypeName = NonNullable<ScenarioExpectations["mapType"]>;
/** What the driver does in a run: one of the workload kinds, told apart by `kind`. */
export type Workload = z.output<typeof WorkloadSchema>;
/** The `kind` of a workload: one of `WORKLOAD_KINDS`. */
export type WorkloadKind = Workload["kind"];
/** An fio-like NVMe workload through the NVMe driver. */
export type NvmeWorkload = z.output<typeof NvmeWorkloadSchema>;
/** Map and unmap scatterlists (dma_map_sgtable) of a given shape. */
export type SgWorkload = z.output<typeof SgWorkloadSchema>;
/** Map and unmap single buffers (dma_map_phys) of a given size. */
export type SingleWorkload = z.output<typeof SingleWorkloadSchema>;
/** NVMe I/O to and from a peer's P2P memory. */
export type P2pWorkload = z.output<typeof P2pWorkloadSchema>;
/** How long a device can still reach memory after it was unmapped (lazy vs strict IOTLB invalidation). */
export type StaleWindowWorkload = z.output<typeof StaleWindowWorkloadSchema>;
/** HMM/ODP: a device mirror of a process range and an mm event racing with its fault. */
export type HmmWorkload = z.output<typeof HmmWorkloadSchema>;
/** The mm event an HMM workload races against the device fault. */
export type HmmEvent = HmmWorkload["event"];
/** An mlx5-like NIC with on-demand paging running an rdma-core ODP test, the hodgepodge MR or the NIC workload. */
export type RdmaOdpWorkload = z.output<typeof RdmaOdpWorkloadSchema>;
/** Which rdma-odp test a workload runs (one of `RDMA_ODP_TESTS`). */
export type RdmaOdpTest = RdmaOdpWorkload["test"];
/** A dma-buf shared between an exporter (GPU VRAM or a VFIO BAR) and a dynamic importer. */
export type DmabufWorkload = z.output<typeof DmabufWorkloadSchema>;
/** What a dmabuf workload does with the buffer (one of `DMABUF_FLOWS`). */
export type DmabufFlow = DmabufWorkload["flow"];
