import type { CostProfileName, DmaKernel, IommuMode } from "@dmasim/dma";
import type { Platform } from "@dmasim/pcie-p2p";
import type { Api } from "../types.js";

/** What a run builds: the platform and the DMA kernel on it (an NVMe run adds its controller and driver). */
export interface Host {
  /** The PCIe platform: memory, fabric, IOMMU, endpoints. */
  readonly platform: Platform;
  /** The DMA mapping layer on it. */
  readonly kernel: DmaKernel;
}

/** Which API a sweep's axis value selects, per workload. */
export interface RunContext {
  /** The mapping API to run under: classic (scatterlist-era) or two-step (dma_iova_*). */
  readonly api: Api;
  /** The IOMMU mode, replacing the scenario's `kernel.iommuMode`. */
  readonly iommu: IommuMode;
  /** The cost profile, replacing the scenario's `kernel.costProfile` (the CLI's --profile). */
  readonly costProfile?: CostProfileName;
  /** Called once a run's platform and kernel exist, before the workload starts (recorders attach here). */
  readonly onHost?: (label: string, host: Host) => void;
}
