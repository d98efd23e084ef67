// Preloaded by ab.mjs into each measured process, after the measured tree's scripts/bench-loader.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
