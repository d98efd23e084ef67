// `@dmasim/hmm-odp/internal`: keys of the members that other files of this package, and the sibling
// packages built on it (rdma, scenario, the CLI), call but users of the mm model must not. `.` does not
// export these symbols, so the members cannot be named without this entry.

/** MmSystem: a process id for a new mm (the CLI's trace export names processes by it). */
export const kNextPid = Symbol("nextPid");
/** MmSystem: swap-out of a page's bytes; returns the slot. */
export const kSwapWrite = Symbol("swapWrite");
/** MmSystem: swap-in of a slot's bytes into a page. */
export const kSwapRead = Symbol("swapRead");
/** MmSystem: drops a swap slot (zap of a swap entry). */
export const kSwapFree = Symbol("swapFree");
/** MmSystem: swap-in on a read fault that keeps the page in the swap cache (do_swap_page). */
export const kSwapReadCached = Symbol("swapReadCached");
/** MmSystem: MADV_FREE of a page. */
export const kMarkLazyFree = Symbol("markLazyFree");
/** MmSystem: a write through a pte makes a lazily freeable page needed again. */
export const kClearLazyFree = Symbol("clearLazyFree");
/** MmSystem: reclaim's pageout of a page about to be unmapped (shrink_folio_list). */
export const kSwapOutPage = Symbol("swapOutPage");
/** MmSystem: the page cache page of a file index, created on demand (find_get_page). */
export const kFilePage = Symbol("filePage");
/** MmSystem: whether an mm other than the given one maps a file. */
export const kFileInUse = Symbol("fileInUse");
/** MmSystem: memremap_pages bookkeeping (add). */
export const kAddPagemap = Symbol("addPagemap");
/** MmSystem: memunmap_pages bookkeeping (remove). */
export const kRemovePagemap = Symbol("removePagemap");
/** DmirrorDevice: a compound (order-9) device folio. */
export const kAllocDeviceCompound = Symbol("allocDeviceCompound");
/** DmirrorDevice: one device page. */
export const kAllocDevicePage = Symbol("allocDevicePage");
/** Dmirror: drops the mirror entry of one virtual page. */
export const kErase = Symbol("erase");
/** Dmirror: drops the mirror entries pointing at one device page. */
export const kEraseDevicePage = Symbol("eraseDevicePage");
/** MmuIntervalNotifier: sequence numbers seen failing read_retry / check_retry (the stale-seq check). */
export const kStaleSeqs = Symbol("staleSeqs");
/** MmuIntervalNotifier: the sequence that last passed read_retry. */
export const kPassedSeq = Symbol("passedSeq");
/** Mm: host bytes of the mm's page tables and VMAs. */
export const kPageTableBytes = Symbol("pageTableBytes");
/** MigrateDevice: records one mapping of a page being migrated. */
export const kAddMapping = Symbol("addMapping");
/** MigrateDevice: visits every recorded mapping of a page. */
export const kForEachMapping = Symbol("forEachMapping");
/** HmmDmaMap: the device that allocated the map. */
export const kMapDev = Symbol("mapDev");
