/**
 * Package-private keys of @dmasim/nvme: the members of its public dma-buf classes that only the driver
 * may use (a request taking and dropping its reference on the token's mapping, the mapping's
 * constructor). index.ts does not export them.
 */
export const kCreateDmabufMap = Symbol("createDmabufMap");
export const kGetMap = Symbol("getMap");
export const kPutMap = Symbol("putMap");
