/**
 * Package-private entry points. These symbols are not exported from index.ts, so only this package can
 * call the methods keyed by them: the allocator and the memory map change descriptor bits that the public
 * API guards (PageFlag.ALLOCATED, the encryption state), without a second round of validation.
 */
export const kApplyFlags = Symbol("applyFlags");
export const kFirstMissing = Symbol("firstMissing");
export const kFirstWithout = Symbol("firstWithout");
/** PageDescriptors asks the memory map (its ZoneDeviceHost) where ZONE_DEVICE pages may go. */
export const kCheckZoneDeviceRange = Symbol("checkZoneDeviceRange");
/** PhysicalMemory asks the descriptors whether an MMIO range it adds or removes holds ZONE_DEVICE pages. */
export const kZoneDeviceOverlap = Symbol("zoneDeviceOverlap");
/** SparseStore's readInto and write without their short-access seam: the equivalence test runs both. */
export const kReadIntoChecked = Symbol("readIntoChecked");
export const kWriteChecked = Symbol("writeChecked");
