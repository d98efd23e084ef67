/**
 * Package-private keys of @dmasim/rdma's dma-buf importer: the constructor of IbUmemDmabuf is reached
 * through this symbol (ibUmemDmabufGet and its pinned variants make umems). index.ts does not export it.
 */
export const kCreateUmemDmabuf = Symbol("createUmemDmabuf");
