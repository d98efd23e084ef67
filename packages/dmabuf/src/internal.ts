/**
 * Package-private keys of @dmasim/dmabuf. The members of its public classes that only the dma-buf core,
 * its exporters and its importers may use (reference counts, the attachment list, the mapping records,
 * the constructors behind dmaBufExport and friends) are keyed by these symbols; index.ts does not export
 * them, so a user of the package cannot reach those members.
 */
/** The static factory each class has instead of a public constructor (use dmaBufExport, dmaBufDynamicAttach, …). */
export const kCreate = Symbol("create");
export const kAddAttachment = Symbol("addAttachment");
export const kRemoveAttachment = Symbol("removeAttachment");
export const kGet = Symbol("get");
export const kPut = Symbol("put");
export const kAwaitQuiesce = Symbol("awaitQuiesce");
export const kUnmappedAfter = Symbol("unmappedAfter");
export const kRecords = Symbol("records");
export const kDead = Symbol("dead");
export const kMarkDetached = Symbol("markDetached");
export const kInvalidateCallback = Symbol("invalidateCallback");
export const kSetInInvalidate = Symbol("setInInvalidate");
export const kDmaMappings = Symbol("dmaMappings");
export const kAddSize = Symbol("addSize");
export const kTakeState = Symbol("takeState");
export const kKeep = Symbol("keep");
export const kMarkUnmapped = Symbol("markUnmapped");
export const kSgtPrivate = Symbol("sgtPrivate");
export const kNextInode = Symbol("nextInode");
