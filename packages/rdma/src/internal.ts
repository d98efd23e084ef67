// Package-private keys: the members the files of this package call on each other's objects (the NIC's
// mkey table, its scratch buffers and workqueue, the mixed MR's event log) but users of the verbs must
// not. Neither `.` nor any subpath export exports these symbols, so only this package can name the members.

/** Mlx5Nic: the P2P lookup state the driver's hmm_dma_map_pfn calls share. */
export const kP2pState = Symbol("p2pState");
/** Mlx5Nic: the next QP number to hand out. */
export const kNextQpn = Symbol("nextQpn");
/** Mlx5Nic: the MR of an mkey (lkey or rkey), live or not. */
export const kLookupMkey = Symbol("lookupMkey");
/** Mlx5Nic: a new mkey value. */
export const kAllocMkey = Symbol("allocMkey");
/** Mlx5Nic: makes a fully built MR reachable by its key. */
export const kInstallMkey = Symbol("installMkey");
/** Mlx5Nic: implicit_get_child_mr's allocation of a child umem and its MTT mkey. */
export const kCreateImplicitChild = Symbol("createImplicitChild");
/** Mlx5Nic: the queued destruction of an implicit child left with no mapped page. */
export const kDestroyUnusedImplicitChild = Symbol("destroyUnusedImplicitChild");
/** Mlx5Nic: registration of an MR built outside nic.ts (regMixedMr). */
export const kAdoptMkey = Symbol("adoptMkey");
/** Mlx5Nic: a scratch array of DMA addresses (the batched map's output). */
export const kRunScratch = Symbol("runScratch");
/** Mlx5Nic: the staging buffer for the payload of one WR. */
export const kWqeBuffer = Symbol("wqeBuffer");
/** Mlx5Nic: queues driver work (asynchronous prefetch, implicit child destruction). */
export const kQueueWork = Symbol("queueWork");
/** IbCq: the completions not polled yet. */
export const kCqEntries = Symbol("cqEntries");
/** IbQp: posted receive WRs, oldest first. */
export const kRecvQueue = Symbol("recvQueue");
/** IbUmemOdp: the hmm_range reused across faults. */
export const kOdpRange = Symbol("odpRange");
/** MixedEventLog: records an invalidation event of one segment. */
export const kRecordEvent = Symbol("recordEvent");
/** MixedEventLog: a device access reached a segment. */
export const kEventDeviceAccess = Symbol("eventDeviceAccess");
/** IbUmemMixed: an event of one segment, recorded with its times. */
export const kLogEvent = Symbol("logEvent");
/** MixedVaSegment: the segment's hmm_range, writing into the MR's pfn list at the segment's index. */
export const kSegRange = Symbol("segRange");
/** MixedDmabufSegment: the attachment (dma_buf_dynamic_attach with the MR's invalidate_mappings). */
export const kSegAttach = Symbol("segAttach");
/** MixedDmabufSegment: the list mapped now (undefined while not mapped). */
export const kSegList = Symbol("segList");
/** MixedDmabufSegment: the IOVA runs linked for the segment now: offset, length, attrs (triples). */
export const kSegRuns = Symbol("segRuns");
