/**
 * Package-private keys of @dmasim/scatterlist: members of its public classes that only the package's own
 * functions may use. index.ts does not export them (ARCHITECTURE.md's rule on internals).
 */
/** SgTable: marks the table freed (sg_free_table's). */
export const kMarkFreed = Symbol("markFreed");
