import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "./cli.js";
import { outputProblem, quietOnEpipe } from "./files.js";
import type { Io } from "./cli.js";
import { recordingIo } from "./test-io.js";
import type { RunResult } from "@dmasim/scenario";
import { builtinScenario, readRunLog } from "@dmasim/scenario";

function capture(argv: readonly string[], options: { tty?: boolean; onWrite?: () => void } = {}): { code: number; out: string; err: string; files: Map<string, string> } {
  const r = recordingIo(options);
  const code = main(argv, r.io);
  return { code, out: r.out(), err: r.err(), files: r.files };
}

const dir = mkdtempSync(join(tmpdir(), "dmasim-cli-"));

function scenarioFile(name: string, scenario: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof scenario === "string" ? scenario : JSON.stringify(scenario));
  return path;
}

describe("dmasim command", () => {
  it("list prints one line per built-in; --json prints them as scenarios", () => {
    const text = capture(["list"]);
    expect(text.code).toBe(0);
    expect(text.out.trim().split("\n")).toHaveLength(42);
    expect(text.out).toMatch(/^nvme-4k-randread +NVMe 4 KiB random reads/m);
    const json = JSON.parse(capture(["list", "--json"]).out) as { format: string; version: number; command: string; scenarios: { name: string; workload: { kind: string } }[] };
    expect([json.format, json.version, json.command]).toEqual(["dmasim-cli", 1, "list"]);
    expect(json.scenarios.map((s) => s.workload.kind)).toContain("stale-window");
    expect(json.scenarios.map((s) => s.workload.kind)).toContain("rdma-odp");
  });

  it("show prints a built-in that `run` accepts as a file, with the same result", () => {
    const shown = capture(["show", "lazy-stale-window"]);
    expect(shown.code).toBe(0);
    const file = scenarioFile("exported.json", shown.out);
    const fromFile = capture(["run", file, "--iommu", "lazy", "--json"]);
    const builtin = capture(["run", "lazy-stale-window", "--iommu", "lazy", "--json"]);
    expect(fromFile.code).toBe(0);
    const a = (JSON.parse(fromFile.out) as { result: RunResult }).result;
    const b = (JSON.parse(builtin.out) as { result: RunResult }).result;
    expect(a).toEqual(b);
    expect(a.metrics.staleReads).toBe(100);
  });

  it("run prints the checks and the counters and exits 0", () => {
    const r = capture(["run", "sg-256", "--api", "classic"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("== sg-256 (classic, IOMMU strict)");
    expect(r.out).toContain("✓ device saw the right bytes");
    expect(r.out).toMatch(/PteWrites +1,024/);
  });

  it("exits 1 when a check fails, and says which", () => {
    const s = { ...builtinScenario("p2p-host-bridge"), expect: { mapType: "BUS_ADDR" } };
    const r = capture(["run", scenarioFile("wrong-route.json", s)]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("✗ P2P route: pci_p2pdma_map_type is THRU_HOST_BRIDGE, expected BUS_ADDR");
    expect(r.out).toContain("[CHECK FAILED]");
  });

  it("exits 1 when the device faults mid-run, without a stack trace", () => {
    // A device that cannot reach memory above 4 GiB with the IOMMU off: dma-direct must bounce, and
    // with no swiotlb the mapping fails.
    const s = {
      name: "no-bounce",
      description: "a 32-bit device, no IOMMU, no swiotlb",
      platform: { memory: { ram: [{ base: 8 * 1024 ** 3, size: 1024 ** 3 }] }, endpoints: [{ bdf: "0000:01:00.0" }] },
      kernel: { swiotlbBytes: 0 },
      axes: { iommu: ["off"] },
      workload: { kind: "single", device: "0000:01:00.0", buffers: 1, bytes: 4096 },
    };
    const r = capture(["run", scenarioFile("no-bounce.json", s), "--iommu", "off", "--api", "classic"]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/✗ device saw the right bytes: 1 buffer\(s\) differed or failed to map/);
    expect(r.out + r.err).not.toMatch(/\n\s+at /);
  });

  it.each([
    [["frobnicate"], /unknown command "frobnicate"/],
    [["run"], /run takes one scenario/],
    [["run", "sg-256", "--api", "classic,two-step"], /run takes one --api and one --iommu value/],
    [["compare", "sg-256", "--api", "zero-copy"], /--api = "zero-copy" is invalid: expected a comma-separated list of classic, two-step/],
    [["compare", "sg-256", "--iommu", "strict,fast"], /--iommu = "fast" is invalid/],
    [["run", "no-such-scenario"], /<scenario> = "no-such-scenario" is invalid: expected a scenario file or a built-in name/],
    [["demo", "--colour"], /Unknown option '--colour'/],
    [["list", "--api", "classic"], /list takes no --api or --iommu/],
  ])("exits 2 on bad usage: %j", (argv, message) => {
    const r = capture(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe("");
  });

  it.each([
    ["--trace into a missing directory", () => ["run", "sg-256", "--trace", join(dir, "no-such-dir", "t.json")], /^dmasim: --trace = ".*no-such-dir\/t\.json" is invalid: expected a file in an existing directory/],
    ["--trace onto a directory", () => ["compare", "sg-256", "--trace", dir], /^dmasim: --trace = ".*" is invalid: expected a file name, not a directory/],
    ["--record onto a directory", () => ["run", "sg-256", "--record", dir], /^dmasim: --record = ".*" is invalid: expected a file name, not a directory/],
    ["a scenario path that is a directory", () => ["run", dir], /^dmasim: <scenario> = ".*" is invalid: expected a scenario file, not a directory/],
    ["JSON too deep", () => ["run", scenarioFile("deep.json", `${"[".repeat(200_000)}${"]".repeat(200_000)}`)], /^dmasim: .*deep\.json:1:65 = .* is invalid: expected JSON nested at most 64 levels deep/],
  ])("%s: one dmasim: line and exit 2 before anything runs", (_what, argv, message) => {
    let wrote = 0;
    const r = capture(argv(), { onWrite: () => wrote++ });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.out).toBe("");
    expect(wrote).toBe(0);
  });

  it("an error inside dmasim itself is one line and exit 70, never a stack trace", () => {
    const io: Io = {
      out: () => {
        throw new TypeError("stdout is gone");
      },
      err: (t) => {
        err += t;
      },
      stderrIsTTY: false,
      writeFile: () => undefined,
      outputProblem,
      schemaUrl: "",
    };
    let err = "";
    expect(main(["list"], io)).toBe(70);
    expect(err).toBe("dmasim: internal error (please report it): TypeError: stdout is gone\n");
  });

  it("EPIPE on stdout ends the process quietly with 0; another stream error is one line and 2", () => {
    const listeners: ((e: Error & { code?: string }) => void)[] = [];
    const stream = { on: (_event: "error", fn: (e: Error & { code?: string }) => void) => listeners.push(fn) };
    const exits: number[] = [];
    let said = "";
    quietOnEpipe(stream, (c) => exits.push(c), (t) => (said += t));
    listeners[0]!(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    expect([exits, said]).toEqual([[0], ""]);
    listeners[0]!(Object.assign(new Error("write ENOSPC"), { code: "ENOSPC" }));
    expect([exits, said]).toEqual([[0, 2], "dmasim: cannot write output: write ENOSPC\n"]);
  });

  it("show emits $schema first, and the file it makes runs", () => {
    const r = capture(["show", "sg-256"]);
    expect(Object.keys(JSON.parse(r.out) as object)[0]).toBe("$schema");
    expect(capture(["run", scenarioFile("with-schema.json", r.out)]).code).toBe(0);
  });

  it("exits 2 on a bad scenario file, naming the field, the value and what was expected", () => {
    const s = { ...builtinScenario("sg-256"), workload: { kind: "sg", device: "0000:02:00.0", entries: -3, entryBytes: 4096 } };
    const r = capture(["run", scenarioFile("bad.json", s)]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("workload.entries = -3 is invalid: expected a number of entries from 1 to 65,536");
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it("exits 2 when the platform spec is wrong, with the model's message", () => {
    const s = { ...builtinScenario("sg-256"), platform: { memory: { ramBytes: 1 << 30 }, endpoints: [{ bdf: "not-a-bdf" }] } };
    const r = capture(["run", scenarioFile("bad-platform.json", s)]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bad-platform\.json\.platform\.endpoints\[0\]\.bdf = "not-a-bdf" is invalid/);
  });

  it("compare sweeps the axes, draws a progress bar only on a terminal and never with --json", () => {
    const tty = capture(["compare", "lazy-stale-window", "--api", "classic,two-step", "--iommu", "strict,lazy,off"], { tty: true });
    expect(tty.code).toBe(0);
    expect(tty.err).toContain("[########################] 6/6");
    expect(tty.out.match(/^ {2}(strict|lazy|off) +(classic|two-step) /gm)).toHaveLength(6);
    expect(capture(["compare", "lazy-stale-window"], { tty: false }).err).toBe("");
    const json = capture(["compare", "lazy-stale-window", "--json"], { tty: true });
    expect(json.err).toBe("");
    const parsed = JSON.parse(json.out) as { axes: { api: string[]; iommu: string[] }; results: RunResult[] };
    expect(parsed.axes).toEqual({ api: ["classic", "two-step"], iommu: ["strict", "lazy"] });
    expect(parsed.results).toHaveLength(4);
  });

  it("demo runs every built-in, prints each with its table and a closing verdict, and exits 0", () => {
    const r = capture(["demo"]);
    expect(r.code).toBe(0);
    expect(r.out.match(/^== [a-z0-9-]+: .* \[ok\]$/gm)).toHaveLength(42);
    expect(r.out).toContain("All 42 scenarios (104 runs) passed every check.");
    expect(r.out).not.toContain("FAILED");
    expect(r.out).toMatch(/^ {2}lazy +two-step +4 +1 +1 +1 +1 +0 B .* 100 +10 ms +ok$/m);
  }, 120_000); // 74 runs: seconds alone, longer on a loaded machine

  it("--help prints usage with examples and exits 0; no command exits 2", () => {
    const r = capture(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("Examples:");
    expect(r.out).toContain("dmasim compare");
    expect(capture([]).code).toBe(2);
  });

  it("--version prints the package's version and exits 0", () => {
    const r = capture(["--version"]);
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(r).toMatchObject({ code: 0, out: `${pkg.version}\n`, err: "" });
  });

  it("--json output is one versioned object per command (format dmasim-cli, version 1)", () => {
    const run = JSON.parse(capture(["run", "sg-256", "--json"]).out) as Record<string, unknown>;
    expect(Object.keys(run).slice(0, 5)).toEqual(["format", "version", "command", "scenario", "result"]);
    expect(run).toMatchObject({ format: "dmasim-cli", version: 1, command: "run", result: { ok: true } });
    const compare = JSON.parse(capture(["compare", "sg-256", "--api", "two-step", "--iommu", "strict", "--json"]).out) as Record<string, unknown>;
    expect(compare).toMatchObject({ format: "dmasim-cli", version: 1, command: "compare", axes: { api: ["two-step"], iommu: ["strict"] } });
  });

  it("the example scenario file runs and passes", () => {
    const r = capture(["run", new URL("../../../packages/scenario/examples/nvme-mixed.json", import.meta.url).pathname, "--json"]);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as { result: RunResult }).result.ok).toBe(true);
  });

  it("writes the trace file when asked", () => {
    const path = join(dir, "t.json");
    const r = capture(["run", "sg-256", "--trace", path]);
    expect(r.code).toBe(0);
    expect(r.err).toContain(`trace written to ${path}`);
    const written = JSON.parse(r.files.get(path) ?? "null") as Record<string, unknown>;
    expect(Object.keys(written)).toEqual(["traceEvents"]);
    expect(() => readFileSync(path)).toThrow(/^ENOENT: no such file/); // the test's Io kept it in memory
  });

  it("--record writes a versioned run log: the scenario, every run's trace events and its result", () => {
    const path = join(dir, "log.json");
    const r = capture(["compare", "sg-256", "--iommu", "strict", "--record", path]);
    expect(r.code).toBe(0);
    expect(r.err).toContain(`run log written to ${path}`);
    const log = readRunLog(JSON.parse(r.files.get(path) ?? "null"));
    expect([log.format, log.version, log.scenario.name]).toEqual(["dmasim-run-log", 2, "sg-256"]);
    expect(log.runs.map((x) => `${x.api}/${x.iommu}`)).toEqual(["classic/strict", "two-step/strict"]);
    for (const run of log.runs) {
      expect(run.result?.ok).toBe(true);
      // Every dma_iova_link the counters saw is a B/E pair in the log.
      const links = run.events.filter((e) => e.type === "api" && e.name === "dma_iova_link" && e.phase === "B").length;
      expect(links).toBe(run.result?.counters.DmaIovaLinks ?? 0);
      expect(run.events.some((e) => e.type === "iommu.map")).toBe(true);
    }
    expect(capture(["demo", "--record", path]).code).toBe(2);
  });
});
