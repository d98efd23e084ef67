// `dmasim explore`: the explorer page (the static site @dmasim/explorer builds) with one scenario and its
// recorded run log, served on 127.0.0.1 or written to a directory that opens from disk.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { DmasimStateError } from "@dmasim/trace";
import { RunLogRecorder, sweep } from "@dmasim/scenario";
import type { Axes, RunLog, Scenario } from "@dmasim/scenario";

/** The name of the generated script the page's index.html loads (a classic script, before the page's own). */
export const SCENARIO_SCRIPT = "scenario.js";

/** Events kept per run in the page's log: enough for the page (it is built for 100 k), bounded for the browser. */
export const EXPLORE_MAX_EVENTS_PER_RUN = 200_000;

/**
 * The explorer's static site is missing: @dmasim/explorer is not installed, or not built (no
 * dist/site/index.html). Code ENOENT.
 */
export class ExplorerSiteError extends DmasimStateError {
  override readonly name: string = "ExplorerSiteError";
  constructor(detail: string) {
    super("ENOENT", `the explorer page is not available: ${detail}`);
  }
}

/**
 * The site directory of the installed @dmasim/explorer (its dist/site), resolved at run time so the CLI
 * works without it until the page is wanted. Throws ExplorerSiteError when it is absent or unbuilt.
 */
export function installedExplorerSite(): string {
  let pkg: string;
  try {
    pkg = createRequire(import.meta.url).resolve("@dmasim/explorer/package.json");
  } catch {
    throw new ExplorerSiteError("the package @dmasim/explorer is not installed (pnpm install)");
  }
  return checkedSite(join(dirname(pkg), "dist", "site"));
}

/** `dir` when it holds the built page (an index.html), else ExplorerSiteError. */
export function checkedSite(dir: string): string {
  if (!existsSync(join(dir, "index.html"))) throw new ExplorerSiteError(`${dir} has no index.html (build it: pnpm --filter @dmasim/explorer build)`);
  return dir;
}

/** The scenario's runs over `axes`, recorded as a run log (what `dmasim run --record` writes). */
export function recordForExplorer(s: Scenario, axes: Axes): RunLog {
  const rec = new RunLogRecorder(s, { maxEventsPerRun: EXPLORE_MAX_EVENTS_PER_RUN });
  const results = sweep(s, axes, { onHost: rec.attach });
  rec.detach();
  return rec.toJSON(results);
}

/**
 * The text of scenario.js: sets `globalThis.DMASIM_EXPLORE = { scenario, runLog }`. JSON is valid
 * JavaScript once U+2028 and U+2029 are escaped; `<` is escaped too, so the text is also safe inline.
 */
export function scenarioScript(scenario: Scenario | null, runLog: RunLog | null): string {
  const json = JSON.stringify({ scenario, runLog })
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
  return `// Written by dmasim explore: the scenario and its recorded runs, for the page.\nglobalThis.DMASIM_EXPLORE = ${json};\n`;
}

/**
 * Writes the static site to `out` with its scenario.js. `out` may be missing (it is created) or empty;
 * a directory with files in it is refused unless `force`. Returns the files written, relative to `out`.
 */
export function writeExplorerSite(site: string, out: string, script: string, force: boolean): string[] {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new ExploreOutError(out, "a directory (this is a file)");
    if (!force && readdirSync(out).length > 0) throw new ExploreOutError(out, "an empty or new directory (pass --force to write into this one)");
  }
  mkdirSync(out, { recursive: true });
  cpSync(site, out, { recursive: true, force: true });
  writeFileSync(join(out, SCENARIO_SCRIPT), script);
  return listFiles(out).sort();
}

/** --out names a place the site cannot go. Code EEXIST for a non-empty directory, ENOTDIR for a file. */
export class ExploreOutError extends DmasimStateError {
  override readonly name: string = "ExploreOutError";
  constructor(readonly out: string, expected: string) {
    super(expected.startsWith("a directory") ? "ENOTDIR" : "EEXIST", `--out = ${JSON.stringify(out)} is invalid: expected ${expected}`);
  }
}

function listFiles(dir: string, prefix = ""): string[] {
  const files: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory()) files.push(...listFiles(join(dir, e.name), rel));
    else files.push(rel);
  }
  return files;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
};

/** A running explorer server: its URL and how to stop it. */
export interface ExploreServer {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections and closes the open ones; resolves when the server is closed. */
  close(): Promise<void>;
}

/**
 * Serves `site` on 127.0.0.1:`port` (0: a free port the system picks) with `script` as /scenario.js.
 * GET and HEAD only; paths outside the site are 404s.
 */
export function startExploreServer(site: string, script: string, port = 0): Promise<ExploreServer> {
  const root = resolve(site);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname);
    } catch {
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end("bad request\n");
      return;
    }
    if (path.endsWith("/")) path += "index.html";
    let body: string | Buffer | undefined;
    if (path === `/${SCENARIO_SCRIPT}`) body = script;
    else {
      const file = normalize(join(root, path));
      if (file.startsWith(root + sep) && existsSync(file) && statSync(file).isFile()) body = readFileSync(file);
    }
    if (body === undefined) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    res.writeHead(200, { "content-type": CONTENT_TYPES[extname(path)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  };
  const server: Server = createServer(handler);
  return new Promise((resolveStart, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      const address = server.address();
      const bound = typeof address === "object" && address !== null ? address.port : port;
      resolveStart({
        url: `http://127.0.0.1:${bound}/`,
        port: bound,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => {
              done();
            });
            server.closeAllConnections();
          }),
      });
    });
  });
}
