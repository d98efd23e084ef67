import type { Access, FaultReason } from "./events.js";
import type { Iova } from "./iova.js";

/** One DMA fault as the IOMMU's fault reporting would log it (VT-d fault record, SMMU event queue). */
export interface IommuFault {
  /** Virtual time of the fault in ns. */
  readonly t: number;
  /** BDF of the device whose access faulted. */
  readonly device: string;
  /** The address the device used. */
  readonly iova: Iova;
  /** Read or write. */
  readonly access: Access;
  /** Why the translation failed. */
  readonly reason: FaultReason;
}
