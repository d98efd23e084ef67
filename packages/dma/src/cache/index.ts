export { CpuCache } from "./cpu-cache.js";
export type { CpuCacheOptions } from "./cpu-cache.js";
export { CpuCacheError, CpuCacheInputError } from "./errors.js";
export type { CpuCacheErrorCode } from "./errors.js";
