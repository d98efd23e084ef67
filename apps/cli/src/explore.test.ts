import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { main, mainParallel } from "./cli.js";
import type { Io } from "./cli.js";
import { ExploreOutError, ExplorerSiteError, installedExplorerSite, scenarioScript, startExploreServer, writeExplorerSite } from "./explore.js";
import type { ExploreServer } from "./explore.js";
import { recordingIo } from "./test-io.js";
import { RUN_LOG_VERSION, builtinScenario } from "@dmasim/scenario";
import type { RunLog, Scenario } from "@dmasim/scenario";

const SITE = fileURLToPath(new URL("./fixtures/explorer-site", import.meta.url));

/** What scenario.js sets, evaluated as the page's classic script would. */
function evaluate(script: string): { scenario: Scenario | null; runLog: RunLog | null } {
  const g: { DMASIM_EXPLORE?: { scenario: Scenario | null; runLog: RunLog | null } } = {};
  runInNewContext(script, { globalThis: g });
  if (g.DMASIM_EXPLORE === undefined) throw new Error("scenario.js set nothing");
  return g.DMASIM_EXPLORE;
}

const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "dmasim-explore-"));
  temps.push(d);
  return d;
}
afterEach(() => {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("dmasim explore", () => {
  it("serves the page and a generated scenario.js on 127.0.0.1, then stops", async () => {
    const rec = recordingIo();
    let fetched: { index: string; script: string; missing: number; escape: number; post: number; type: string | null } | undefined;
    let url = "";
    const io: Io = {
      ...rec.io,
      explorerSite: SITE,
      untilStopped: async (server: ExploreServer) => {
        url = server.url;
        const index = await fetch(server.url);
        const script = await fetch(`${server.url}scenario.js`);
        const missing = await fetch(`${server.url}nothing-here.js`);
        const escape = await fetch(`${server.url}..%2f..%2fpackage.json`);
        const post = await fetch(server.url, { method: "POST" });
        fetched = { index: await index.text(), script: await script.text(), missing: missing.status, escape: escape.status, post: post.status, type: script.headers.get("content-type") };
      },
    };
    const code = await mainParallel(["explore", "lazy-stale-window", "--api", "classic", "--iommu", "strict,lazy"], io);
    expect(code).toBe(0);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:[0-9]+\/$/);
    expect(rec.out()).toContain(url);
    expect(fetched?.index).toContain('<script src="./scenario.js"></script>');
    expect(fetched?.type).toBe("text/javascript; charset=utf-8");
    expect([fetched?.missing, fetched?.escape, fetched?.post]).toEqual([404, 404, 405]);
    const data = evaluate(fetched?.script ?? "");
    expect(data.scenario?.name).toBe("lazy-stale-window");
    expect(data.runLog?.version).toBe(RUN_LOG_VERSION);
    expect(data.runLog?.runs.map((r) => r.label)).toEqual(["lazy-stale-window classic/strict", "lazy-stale-window classic/lazy"]);
    expect(data.runLog?.runs[1]?.events.some((e) => e.type === "iotlb.lookup" && e.result === "stale-hit")).toBe(true);
    // Closed: nothing answers any more.
    await expect(fetch(url)).rejects.toThrow(TypeError);
  });

  it("--json prints the URL in the versioned envelope", async () => {
    const rec = recordingIo();
    const code = await mainParallel(["explore", "sg-256", "--api", "two-step", "--iommu", "strict", "--json"], { ...rec.io, explorerSite: SITE, untilStopped: () => Promise.resolve() });
    expect(code).toBe(0);
    const out = JSON.parse(rec.out()) as { format: string; command: string; url: string; runs: { label: string; events: number }[] };
    expect([out.format, out.command]).toEqual(["dmasim-cli", "explore"]);
    expect(out.url).toMatch(/^http:\/\/127\.0\.0\.1:/);
    expect(out.runs).toHaveLength(1);
    expect(out.runs[0]?.events).toBeGreaterThan(0);
  });

  it("--out writes the static site and scenario.js; a non-empty directory is refused unless --force", () => {
    const dir = join(tempDir(), "site");
    const rec = recordingIo();
    const io = { ...rec.io, explorerSite: SITE };
    expect(main(["explore", "p2p-acs-redirect", "--api", "two-step", "--iommu", "strict", "--out", dir], io)).toBe(0);
    expect(readFileSync(join(dir, "index.html"), "utf8")).toContain("scenario.js");
    expect(readFileSync(join(dir, "assets", "style.css"), "utf8")).toContain("font-family");
    const data = evaluate(readFileSync(join(dir, "scenario.js"), "utf8"));
    expect(data.scenario?.name).toBe("p2p-acs-redirect");
    // The route the page highlights: the ACS redirect is in the TLP events.
    expect(data.runLog?.runs[0]?.events.some((e) => e.type === "tlp" && e.acsRedirect)).toBe(true);
    const again = recordingIo();
    expect(main(["explore", "p2p-acs-redirect", "--out", dir], { ...again.io, explorerSite: SITE })).toBe(2);
    expect(again.err()).toMatch(/--out = ".*" is invalid: expected an empty or new directory \(pass --force/);
    const forced = recordingIo();
    expect(main(["explore", "sg-256", "--api", "two-step", "--iommu", "strict", "--out", dir, "--force", "--json"], { ...forced.io, explorerSite: SITE })).toBe(0);
    const out = JSON.parse(forced.out()) as { files: string[] };
    expect(out.files).toEqual(["assets/style.css", "index.html", "scenario.js"]);
    expect(evaluate(readFileSync(join(dir, "scenario.js"), "utf8")).scenario?.name).toBe("sg-256");
  });

  it("refuses what it cannot do with a one-line error and exit status 2", () => {
    const empty = tempDir();
    const cases: [readonly string[], Partial<Io>, RegExp][] = [
      [["explore", "sg-256", "--out", join(empty, "x")], { explorerSite: empty }, /the explorer page is not available: .* has no index\.html/],
      [["explore", "sg-256"], { explorerSite: SITE }, /explore without --out serves the page until interrupted/],
      [["explore", "sg-256", "--port", "70000"], { explorerSite: SITE }, /--port = "70000" is invalid/],
      [["explore", "sg-256", "--force"], { explorerSite: SITE }, /--force goes with --out/],
      [["explore", "sg-256", "--out", "a", "--port", "1"], { explorerSite: SITE }, /not both/],
      [["run", "sg-256", "--out", "a"], { explorerSite: SITE }, /run takes no --out, --port or --force/],
      [["explore"], { explorerSite: SITE }, /explore takes one scenario/],
    ];
    for (const [argv, extra, message] of cases) {
      const rec = recordingIo();
      expect(main(argv, { ...rec.io, ...extra })).toBe(2);
      expect(rec.err()).toMatch(message);
      expect(rec.err().trimEnd().split("\n").length).toBeLessThanOrEqual(2);
    }
  });

  it("the pieces: typed errors, a file as --out, scenario.js escaping", async () => {
    const dir = tempDir();
    const file = join(dir, "f");
    writeFileSync(file, "x");
    expect(() => writeExplorerSite(SITE, file, "", false)).toThrow(ExploreOutError);
    mkdirSync(join(dir, "full"));
    writeFileSync(join(dir, "full", "a"), "x");
    expect(() => writeExplorerSite(SITE, join(dir, "full"), "", false)).toThrow(ExploreOutError);
    expect(new ExplorerSiteError("x").code).toBe("ENOENT");
    const s = builtinScenario("sg-256");
    const script = scenarioScript(s === undefined ? null : { ...s, description: "</script>\u2028" }, null);
    expect(script).not.toContain("</script>");
    expect(evaluate(script).scenario?.description).toBe("</script>\u2028");
    const server = await startExploreServer(SITE, script, 0);
    expect((await fetch(`${server.url}index.html`, { method: "HEAD" })).status).toBe(200);
    await server.close();
  });

  it("finds the installed @dmasim/explorer's built page (its dependency), and --out copies it beside scenario.js", () => {
    const site = installedExplorerSite();
    expect(readFileSync(join(site, "index.html"), "utf8")).toContain('src="./scenario.js"');
    const dir = tempDir();
    const { io } = recordingIo();
    expect(main(["explore", "lazy-stale-window", "--api", "two-step", "--iommu", "lazy", "--out", dir], io)).toBe(0);
    expect(readFileSync(join(dir, "explorer.js"), "utf8")).toBe(readFileSync(join(site, "explorer.js"), "utf8"));
    const written = evaluate(readFileSync(join(dir, "scenario.js"), "utf8"));
    expect(written.scenario?.name).toBe("lazy-stale-window");
    expect(written.runLog?.runs.map((r) => `${r.api}/${r.iommu}`)).toEqual(["two-step/lazy"]);
  });
});
