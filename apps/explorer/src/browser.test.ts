import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { builtinScenario, RunLogRecorder, sweep } from "@dmasim/scenario";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

// Drives the built site in Debian's Chromium (never a downloaded browser): served over http from
// 127.0.0.1 and opened from disk, it runs scenarios in the page, steps the timeline by keyboard and
// checks what each view shows at that step. Screenshots go to test-artifacts/ (not committed).

const CHROMIUM = "/usr/bin/chromium";
const appDir = fileURLToPath(new URL("..", import.meta.url));
const siteDir = join(appDir, "dist/site");
const artifacts = join(appDir, "test-artifacts");
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const present = existsSync(CHROMIUM);
if (!present) process.stderr.write(`browser test skipped: ${CHROMIUM} is absent (CI installs Debian's chromium package)\n`);

const TYPES: Readonly<Record<string, string>> = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = join(dir, path === "/" ? "index.html" : path);
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const addr = server.address();
      resolve({ server, url: `http://127.0.0.1:${typeof addr === "object" && addr !== null ? addr.port : 0}` });
    });
  });
}

/** A page that records console errors and uncaught exceptions. */
async function open(ctx: BrowserContext, url: string, errors: string[]): Promise<Page> {
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1500, height: 1100 });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${url}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${url}: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("body[data-shown]", { timeout: 120_000 });
  return page;
}

async function shownCount(page: Page): Promise<number> {
  return Number(await page.getAttribute("body", "data-shown"));
}

async function stepTo(page: Page, step: number): Promise<void> {
  await page.focus("[data-testid=timeline]");
  await page.keyboard.press("Home");
  for (let i = 0; i < step; i++) await page.keyboard.press(i % 2 === 0 ? "j" : "ArrowDown");
  expect(await page.textContent("[data-testid=step]")).toMatch(new RegExp(`^${step} / `));
}

/** Jumps the scrubber to `step`, as a drag would. */
async function scrubTo(page: Page, step: number): Promise<void> {
  await page.$eval(
    "[data-testid=scrubber]",
    (el, v) => {
      (el as HTMLInputElement).value = String(v);
      el.dispatchEvent(new Event("input"));
    },
    step,
  );
  expect(await page.textContent("[data-testid=step]")).toMatch(new RegExp(`^${step} / `));
}

async function pickRun(page: Page, suffix: string): Promise<void> {
  const value = await page.$$eval("[data-testid=run-select] option", (os, s) => os.find((o) => o.textContent.endsWith(s))?.getAttribute("value") ?? "", suffix);
  await page.selectOption("[data-testid=run-select]", value);
}

type Ev = Readonly<Record<string, unknown>>;

/** The events of one run of a built-in scenario, run in Node on the same model as the page. */
function eventsOf(name: string, label: string): Ev[] {
  const s = builtinScenario(name)!;
  const rec = new RunLogRecorder(s);
  const [api, iommu] = label.split("/") as ["classic", "strict"];
  sweep(s, { api: [api], iommu: [iommu] }, { onHost: rec.attach });
  return (rec.toJSON().runs[0]?.events ?? []) as unknown as Ev[];
}

describe.skipIf(!present)("the explorer in Chromium", () => {
  let ctx: BrowserContext;
  let server: Server;
  let base: string;
  let profile: string;
  const errors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(join(siteDir, "index.html"))) {
      const r = spawnSync("pnpm", ["exec", "vite", "build", "--logLevel", "error"], { cwd: appDir, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`vite build failed: ${r.stderr}`);
    }
    mkdirSync(artifacts, { recursive: true });
    profile = mkdtempSync(join(tmpdir(), "explorer-chromium-"));
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    ({ server, url: base } = await serve(siteDir));
  }, 180_000);

  afterAll(async () => {
    await ctx.close();
    await new Promise((r) => server.close(r));
    rmSync(profile, { recursive: true, force: true });
  });

  test("P2P through ACS redirect: the peer TLP goes up to the root complex, through the IOMMU, and down", async () => {
    const page = await open(ctx, `${base}/index.html#p2p-acs-redirect`, errors);
    await pickRun(page, "classic/strict");
    const events = eventsOf("p2p-acs-redirect", "classic/strict");
    const peer = events.findIndex((e) => e.path === "peer-via-host-bridge");
    await stepTo(page, peer + 1);
    expect(await page.textContent("[data-testid=route]")).toContain("0000:02:00.0 → sw0.dp0 → sw0 → rp0 → hb0 → IOMMU → rp0 → sw0 → sw0.dp1 → 0000:03:00.0");
    expect(await page.getAttribute("[data-testid=topo-node][data-id='sw0.dp1']", "data-on-route")).toBe("true");
    expect(await page.getAttribute("[data-testid=topo-node][data-id='0000:05:00.0']", "data-on-route")).toBe("false");
    expect(await page.textContent("[data-testid=topo-node][data-id='sw0.dp0']")).toContain("ACS RR CR");
    // The 64 KiB of the peer's BAR are linked and synced in the device's IOVA space at this step.
    expect(await page.$$eval("[data-testid=iova-ranges] li", (ls) => ls.map((l) => l.getAttribute("data-state")))).toContain("synced");
    expect(await page.textContent("[data-testid=pt-totals]")).toContain("16 × 4 KiB");
    const tlps = events.slice(0, peer + 1).filter((e) => e.type === "tlp").length;
    expect(await page.textContent("[data-testid=counts] tr[data-type=tlp] td.num")).toBe(String(tlps));
    await page.screenshot({ path: join(artifacts, "p2p-acs-redirect.png"), fullPage: true });
    // The README's picture (docs/screenshot.png is a copy of this one).
    await page.screenshot({ path: join(artifacts, "screenshot.png") });
    // Edit the scenario: twice the bytes, and run it again live.
    const tlpsBefore = Number(await page.getAttribute("[data-testid=compare] tr[data-row=events] td:nth-child(2)", "data-value"));
    const json = JSON.parse(await page.inputValue("[data-testid=editor]")) as { workload: { bytes: number } };
    json.workload.bytes *= 2;
    const shown = await shownCount(page);
    await page.fill("[data-testid=editor]", JSON.stringify(json, null, 2));
    await page.click("[data-testid=run]");
    await page.waitForFunction((n) => Number(document.body.dataset.shown) > n, shown);
    const tlpsAfter = Number(await page.getAttribute("[data-testid=compare] tr[data-row=events] td:nth-child(2)", "data-value"));
    expect(tlpsAfter).toBeGreaterThan(tlpsBefore);
    // A bad edit is refused with the scenario package's typed issues, path by path.
    json.workload.bytes = -1;
    await page.fill("[data-testid=editor]", JSON.stringify(json, null, 2));
    await page.click("[data-testid=run]");
    expect(await page.textContent("[data-testid=editor-errors]")).toContain("editor.workload.bytes");
    await page.close();
  });

  test("the lazy stale window: after the unmap the IOTLB entry is stale, the device still reads through it", async () => {
    const page = await open(ctx, `${base}/index.html#lazy-stale-window`, errors);
    await pickRun(page, "classic/lazy");
    const events = eventsOf("lazy-stale-window", "classic/lazy");
    const unmap = events.findIndex((e) => e.type === "iommu.unmap");
    const firstStale = events.findIndex((e) => e.type === "iotlb.lookup" && e.result === "stale-hit");
    expect(firstStale).toBeGreaterThan(unmap);
    await page.focus("[data-testid=timeline]");
    await page.keyboard.press("Home");
    // "f" jumps to the first failure: the first IOTLB lookup that hit the stale entry, after the unmap.
    await page.keyboard.press("f");
    expect(await page.textContent("[data-testid=step]")).toMatch(new RegExp(`^${firstStale + 1} / ${events.length}$`));
    expect(await page.textContent("[data-testid=event-line]")).toContain("stale-hit");
    const iova = `0x${(events[unmap]?.iova as number).toString(16)}`;
    expect(await page.getAttribute("[data-testid=iotlb-entries] li", "data-stale")).toBe("true");
    expect(await page.getAttribute("[data-testid=iotlb-entries] li", "data-iova")).toBe(iova);
    expect(await page.textContent("[data-testid=iova-stale]")).toContain(iova);
    expect(await page.textContent("[data-testid=iotlb-totals]")).toContain("1 stale hits");
    await page.screenshot({ path: join(artifacts, "lazy-stale-window.png"), fullPage: true });
    // The flush queue's invalidation ends the window: at the end nothing is stale.
    await page.keyboard.press("End");
    expect(await page.textContent("[data-testid=iova-stale]")).toBe("");
    expect(await page.$$("[data-testid=iotlb-entries] li[data-stale=true]")).toHaveLength(0);
    // Space plays from the step and pauses.
    await page.keyboard.press("Home");
    await page.keyboard.press(" ");
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=step]")?.textContent.split(" / ")[0]) >= 3);
    await page.keyboard.press(" ");
    const paused = await page.textContent("[data-testid=step]");
    await page.waitForTimeout(300);
    expect(await page.textContent("[data-testid=step]")).toBe(paused);
    // Strict mode has no window: the probe after the unmap faults.
    await pickRun(page, "classic/strict");
    await page.focus("[data-testid=timeline]");
    await page.keyboard.press("f");
    expect(await page.textContent("[data-testid=event-line]")).toContain("iommu.fault");
    await page.close();
  });

  test("NVMe: 4 runs in the page, the route to RAM through the IOMMU, counters", async () => {
    const page = await open(ctx, `${base}/index.html#nvme-4k-randread`, errors);
    const events = eventsOf("nvme-4k-randread", "classic/strict");
    const firstTlp = events.findIndex((e) => e.type === "tlp" && e.path === "memory");
    await stepTo(page, firstTlp + 1);
    expect(await page.textContent("[data-testid=route]")).toContain("→ IOMMU → RAM");
    expect(Number(await page.textContent("[data-testid=counts] tr[data-type=api] td.num"))).toBeGreaterThan(0);
    expect(await page.$$("[data-testid=compare] thead th")).toHaveLength(5);
    await page.screenshot({ path: join(artifacts, "nvme-4k-randread.png"), fullPage: true });
    await page.close();
  });

  test("HMM: each page's pfn and DMA address, what munmap's invalidation removed", async () => {
    // HMM with hmm_dma_map (two-step): each page's pfn → DMA address, and what munmap's invalidation removed.
    const hmm = await open(ctx, `${base}/index.html#hmm-munmap`, errors);
    await pickRun(hmm, "two-step/strict");
    const hmmEvents = eventsOf("hmm-munmap", "two-step/strict");
    const inval = hmmEvents.findIndex((e) => e.type === "mmu-notifier.invalidate");
    const after = hmmEvents.findIndex((e, i) => i > inval && (e.type === "hmm.range-fault" || e.type === "mmu-notifier.invalidate"));
    // The scrubber jumps to the step just before the next fault: the invalidation's unmaps are done.
    await scrubTo(hmm, after < 0 ? hmmEvents.length : after);
    // Half the mirror is unmapped (listed first, the latest change on top), the other half still mapped.
    expect(await hmm.$$("[data-testid=hmm-pages] tr[data-mapped=false]")).not.toHaveLength(0);
    const mapped = Number(await hmm.getAttribute("[data-testid=hmm-summary]", "data-mapped"));
    const seen = Number(await hmm.getAttribute("[data-testid=hmm-summary]", "data-seen"));
    expect(mapped).toBeGreaterThan(0);
    expect(mapped).toBeLessThan(seen);
    expect(await hmm.textContent("[data-testid=hmm-invalidations]")).toMatch(/invalidate \S+ 0x[0-9a-f]+–0x[0-9a-f]+: removed (?!nothing)/);
    await hmm.screenshot({ path: join(artifacts, "hmm-munmap.png"), fullPage: true });
    await hmm.close();
  });

  test("dma-buf: the buffer's placement over time and the importer's mapping; ODP runs", async () => {
    // dma-buf: the buffer moves to RAM and back to VRAM; the importer's mapping is shown.
    const buf = await open(ctx, `${base}/index.html#dmabuf-migrate`, errors);
    const bufEvents = eventsOf("dmabuf-migrate", "classic/strict");
    const firstMove = bufEvents.findIndex((e) => e.type === "dmabuf.move");
    await scrubTo(buf, firstMove + 1);
    expect(await buf.getAttribute("[data-testid=dmabuf-bufs] tr[data-buf]", "data-placement")).toBe(bufEvents[firstMove]?.inVram === 0 ? "ram" : "mixed");
    await buf.focus("[data-testid=timeline]");
    await buf.keyboard.press("End");
    expect(await buf.getAttribute("[data-testid=dmabuf-bufs] tr[data-buf]", "data-placement")).toBe("vram");
    expect(await buf.textContent("[data-testid=dmabuf-bufs]")).toContain("0000:02:00.0 sgt");
    await buf.screenshot({ path: join(artifacts, "dmabuf-migrate.png"), fullPage: true });
    await buf.close();
    for (const name of ["odp-rc-traffic", "dmabuf-p2p-host-bridge"]) {
      const p = await open(ctx, `${base}/index.html#${name}`, errors);
      await p.focus("[data-testid=timeline]");
      await p.keyboard.press("End");
      expect(await p.textContent("[data-testid=description]")).toContain(name);
      expect(Number((await p.textContent("[data-testid=step]"))?.split(" / ")[1])).toBeGreaterThan(0);
      expect(await p.$$("[data-testid=checks] li")).not.toHaveLength(0);
      await p.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
      await p.close();
    }
  });

  test("opens from disk (file://) with a scenario given by scenario.js", async () => {
    const dir = mkdtempSync(join(tmpdir(), "explorer-site-"));
    try {
      cpSync(siteDir, dir, { recursive: true });
      const s = builtinScenario("p2p-switch")!;
      writeFileSync(join(dir, "scenario.js"), `globalThis.DMASIM_EXPLORE = ${JSON.stringify({ scenario: s, runLog: null })};\n`);
      const page = await open(ctx, pathToFileURL(join(dir, "index.html")).href, errors);
      expect(await page.inputValue("[data-testid=scenario-select]")).toBe("");
      const events = eventsOf("p2p-switch", "classic/strict");
      const peer = events.findIndex((e) => e.path === "peer-via-switch");
      await stepTo(page, peer + 1);
      expect(await page.textContent("[data-testid=route]")).toContain("0000:02:00.0 → sw0.dp0 → sw0 → sw0.dp1 → 0000:03:00.0");
      await page.screenshot({ path: join(artifacts, "file-p2p-switch.png"), fullPage: true });
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("100 k events: first render and scrub step, measured in the page (figures to test-artifacts/perf.json)", async () => {
    // One run of NVMe random reads sized to pass 100 k events, given to the page as a recorded run log.
    const base4k = builtinScenario("nvme-4k-randread")!;
    const s = { ...base4k, name: "nvme-100k-events", axes: { api: ["classic" as const], iommu: ["strict" as const] }, workload: { ...base4k.workload, ops: 6200 } } as typeof base4k;
    const rec = new RunLogRecorder(s);
    const results = sweep(s, { api: ["classic"], iommu: ["strict"] }, { onHost: rec.attach });
    const log = rec.toJSON(results);
    const events = log.runs[0]?.events.length ?? 0;
    expect(events).toBeGreaterThanOrEqual(100_000);
    const dir = mkdtempSync(join(tmpdir(), "explorer-perf-"));
    try {
      cpSync(siteDir, dir, { recursive: true });
      writeFileSync(join(dir, "scenario.js"), `globalThis.DMASIM_EXPLORE = ${JSON.stringify({ scenario: null, runLog: log })};\n`);
      const page = await open(ctx, pathToFileURL(join(dir, "index.html")).href, errors);
      const firstRenderMs = Number(await page.getAttribute("body", "data-first-render-ms"));
      // Of which: loading and parsing scenario.js (the log as a script) and the page's own script.
      const scriptStartMs = Number(await page.getAttribute("body", "data-script-start-ms"));
      await page.focus("[data-testid=timeline]");
      // A keyboard step, and a scrubber jump to spread positions (the worst case replays from a checkpoint).
      const timings = await page.evaluate((n) => {
        const step: number[] = [];
        const jump: number[] = [];
        const scrub = document.querySelector<HTMLInputElement>("[data-testid=scrubber]");
        const max = Number(scrub?.max ?? 0);
        for (let i = 0; i < 200; i++) {
          const t0 = performance.now();
          document.dispatchEvent(new KeyboardEvent("keydown", { key: "j" }));
          step.push(performance.now() - t0);
        }
        for (let i = 0; i < n; i++) {
          if (scrub === null) break;
          scrub.value = String(Math.floor(((i * 7919) % n) * (max / n)) + 2047);
          const t0 = performance.now();
          scrub.dispatchEvent(new Event("input"));
          jump.push(performance.now() - t0);
        }
        return { step, jump };
      }, 100);
      const stat = (xs: number[]): { median: number; p95: number; max: number } => {
        const v = [...xs].sort((a, b) => a - b);
        const at = (q: number): number => Math.round((v[Math.min(v.length - 1, Math.floor(q * v.length))] ?? 0) * 100) / 100;
        return { median: at(0.5), p95: at(0.95), max: at(1) };
      };
      const figures = { events, firstRenderMs, scriptStartMs, keyboardStepMs: stat(timings.step), scrubberJumpMs: stat(timings.jump), chromium: ctx.browser()?.version() ?? "persistent context" };
      writeFileSync(join(artifacts, "perf.json"), `${JSON.stringify(figures, null, 2)}\n`);
      expect(await page.textContent("[data-testid=step]")).toMatch(/ \/ \d{6}$/);
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("no console errors on any page", () => {
    expect(errors).toEqual([]);
  });
});
