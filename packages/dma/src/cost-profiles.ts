import type { CounterName } from "./counters.js";

/**
 * Named cost profiles: one table per IOMMU platform, because the same counted event costs differently
 * on each. Bare-metal VT-d, SMMUv3 and AMD-Vi do nothing for iotlb_sync_map; a virtual IOMMU (VT-d in
 * caching mode, virtio-iommu) turns it into a trap to the host. An invalidation is two prices: the
 * submit (a queued descriptor or a register write, on the CPU that unmaps) and the wait for its
 * completion (the IOMMU works its one queue in order, so every CPU waits behind the others: `shared`).
 *
 * Every row cites a published figure or says `assumed` and why; `dmasim calibrate` and the package
 * README sweep the assumed rows.
 */

/** A resource every CPU of a device or IOMMU takes in turn: what a multi-queue workload contends on. */
export type SharedResource = "iova-tree-lock" | "inval-queue";
/** Every `SharedResource`, in report order. */
export const SHARED_RESOURCES: readonly SharedResource[] = ["iova-tree-lock", "inval-queue"];

/** One row of a cost profile: what one counted event costs, in ns, and where the figure comes from. */
export interface CostRow {
  /** The counter whose events the row prices. */
  readonly counter: CounterName;
  /** Nanoseconds per counted event (per byte for byte counters), uncontended. */
  readonly ns: number;
  /** Where the figure comes from: a publication, a derivation, or why it is assumed. */
  readonly source: string;
  /** True when no publication gives the figure: a named parameter a user should override for their platform. */
  readonly assumed: boolean;
  /**
   * The part of `ns` spent holding a resource shared by every CPU (the IOVA tree's lock, the IOMMU's
   * invalidation queue): uncontended it is just time, under load CPUs queue for it (contention.ts).
   */
  readonly shared?: { readonly resource: SharedResource; readonly ns: number };
}

/** Rows by counter name: the nanoseconds a platform spends per counted event; counters without a row cost nothing. */
export type CostProfile = Readonly<Record<string, CostRow>>;

/** The named cost profiles, one per IOMMU family (`vtd`, `smmuv3`, `amd-vi`…), `default` first. */
export const COST_PROFILE_NAMES = ["default", "vtd", "vtd-caching-mode", "smmuv3", "amd-vi", "virtio-iommu"] as const;
/** The name of a built-in cost profile (one of `COST_PROFILE_NAMES`). */
export type CostProfileName = (typeof COST_PROFILE_NAMES)[number];

/** What `default` stands for: its rows are the ones measured on SMMUv3 (Saleh 2026), so it is `smmuv3`. */
export const DEFAULT_COST_PROFILE: Exclude<CostProfileName, "default"> = "smmuv3";

/** One line of description per profile, for `dmasim calibrate` and the README. */
export const COST_PROFILE_DESCRIPTIONS: Readonly<Record<CostProfileName, string>> = {
  default: `the ${DEFAULT_COST_PROFILE} profile`,
  vtd: "bare-metal Intel VT-d: queued invalidation, no iotlb_sync_map work",
  "vtd-caching-mode": "a virtual Intel VT-d (QEMU intel-iommu, caching mode): every sync and invalidation traps to the host",
  smmuv3: "bare-metal Arm SMMUv3: TLBI commands and a CMD_SYNC on the shared command queue, no iotlb_sync_map",
  "amd-vi": "bare-metal AMD-Vi: INVALIDATE_IOMMU_PAGES and COMPLETION_WAIT on the command buffer, no iotlb_sync_map",
  "virtio-iommu": "virtio-iommu in a guest: MAP/UNMAP requests on one virtqueue, each sync a kick the host serves",
};

const GUNTHORPE = "iommu_map/unmap kunit figures, i7-12700 (J. Gunthorpe, 'iommu: Consolidate iommu page table implementations' v7, 2025)";
const SALEH = "dma_map_single/unmap on Arm Morello SMMUv3, 1 thread (M. Saleh, IOMMU debug_pagealloc series, 2026)";
const NO_SYNC_MAP_VTD = "intel_iommu_iotlb_sync_map → cache_tag_flush_range_np flushes only under caching mode (drivers/iommu/intel/cache.c): 0 on bare metal";
const NO_SYNC_MAP_SMMU = "arm-smmu-v3 has no iotlb_sync_map op (drivers/iommu/arm/arm-smmu-v3): 0";
const NO_SYNC_MAP_AMD = "amd_iommu_iotlb_sync_map flushes only with NpCache, which only emulated AMD IOMMUs set (drivers/iommu/amd/iommu.c): 0 on bare metal";
const VM_EXIT =
  "assumed: a trap served by the userspace VMM (QEMU's intel-iommu or virtio-iommu) with a VFIO map/unmap behind it; no published per-trap figure found (dmasim calibrate checks it against Brucker's and the nvme-pci max_hw_sectors guest runs)";

/** Rows every profile shares: page-table writes, the IOVA allocator, API overheads, swiotlb, CPU caches. */
const commonRows: CostRow[] = [
  // iommu_map: 53-57 ns for one 4 KiB page, 380-405 ns for 256 pages in one call → ~51.7 ns per call
  // plus ~1.33 ns per PTE reproduces both rows (53 ns and 392 ns).
  { counter: "IommuMapCalls", ns: 51.7, source: `${GUNTHORPE}: fixed part fitted to 1 page = 53 ns, 256 pages = 392 ns`, assumed: false },
  { counter: "PteWrites", ns: 1.33, source: `${GUNTHORPE}: per-page part of the same fit`, assumed: false },
  // iommu_unmap: 69-72 ns for one page, 210 ns for 256 pages (VT-d) → 69.5 ns + 0.55 ns per PTE.
  { counter: "IommuUnmapCalls", ns: 69.5, source: `${GUNTHORPE}: fixed part fitted to 1 page = 70 ns, 256 pages = 210 ns (VT-d)`, assumed: false },
  { counter: "PteClears", ns: 0.55, source: `${GUNTHORPE}: per-page part of the same fit`, assumed: false },
  // dma_map_single 4 KiB = 0.1 µs in total on Morello: iommu_map ≈ 53 ns leaves ≈ 47 ns for the IOVA
  // cache and the API itself.
  { counter: "IovaAllocCache", ns: 30, source: `derived: ${SALEH} 4 KiB map 0.1 µs minus iommu_map 53 ns, split 30 ns IOVA cache / 17 ns API`, assumed: false },
  { counter: "DmaMapCalls", ns: 17, source: "derived: remainder of the same 0.1 µs dma_map_single figure", assumed: false },
  { counter: "IovaFreeCache", ns: 30, source: "assumed equal to a cache allocation (magazine push vs pop)", assumed: true },
  // alloc_iova and __free_iova run entirely under iova_rbtree_lock, one lock per IOVA domain (per device):
  // CPUs that miss their range cache take it in turn (the 448-core lockup of nvme-pci commit 3710e2b056cb).
  {
    counter: "IovaAllocTree",
    ns: 250,
    source: "assumed: rbtree walk and insert under the domain's iova_rbtree_lock, no published uncontended figure",
    assumed: true,
    shared: { resource: "iova-tree-lock", ns: 250 },
  },
  {
    counter: "IovaFreeTree",
    ns: 150,
    source: "assumed: rbtree erase under the domain's iova_rbtree_lock, no published uncontended figure",
    assumed: true,
    shared: { resource: "iova-tree-lock", ns: 150 },
  },
  { counter: "DmaUnmapCalls", ns: 17, source: "assumed equal to the map call overhead", assumed: true },
  // The two-step calls are API calls too: their page-table, IOVA and IOTLB work is priced by the rows
  // above; these rows are the per-call overhead, taken equal to dma_map_phys's derived 17 ns.
  { counter: "DmaIovaTryAllocs", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaLinks", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaSyncs", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaUnlinks", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaDestroys", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "SwiotlbBounceBytes", ns: 0.1, source: "assumed: memcpy at 10 GB/s; no published swiotlb bandwidth", assumed: true },
  { counter: "SwiotlbSlotsAllocated", ns: 5, source: "assumed: per-slot bookkeeping in swiotlb_find_slots; no published figure", assumed: true },
  { counter: "CacheLinesWrittenBack", ns: 1, source: "assumed: one 'dc cvac' per line, amortised", assumed: true },
  { counter: "CacheLinesInvalidated", ns: 1, source: "assumed: one 'dc ivac' per line, amortised", assumed: true },
  { counter: "PageDescLookups", ns: 2, source: "assumed: a struct page lookup that hits the cache", assumed: true },
  { counter: "PtPagesAllocated", ns: 100, source: "assumed: a zeroed page from the page allocator", assumed: true },
];

/**
 * An invalidation priced as its two parts: `submit` on the unmapping CPU (a descriptor or command
 * written to the queue, or a register write) and `wait` for the completion the IOMMU signals after
 * working the queue in order — the part every CPU queues for.
 */
function invalidation(counter: CounterName, submit: number, wait: number, source: string, assumed: boolean): CostRow {
  return { counter, ns: submit + wait, source: `${source} [submit ${String(submit)} ns + wait ${String(wait)} ns]`, assumed, shared: { resource: "inval-queue", ns: wait } };
}

function profileOf(rows: readonly CostRow[]): CostProfile {
  const out: Record<string, CostRow> = Object.fromEntries(commonRows.map((r) => [r.counter, r]));
  for (const r of rows) out[r.counter] = r;
  return Object.freeze(out);
}

// Bare-metal SMMUv3: dma_unmap_single 4 KiB = 0.6 µs on Morello: unmap ≈ 70 ns and an IOVA free ≈ 30 ns
// leave ≈ 500 ns for the TLBI and its CMD_SYNC; the command write is a few stores into the queue.
const smmuv3 = profileOf([
  invalidation("IotlbInvalRange", 50, 450, `derived: ${SALEH} 4 KiB unmap 0.6 µs minus iommu_unmap 70 ns and IOVA free 30 ns; assumed split: CMD_TLBI_NH_VA write 50 ns, CMD_SYNC wait the rest`, false),
  invalidation("IotlbInvalDomain", 50, 450, "assumed: CMD_TLBI_NH_ASID + CMD_SYNC, one command as a range invalidation is (derived row IotlbInvalRange)", true),
  invalidation("IotlbInvalGlobal", 50, 450, "assumed: as a domain invalidation", true),
  { counter: "IotlbSyncMap", ns: 0, source: NO_SYNC_MAP_SMMU, assumed: false },
]);

// Bare-metal VT-d: qi_submit_sync writes the invalidation descriptor and a wait descriptor, then polls the
// wait descriptor's status; no published latency for either part.
const vtd = profileOf([
  invalidation("IotlbInvalRange", 100, 800, "assumed: qi_submit_sync, IOTLB page-selective descriptor + wait descriptor, polled; no published per-invalidation latency", true),
  invalidation("IotlbInvalDomain", 100, 800, "assumed: a domain-selective IOTLB descriptor + wait, as a page-selective one", true),
  invalidation("IotlbInvalGlobal", 100, 1000, "assumed: global IOTLB invalidation + wait, a little longer than domain-selective", true),
  { counter: "IotlbSyncMap", ns: 0, source: NO_SYNC_MAP_VTD, assumed: false },
]);

// Bare-metal AMD-Vi: INVALIDATE_IOMMU_PAGES then COMPLETION_WAIT on the command buffer (iommu_completion_wait).
const amdVi = profileOf([
  invalidation("IotlbInvalRange", 100, 1000, "assumed: INVALIDATE_IOMMU_PAGES + COMPLETION_WAIT polled by iommu_completion_wait; no published per-invalidation latency", true),
  invalidation("IotlbInvalDomain", 100, 1000, "assumed: INVALIDATE_IOMMU_PAGES for the whole domain + COMPLETION_WAIT", true),
  invalidation("IotlbInvalGlobal", 100, 1200, "assumed: INVALIDATE_IOMMU_ALL + COMPLETION_WAIT", true),
  { counter: "IotlbSyncMap", ns: 0, source: NO_SYNC_MAP_AMD, assumed: false },
]);

// A virtual VT-d in caching mode: a new PTE is invisible to the host's shadow until the guest invalidates
// it (iotlb_sync_map), and each invalidation descriptor traps to QEMU, which walks the guest table and
// calls VFIO to map or unmap on the host (vtd_sync_shadow_page_table_range), one trap at a time.
const vtdCachingMode = profileOf([
  { counter: "PteWrites", ns: 51.33, source: `${VM_EXIT}; per page: the guest PTE write (1.33 ns, Gunthorpe 2025 fit) plus ~50 ns of host shadowing and pinning`, assumed: true, shared: { resource: "inval-queue", ns: 50 } },
  { counter: "PteClears", ns: 20.55, source: `${VM_EXIT}; per page: the guest PTE clear (0.55 ns, Gunthorpe 2025 fit) plus ~20 ns of host unmapping`, assumed: true, shared: { resource: "inval-queue", ns: 20 } },
  invalidation("IotlbInvalRange", 2000, 1500, `${VM_EXIT}; submit = the VM exit on the queue tail write, wait = QEMU serving the descriptor`, true),
  invalidation("IotlbInvalDomain", 2000, 1500, VM_EXIT, true),
  invalidation("IotlbInvalGlobal", 2000, 1500, VM_EXIT, true),
  invalidation("IotlbSyncMap", 2000, 1500, `${VM_EXIT}; the sync makes the host shadow the new PTEs (cache_tag_flush_range_np under caching mode)`, true),
]);

// virtio-iommu: map_pages queues a MAP request (viommu_add_req) and unmap_pages an UNMAP request; the
// host serves each one (VFIO_IOMMU_MAP_DMA / UNMAP_DMA) on the device's one request virtqueue when a
// sync kicks it (viommu_sync_req, from iotlb_sync_map since v6.8 and from iotlb_sync / flush_iotlb_all).
const VIRTIO_FIT =
  "derived: fitted to J-P. Brucker's virtio-iommu fio run (LKML 20230802123612.GA6142@myrica: 16 jobs × QD16 64 KiB randwrite, strict at 81.3 % of the host's 2.5 GiB/s) read as the request queue's limit: ~1.5 µs of host service per MAP request; the other rows of that run are predictions";
const virtioIommu = profileOf([
  { counter: "IommuMapCalls", ns: 1651.7, source: `${VIRTIO_FIT} (plus iommu_map's 51.7 ns and ~100 ns to queue the request)`, assumed: false, shared: { resource: "inval-queue", ns: 1500 } },
  { counter: "IommuUnmapCalls", ns: 1169.5, source: "assumed: iommu_unmap's 69.5 ns, ~100 ns to queue an UNMAP request and ~1 µs of host service (two-thirds of a MAP: nothing to pin)", assumed: true, shared: { resource: "inval-queue", ns: 1000 } },
  invalidation("IotlbInvalRange", 2000, 300, `${VM_EXIT}; submit = the kick's VM exit, wait = the host's pass over the queue`, true),
  invalidation("IotlbInvalDomain", 2000, 300, VM_EXIT, true),
  invalidation("IotlbInvalGlobal", 2000, 300, VM_EXIT, true),
  invalidation("IotlbSyncMap", 2000, 300, `${VM_EXIT}; MAP requests wait in the queue until this kick (viommu_iotlb_sync_map, since v6.8)`, true),
]);

const named: Readonly<Record<Exclude<CostProfileName, "default">, CostProfile>> = {
  vtd,
  "vtd-caching-mode": vtdCachingMode,
  smmuv3,
  "amd-vi": amdVi,
  "virtio-iommu": virtioIommu,
};

/** Every named profile's rows; `default` is the same object as its target. */
export const costProfiles: Readonly<Record<CostProfileName, CostProfile>> = Object.freeze({ default: named[DEFAULT_COST_PROFILE], ...named });

/** True when `v` names a built-in cost profile. */
export function isCostProfileName(v: unknown): v is CostProfileName {
  return typeof v === "string" && (COST_PROFILE_NAMES as readonly string[]).includes(v);
}
