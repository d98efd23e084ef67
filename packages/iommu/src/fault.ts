import type { Access, FaultReason } from "./events.js";

/** One DMA fault as the IOMMU's fault reporting would log it (VT-d fault record, SMMU event queue). */
export interface IommuFault {
  readonly t: number;
  readonly device: string;
  readonly iova: number;
  readonly access: Access;
  readonly reason: FaultReason;
}
