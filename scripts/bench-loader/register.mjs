// Preloaded into vitest's bench workers (see vitest.config.ts): installs hooks.mjs so the workers
// import the TypeScript sources as native ES modules.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
