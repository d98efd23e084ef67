/**
 * Package-private keys of @dmasim/bio: members of its public classes that only the block layer's DMA
 * mapping functions may use. index.ts does not export them, so a user of the package cannot reach them
 * (ARCHITECTURE.md's rule on internals).
 */
/** BlkDmaIter: the blk_map_iter walking the request's bio vectors (its `iter` member upstream). */
export const kMapIter = Symbol("mapIter");
/** Request: sets the DMA bookkeeping bytes the request holds (the blkRqDmaMap* functions' charge and release). */
export const kSetDmaBookkeeping = Symbol("setDmaBookkeeping");
