export { compareDrivers, DEFAULT_PROFILES, DRIVERS, formatComparison } from "./comparison.js";
export type { CompareOptions, CompareProfile, CompareRow } from "./comparison.js";
