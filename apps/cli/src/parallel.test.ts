import { describe, expect, it } from "vitest";
import { builtinScenario, runScenario } from "@dmasim/scenario";
import type { Scenario } from "@dmasim/scenario";
import { main, mainParallel, progressBar } from "./cli.js";
import { errorReport, ReportedError } from "./errors.js";
import { recordingIo } from "./test-io.js";
import { configurations, runConfigurations } from "./parallel.js";
import type { WorkerOptions } from "./parallel.js";

// The tests run the sources: the worker thread gets the repository's loader for .ts files (the one the
// benchmarks use), so it runs the same worker.ts the built dist/worker.js is compiled from.
const worker: WorkerOptions = {
  filename: new URL("./worker.ts", import.meta.url),
  execArgv: ["--import", new URL("../../../scripts/bench-loader/register.mjs", import.meta.url).href],
  isolate: true,
};
// Each thread the tests start compiles the sources it loads: the whole demo reuses two threads.
const reused: WorkerOptions = { ...worker, isolate: false };


async function both(argv: readonly string[], tty = false, options = worker): Promise<{ serial: { code: number; out: string; err: string }; parallel: { code: number; out: string; err: string } }> {
  const s = recordingIo({ tty });
  const code = main(argv, s.io);
  const p = recordingIo({ tty });
  const pcode = await mainParallel([...argv, "--jobs", "2"], p.io, options);
  return { serial: { code, out: s.out(), err: s.err() }, parallel: { code: pcode, out: p.out(), err: p.err() } };
}

describe("demo and compare on worker threads", () => {
  // sg-256 on a fresh thread per configuration (--isolate-workers); the others on reused threads (the default).
  it.each([
    [["compare", "sg-256", "--isolate-workers"], worker],
    [["compare", "nvme-4k-randread", "--json", "--profile", "vtd"], reused],
    [["compare", "p2p-acs-redirect", "--api", "classic", "--iommu", "strict,lazy,off"], reused],
  ] as const)(
    "%j prints what the serial run prints",
    async (argv, options) => {
      const { serial, parallel } = await both(argv, false, options);
      expect(serial.code).toBe(0);
      expect(parallel).toEqual(serial);
      expect(serial.out.length).toBeGreaterThan(500);
    },
    300_000,
  );

  it("demo prints what the serial run prints, text and --json", async () => {
    for (const argv of [["demo"], ["demo", "--json"]]) {
      const { serial, parallel } = await both(argv, false, reused);
      expect(serial.code).toBe(0);
      expect(parallel.out).toBe(serial.out);
      expect(parallel.code).toBe(serial.code);
    }
  }, 600_000);

  it("the progress bar counts finished runs up to the total and is cleared before the table", async () => {
    const { serial, parallel } = await both(["compare", "sg-256"], true);
    expect(parallel.out).toBe(serial.out);
    expect(parallel.err.startsWith(progressBar(0, 4, "sg-256"))).toBe(true);
    for (const done of [1, 2, 3, 4]) expect(parallel.err).toContain(`[${"#".repeat(done * 6)}${".".repeat(24 - done * 6)}] ${done}/4 sg-256 `);
    expect(parallel.err.endsWith("\r\x1b[2K")).toBe(true);
  });

  it("an error inside a worker comes back as the serial run's message and exit status", async () => {
    // A platform the model refuses, past the file checks (as a program could hand it over): the runner
    // raises ScenarioSetupError inside the worker, where the class is known.
    const good = builtinScenario("sg-256");
    if (good === undefined) throw new Error("sg-256 is a built-in");
    const bad = { ...good, platform: { memory: { ramBytes: 1 << 30 }, endpoints: [{ bdf: "not-a-bdf" }] } } as unknown as Scenario;
    const list = configurations(bad, { api: ["classic", "two-step"], iommu: ["strict"] });
    let serial: unknown;
    try {
      runScenario(bad, { api: "classic", iommu: "strict" });
    } catch (e) {
      serial = e;
    }
    const expected = errorReport(serial);
    expect(expected.status).toBe(2);
    const failure = await runConfigurations(list, 2, reused).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ReportedError);
    expect(errorReport(failure)).toEqual(expected);
  });

  it("refuses a --jobs that is not a count, and --jobs on commands that run nothing in parallel", async () => {
    for (const argv of [["demo", "--jobs", "0"], ["compare", "sg-256", "--jobs", "two"], ["run", "sg-256", "--jobs", "2"], ["list", "--jobs", "2"], ["run", "sg-256", "--isolate-workers"]]) {
      const r = recordingIo();
      expect(await mainParallel(argv, r.io, worker)).toBe(2);
      expect(r.err()).toMatch(/--jobs|--isolate-workers/);
      expect(r.out()).toBe("");
    }
  });
});
