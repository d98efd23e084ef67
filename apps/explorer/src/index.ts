import { fileURLToPath } from "node:url";

/**
 * Absolute path of the built explorer site (`dist/site`: index.html, the default `scenario.js` and the
 * page's one classic script). A server serves this directory as it is; `dmasim explore --out dir` copies
 * it and replaces `scenario.js` with one that sets `globalThis.DMASIM_EXPLORE`.
 */
export function explorerSiteDir(): string {
  return fileURLToPath(new URL("./site", import.meta.url));
}
