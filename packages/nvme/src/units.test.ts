import { DmasimError } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { NvmeInputError, WorkloadError } from "./errors.js";
import { NvmeOpcode, NvmePsdt, NvmeSglType, decodeSqe, emptyCommand, encodeSqe, getU64, setU64 } from "./nvme-defs.js";
import { patternInto, patternMatches } from "./pattern.js";
import { createNvmeSystem } from "./system.js";
import { runWorkload } from "./workload.js";

describe("NVMe wire formats", () => {
  it("round-trips a PRP and an SGL command through 64 bytes", () => {
    const view = new DataView(new ArrayBuffer(64));
    const c = { ...emptyCommand(), opcode: NvmeOpcode.WRITE, cid: 513, psdt: NvmePsdt.PRP, nsid: 1, prp1: 2 ** 40 + 0x200, prp2: 2 ** 45, slba: 2 ** 33 + 8, nlb: 255 };
    encodeSqe(view, 0, c);
    const out = emptyCommand();
    decodeSqe(view, 0, out);
    expect({ ...out, sglAddr: c.sglAddr, sglLen: c.sglLen, sglType: c.sglType }).toEqual(c);
    const s = { ...emptyCommand(), opcode: NvmeOpcode.READ, cid: 1, psdt: NvmePsdt.SGL_MPTR_CONTIG, sglAddr: 0x1234000, sglLen: 48, sglType: NvmeSglType.LAST_SEGMENT, nlb: 7 };
    encodeSqe(view, 0, s);
    decodeSqe(view, 0, out);
    expect([out.psdt, out.sglAddr, out.sglLen, out.sglType]).toEqual([NvmePsdt.SGL_MPTR_CONTIG, 0x1234000, 48, NvmeSglType.LAST_SEGMENT]);
  });

  it("64-bit fields hold any safe integer", () => {
    const v = new DataView(new ArrayBuffer(8));
    setU64(v, 0, Number.MAX_SAFE_INTEGER);
    expect(getU64(v, 0)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe("pattern", () => {
  it("differs between blocks and generations", () => {
    const a = new Uint32Array(8);
    const b = new Uint32Array(8);
    patternInto(a, 1, 0);
    patternInto(b, 1, 1);
    expect(a).not.toEqual(b);
    patternInto(b, 2, 0);
    expect(a).not.toEqual(b);
    expect(patternMatches(a, 1, 0)).toBe(true);
    expect(patternMatches(a, 1, 1)).toBe(false);
    a[7] = (a[7] ?? 0) ^ 1;
    expect(patternMatches(a, 1, 0)).toBe(false);
  });
});

describe("workload options", () => {
  it.each([
    [{ ops: 0 }, /ops/],
    [{ ops: 1, bsMin: 1000 }, /bsMin/],
    [{ ops: 1, bsMin: 8192, bsMax: 4096 }, /bsMax/],
    [{ ops: 1, readPct: 101 }, /readPct/],
    [{ ops: 1, queueDepth: 99 }, /queueDepth/],
    [{ ops: 1, layout: "zigzag" as "contiguous" }, /layout/],
  ])("refuses %o", (job, message) => {
    const sys = createNvmeSystem({ queueDepth: 4, namespaceBytes: 1024 * 1024 });
    expect(() => runWorkload(sys, job)).toThrow(NvmeInputError);
    expect(() => runWorkload(sys, job)).toThrow(message);
  });
});

describe("controller configuration", () => {
  it("refuses a namespace that is not whole blocks", () => {
    expect(() => createNvmeSystem({ namespaceBytes: 1000 })).toThrow(NvmeInputError);
    expect(() => createNvmeSystem({ namespaceBytes: 1000 })).toThrow(/NvmeController: namespaceBytes = 0x3e8 is invalid: expected a positive multiple of 512/);
  });

  it("every error is a DmasimError: bad input is EINVAL naming the argument, a failed workload EIO", () => {
    const e = new NvmeInputError("runWorkload", "ops", 0, "a positive integer");
    expect(e).toBeInstanceOf(DmasimError);
    expect([e.code, e.fn, e.argument, e.value]).toEqual(["EINVAL", "runWorkload", "ops", 0]);
    expect(new WorkloadError("x").code).toBe("EIO");
    expect(new WorkloadError("x")).toBeInstanceOf(DmasimError);
  });
});
