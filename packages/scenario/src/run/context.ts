import type { CostProfileName, DmaKernel, IommuMode } from "@dmasim/dma";
import type { Platform } from "@dmasim/pcie-p2p";
import type { Api } from "../types.js";

/** What a run builds: the platform and the DMA kernel on it (an NVMe run adds its controller and driver). */
export interface Host {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
}

/** Which API a sweep's axis value selects, per workload. */
export interface RunContext {
  readonly api: Api;
  readonly iommu: IommuMode;
  /** The cost profile, replacing the scenario's `kernel.costProfile` (the CLI's --profile). */
  readonly costProfile?: CostProfileName;
  /** Called once a run's platform and kernel exist, before the workload starts (recorders attach here). */
  readonly onHost?: (label: string, host: Host) => void;
}
