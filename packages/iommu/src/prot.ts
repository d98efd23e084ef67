/**
 * IOMMU_READ / IOMMU_WRITE / IOMMU_CACHE / IOMMU_MMIO / IOMMU_PRIV (include/linux/iommu.h): the
 * permission and attribute bits a mapping is created with.
 */
export const IommuProt = { READ: 1, WRITE: 2, CACHE: 4, MMIO: 8, PRIV: 16 } as const;
export type IommuProt = (typeof IommuProt)[keyof typeof IommuProt];

/** Every defined prot bit; anything outside is rejected. */
export const IOMMU_PROT_MASK = 31;

/** Renders prot bits the way a kernel developer reads them, e.g. "READ|WRITE|CACHE". */
export function protToString(prot: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(IommuProt)) if ((prot & bit) !== 0) names.push(name);
  return names.length === 0 ? "NONE" : names.join("|");
}
