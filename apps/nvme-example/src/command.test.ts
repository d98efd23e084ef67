import { describe, expect, it } from "vitest";
import { compareMain, COMPARE_HELP, parseCompareArgs } from "./compare-command.js";
import { UsageError } from "./command.js";
import { parseWorkloadArgs, WORKLOAD_HELP, workloadMain } from "./workload-command.js";

function capture(main: (argv: readonly string[], io: { out(t: string): void; err(t: string): void }) => number, argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

/** A refusal: exit status 2, nothing on stdout, exactly one line on stderr and no stack frame in it. */
function expectOneLineUsageError(r: { status: number; out: string; err: string }, pattern: RegExp): void {
  expect(r.status).toBe(2);
  expect(r.out).toBe("");
  expect(r.err).toMatch(pattern);
  expect(r.err.split("\n")).toHaveLength(2); // one line and its newline
  expect(r.err).not.toMatch(/\n\s+at /);
}

describe("workload command line", () => {
  it("--help and -h print the options and exit 0", () => {
    for (const flag of ["--help", "-h"]) {
      const r = capture(workloadMain, [flag]);
      expect(r).toEqual({ status: 0, out: WORKLOAD_HELP, err: "" });
    }
    for (const option of ["--ops", "--bs", "--mode", "--mapping", "--profile", "--cpus", "--no-verify", "--p2p"]) expect(WORKLOAD_HELP).toContain(option);
  });

  it.each([
    [["--bogus"], /^workload: Unknown option '--bogus' \(workload --help lists the options\)$/m],
    [["extra"], /^workload: Unexpected argument 'extra'/m],
    [["--ops"], /^workload: Option '--ops <value>' argument missing/m],
    [["--ops", "abc"], /^workload: --ops "abc" is invalid: expected an integer >= 1 /m],
    [["--ops", "0"], /--ops "0" is invalid/],
    [["--ops", "1.5"], /--ops "1.5" is invalid/],
    [["--read", "101"], /--read "101" is invalid: expected an integer from 0 to 100/],
    [["--bs", "8192:4096"], /--bs "8192:4096" is invalid: MAX is below MIN/],
    [["--bs", "4096:8192:16384"], /--bs "4096:8192:16384" is invalid: expected MIN or MIN:MAX/],
    [["--mode", "sloppy"], /--mode "sloppy" is invalid: expected strict, lazy, passthrough, off/],
    [["--layout", "random"], /--layout "random" is invalid: expected contiguous, scattered, offset/],
    [["--mapping", "sg"], /--mapping "sg" is invalid/],
    [["--profile", "vtx"], /--profile "vtx" is invalid: expected default, vtd/],
    [["--debug", "loud"], /--debug "loud" is invalid/],
    [["--base-ns=-1"], /--base-ns "-1" is invalid: expected a number >= 0/],
    [["--base-ns", "-1"], /^workload: Option '--base-ns' argument is ambiguous \(workload --help/m],
    [["--cpus", "0"], /--cpus "0" is invalid/],
  ])("refuses %j with one line and exit status 2, before running anything", (argv, pattern) => {
    expectOneLineUsageError(capture(workloadMain, argv), pattern);
  });

  it("a value the model refuses (a block size the drive cannot do) is one line, exit status 2", () => {
    const r = capture(workloadMain, ["--ops", "10", "--bs", "1000"]);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/^workload: .*bsMin/);
    expect(r.err.split("\n")).toHaveLength(2);
  });

  it("parses every option into the job and the system's settings", () => {
    const a = parseWorkloadArgs(["--ops", "5", "--bs", "4096:65536", "--read", "70", "--qd", "8", "--seed", "9", "--layout", "scattered", "--mode", "lazy", "--debug", "throw", "--mapping", "sg-classic", "--profile", "vtd", "--cpus", "4", "--base-ns", "250", "--no-verify", "--p2p"]);
    expect(a).toEqual({
      job: { ops: 5, bsMin: 4096, bsMax: 65536, readPct: 70, queueDepth: 8, seed: 9, layout: "scattered", verify: false },
      mode: "lazy",
      debug: "throw",
      mapping: "sg-classic",
      profile: "vtd",
      cpus: 4,
      baseNs: 250,
      p2p: true,
    });
    expect(parseWorkloadArgs([])).toMatchObject({ job: { ops: 100_000, bsMin: 4096, bsMax: 4096, readPct: 100, queueDepth: 32, verify: true }, mode: "strict", profile: "default" });
    expect(() => parseWorkloadArgs(["--qd", "x"])).toThrow(UsageError);
    // pnpm passes its `--` separator on to the script; only a leading one is dropped.
    expect(parseWorkloadArgs(["--", "--ops", "7"])).toMatchObject({ job: { ops: 7 } });
    expect(() => parseWorkloadArgs(["--ops", "7", "--", "--qd", "8"])).toThrow(UsageError);
  });

  it("runs a small job and prints its report", () => {
    const r = capture(workloadMain, ["--ops", "40", "--bs", "4096:16384", "--read", "50", "--layout", "scattered"]);
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    expect(r.out).toContain(`job: {"ops":40,"bsMin":4096,"bsMax":16384,"readPct":50,"queueDepth":32,"seed":1,"layout":"scattered","verify":true}, mode strict, debug off, mapping iterator`);
    expect(r.out).toMatch(/^40 I\/Os \(\d+ reads, \d+ writes\), .* 0 mismatches$/m);
    expect(r.out).toMatch(/^modelled host IOPS on 1 CPU\(s\), cost profile default: /m);
  });
});

describe("compare command line", () => {
  it("--help prints the options and exit 0", () => {
    expect(capture(compareMain, ["--help"])).toEqual({ status: 0, out: COMPARE_HELP, err: "" });
  });

  it.each([
    [["--opps", "5"], /^compare: Unknown option '--opps'/],
    [["--ops=-3"], /^compare: --ops "-3" is invalid: expected an integer >= 1/],
    [["--cost", "IotlbSyncMap"], /^compare: --cost "IotlbSyncMap" is invalid: expected Counter=nanoseconds/],
    [["--cost", "IotlbSyncMap=fast"], /--cost "IotlbSyncMap=fast" is invalid/],
    [["--cost"], /^compare: Option '--cost <value>' argument missing/],
  ])("refuses %j with one line and exit status 2", (argv, pattern) => {
    expectOneLineUsageError(capture(compareMain, argv), pattern);
  });

  it("collects repeated --cost overrides", () => {
    expect(parseCompareArgs(["--ops", "50", "--cost", "IotlbSyncMap=0", "--cost", "PteWrites=2.5"])).toEqual({ ops: 50, costProfile: { IotlbSyncMap: 0, PteWrites: 2.5 } });
  });

  it("an override the cost model does not know is one line, not a stack trace", () => {
    const r = capture(compareMain, ["--ops", "1", "--cost", "NoSuchCounter=3"]);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/^compare: .*NoSuchCounter/);
    expect(r.err.split("\n")).toHaveLength(2);
  });
});
