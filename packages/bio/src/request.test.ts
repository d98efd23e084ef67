import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { ReqOp } from "./bio.js";
import { BioError } from "./errors.js";
import { queueLimits } from "./limits.js";
import { Request, reqPhysGapIntersects, rqDmaDir } from "./request.js";
import { allocPages, bioOf, makeFixture } from "./test-fixtures.js";

describe("Request merging", () => {
  it("back-merges a bio that continues the request and tracks segments and the gap bit", () => {
    const f = makeFixture();
    const a = allocPages(f, 2);
    allocPages(f, 1);
    const b = allocPages(f, 1);
    const rq = Request.fromBio(queueLimits(), bioOf(f, ReqOp.READ, 0, [[a, 2 * PAGE_SIZE]]));
    expect(rq.physGapBit).toBe(0);
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 16, [[b + 1024, 1024]]))).toBe(true);
    expect(rq.bios.length).toBe(2);
    expect(rq.dataLen).toBe(2 * PAGE_SIZE + 1024);
    expect(rq.nrPhysSegments).toBe(2);
    expect(rq.physGapBit).toBe(11); // ffs(1024 | 8192)
    expect(reqPhysGapIntersects(rq, PAGE_SIZE - 1)).toBe(true);
    expect(rqDmaDir(rq)).toBe(2);
  });

  it("front-merges a bio that ends where the request starts", () => {
    const f = makeFixture();
    const a = allocPages(f, 2);
    const rq = Request.fromBio(queueLimits(), bioOf(f, ReqOp.WRITE, 8, [[a + PAGE_SIZE, PAGE_SIZE]]));
    expect(rq.attemptFrontMerge(bioOf(f, ReqOp.WRITE, 0, [[a, PAGE_SIZE]]))).toBe(true);
    expect(rq.sector).toBe(0);
    expect(rq.physGapBit).toBe(0); // contiguous: no gap
    expect(rq.attemptFrontMerge(bioOf(f, ReqOp.WRITE, 100, [[a, PAGE_SIZE]]))).toBe(false);
  });

  it("refuses merges that break the limits, the op, the sector order or the P2P kind, leaving the request as it was", () => {
    const f = makeFixture();
    const a = allocPages(f, 4);
    const lim = queueLimits({ maxSegments: 2, maxSectors: 24, virtBoundaryMask: PAGE_SIZE - 1 });
    const rq = Request.fromBio(lim, bioOf(f, ReqOp.READ, 0, [[a, PAGE_SIZE]]));
    const snapshot = () => [rq.bios.length, rq.dataLen, rq.nrPhysSegments, rq.physGapBit, rq.sector];
    const before = snapshot();
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.WRITE, 8, [[a + PAGE_SIZE, PAGE_SIZE]]))).toBe(false); // op
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 9, [[a + PAGE_SIZE, PAGE_SIZE]]))).toBe(false); // not contiguous on disk
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 8, [[a + 2 * PAGE_SIZE + 512, 512]]))).toBe(false); // virt boundary gap
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 8, [[f.viaSwitch.phys, PAGE_SIZE]]))).toBe(false); // P2P kind
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 8, [[a + PAGE_SIZE, 3 * PAGE_SIZE]]))).toBe(false); // max_sectors
    expect(snapshot()).toEqual(before);
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 8, [[a + 2 * PAGE_SIZE, PAGE_SIZE]]))).toBe(true);
    expect(rq.attemptBackMerge(bioOf(f, ReqOp.READ, 16, [[a, PAGE_SIZE]]))).toBe(false); // max_segments
  });

  it("fromBios names the bio that cannot be merged", () => {
    const f = makeFixture();
    const a = allocPages(f, 2);
    expect(() => Request.fromBios(queueLimits(), [bioOf(f, ReqOp.READ, 0, [[a, 512]]), bioOf(f, ReqOp.READ, 1, [[f.viaSwitch.phys, 512]])])).toThrow(
      expect.objectContaining({ reason: "mixed-p2p", message: expect.stringMatching(/bios\[1\]/) as string }) as Error,
    );
    expect(() => Request.fromBios(queueLimits(), [])).toThrow(BioError);
  });

  it("refuses a bio the kernel would have to split", () => {
    const f = makeFixture();
    const a = allocPages(f, 4);
    expect(() => Request.fromBio(queueLimits({ maxSegments: 1 }), bioOf(f, ReqOp.READ, 0, [[a, 512], [a + 2 * PAGE_SIZE, 512]]))).toThrow(/max_segments = 1/);
    expect(() => Request.fromBio(queueLimits({ virtBoundaryMask: 4095 }), bioOf(f, ReqOp.READ, 0, [[a, 512], [a + 2 * PAGE_SIZE, 512]]))).toThrow(/virtual boundary/);
    expect(() => Request.fromBio(queueLimits({ dmaAlignment: 4095 }), bioOf(f, ReqOp.READ, 0, [[a + 512, 512]]))).toThrow(/dma_alignment/);
    expect(() => Request.fromBio(queueLimits({ logicalBlockSize: 4096 }), bioOf(f, ReqOp.READ, 0, [[a, 512]]))).toThrow(/logical blocks/);
  });
});

describe("queueLimits", () => {
  it("fills the kernel's defaults", () => {
    expect(queueLimits()).toEqual({ logicalBlockSize: 512, maxSectors: 2560, maxSegments: 128, maxSegmentSize: 65536, segBoundaryMask: 0xffffffff, virtBoundaryMask: 0, dmaAlignment: 511 });
    expect(queueLimits({ virtBoundaryMask: 4095 }).maxSegmentSize).toBe(0xffffffff);
  });
  it.each([
    [{ maxSegments: 0 }, /maxSegments/],
    [{ segBoundaryMask: 1000 }, /segBoundaryMask/],
    [{ logicalBlockSize: 1000 }, /logicalBlockSize/],
    [{ virtBoundaryMask: 131071 }, /virtBoundaryMask/],
    [{ dmaAlignment: 8191 }, /dmaAlignment/],
    [{ maxSegmentSize: 100 }, /maxSegmentSize/],
  ])("refuses %o", (input, message) => {
    expect(() => queueLimits(input)).toThrow(message);
  });
});
