import type { DebugMode, IommuMode } from "@dmasim/dma";
import type { PlatformSpec } from "@dmasim/pcie-p2p";

/**
 * A scenario: plain JSON, so a file and a built-in are the same thing. `platform` is exactly what
 * createPlatform takes; `kernel` are the DMA kernel's options; `workload` says what the driver does.
 */
export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly platform: PlatformSpec;
  readonly kernel?: KernelSpec;
  /** Seeds every random choice of the workload; the same seed gives the same counters. Default 1. */
  readonly seed?: number;
  /** The API a plain `dmasim run` uses; default "two-step". */
  readonly api?: Api;
  /** The sweep `dmasim demo` (and `compare` without axes) runs; default classic,two-step × strict,lazy. */
  readonly axes?: { readonly api?: readonly Api[]; readonly iommu?: readonly IommuMode[] };
  /** Outcomes that must hold besides the checks every run makes (bytes, faults, leaks). */
  readonly expect?: ScenarioExpectations;
  readonly workload: Workload;
}

/**
 * classic: the scatterlist-era path (`dma_map_sg` as upstream iommu_dma_map_sg, `dma_map_phys` per
 * buffer); two-step: the `dma_iova_*` path (the block layer's iterator, one IOVA per request or list).
 */
export type Api = "classic" | "two-step";
export const APIS: readonly Api[] = ["classic", "two-step"];
export const IOMMU_MODES: readonly IommuMode[] = ["strict", "lazy", "passthrough", "off"];

export interface KernelSpec {
  /** Default "strict" (a sweep's --iommu axis replaces it). */
  readonly iommuMode?: IommuMode;
  /** swiotlb pool size in bytes (a multiple of 256 KiB); 0 for no swiotlb. Default 4 MiB. */
  readonly swiotlbBytes?: number;
  /** dma-debug: "collect" (default: misuse becomes a failed check), "throw" or "off". */
  readonly debug?: DebugMode;
  /** Per-device properties by BDF (dma_set_min_align_mask and friends). */
  readonly devices?: Readonly<Record<string, DeviceSpec>>;
}

export interface DeviceSpec {
  readonly coherent?: boolean;
  readonly dmaMaskBits?: number;
  readonly maxSegmentSize?: number;
  readonly segBoundaryMask?: number;
  readonly minAlignMask?: number;
}

export type P2pMapTypeName = "BUS_ADDR" | "THRU_HOST_BRIDGE" | "NOT_SUPPORTED" | "NONE";

export interface ScenarioExpectations {
  /** true: some DMA must bounce through swiotlb; false: none may. */
  readonly bounce?: boolean;
  /** The pci_p2pdma_map_type the provider and client must get (p2p workloads). */
  readonly mapType?: P2pMapTypeName;
}

export type Workload = NvmeWorkload | SgWorkload | SingleWorkload | P2pWorkload | StaleWindowWorkload;
export type WorkloadKind = Workload["kind"];
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ["nvme", "sg", "single", "p2p", "stale-window"];

/** fio-like block I/O through the NVMe driver; every byte read and written is verified. */
export interface NvmeWorkload {
  readonly kind: "nvme";
  /** The drive's BDF: an endpoint of the platform with a BAR0 of at least 16 KiB. */
  readonly device: string;
  readonly ops: number;
  /** Block size range in bytes, multiples of 4 KiB; default 4 KiB. */
  readonly bsMin?: number;
  readonly bsMax?: number;
  /** Percentage of reads; default 100. */
  readonly readPct?: number;
  /** Default 32. */
  readonly queueDepth?: number;
  /** random (default) or sequential block addresses. */
  readonly order?: "random" | "sequential";
  /** contiguous (one bvec), scattered (one random page per bvec), offset (starts 512 bytes into a page). */
  readonly layout?: "contiguous" | "scattered" | "offset";
  /** Size of the drive; default 8 MiB (it is prefilled, so keep it small). */
  readonly namespaceBytes?: number;
  /** sgl_threshold in bytes; default 32 KiB. */
  readonly sglThreshold?: number;
}

/** Scatter-gather tables mapped with dma_map_sgtable, read back by the device, unmapped. */
export interface SgWorkload {
  readonly kind: "sg";
  readonly device: string;
  readonly entries: number;
  /** Bytes per entry: a fixed size or a [min, max] range drawn from the seed. */
  readonly entryBytes: number | readonly [number, number];
  /** Offset of every entry inside its first page; default 0. */
  readonly offset?: number;
  /** contiguous: entries back to back in memory; scattered: a free page between entries. */
  readonly layout?: "contiguous" | "scattered";
  /** Tables mapped one after another; default 1. */
  readonly iterations?: number;
}

/** N buffers mapped one at a time (dma_map_phys) or in one IOVA (dma_iova_*), read by the device. */
export interface SingleWorkload {
  readonly kind: "single";
  readonly device: string;
  readonly buffers: number;
  readonly bytes: number;
  /** Offset of each buffer inside its first page; default 0. */
  readonly offset?: number;
  /** Two-step: one IOVA for all buffers ("shared", needs page-aligned buffers) or one per buffer. Default "shared". */
  readonly iova?: "shared" | "per-buffer";
}

/** The NVMe drive writes a peer's BAR to its namespace and reads it back into the BAR. */
export interface P2pWorkload {
  readonly kind: "p2p";
  /** The NVMe drive (the P2P client). */
  readonly device: string;
  /** The endpoint whose BAR is the P2P memory (pci_p2pdma_add_resource). */
  readonly provider: { readonly bdf: string; readonly bar?: number };
  /** Bytes per transfer; default 64 KiB. */
  readonly bytes?: number;
  readonly namespaceBytes?: number;
}

/** A buffer is unmapped, then the device keeps reading its old address: how long does it still work? */
export interface StaleWindowWorkload {
  readonly kind: "stale-window";
  readonly device: string;
  /** Default 4 KiB. */
  readonly bytes?: number;
  /** Virtual time between probes; default 100 µs. */
  readonly probeIntervalNs?: number;
  /** Probe for this long at most; default 20 ms. */
  readonly probeForNs?: number;
}
