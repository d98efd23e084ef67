export { HELP, main, UsageError } from "./cli.js";
export type { Io } from "./cli.js";
