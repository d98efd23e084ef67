import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { Bio, BvecIter, ReqOp, bvecAt } from "./bio.js";
import { BioError } from "./errors.js";
import { allocPages, bioOf, makeFixture, NVME } from "./test-fixtures.js";

describe("Bio", () => {
  it("sums its bvecs and walks them as single-page segments", () => {
    const f = makeFixture();
    const a = allocPages(f, 3);
    const bio = bioOf(f, ReqOp.READ, 16, [[a + 512, 2 * PAGE_SIZE], [a + 3 * PAGE_SIZE - 1024, 1024]]);
    expect(bio.size).toBe(2 * PAGE_SIZE + 1024);
    expect(bio.sectors).toBe(18);
    expect(bio.p2pOwner).toBe(0);
    expect([...bio.segments()].map((s) => s.len)).toEqual([PAGE_SIZE - 512, PAGE_SIZE, 512, 1024]);
    expect([...bio.bvecs()].length).toBe(2);
  });

  it("records the P2P provider of its pages", () => {
    const f = makeFixture();
    const bio = bioOf(f, ReqOp.WRITE, 0, [[f.viaSwitch.phys, PAGE_SIZE]]);
    expect(bio.p2pOwner).toBe(f.viaSwitch.id);
  });

  it("BvecIter advances across bvecs", () => {
    const f = makeFixture();
    const a = allocPages(f, 2);
    const bio = bioOf(f, ReqOp.READ, 0, [[a, 1024], [a + PAGE_SIZE, 2048]]);
    const it = new BvecIter(bio);
    it.advance(bio.vecs, 1536);
    expect(it.idx).toBe(1);
    expect(it.bvecDone).toBe(512);
    expect(it.phys(bio.vecs)).toBe(a + PAGE_SIZE + 512);
    expect(it.mpLen(bio.vecs)).toBe(1536);
  });

  const bad: [string, (f: ReturnType<typeof makeFixture>) => unknown, string, RegExp][] = [
    ["no bvecs", (f) => new Bio(f.platform.memory, { op: ReqOp.READ, sector: 0, vecs: [] }), "empty", /at least one bvec/],
    ["a zero-length bvec", (f) => bioOf(f, ReqOp.READ, 0, [[0, 0]]), "bad-argument", /len = 0x0 is invalid/],
    ["an unknown op", (f) => new Bio(f.platform.memory, { op: 7 as ReqOp, sector: 0, vecs: [bvecAt(unsafePhysAddr(0), 512)] }), "bad-argument", /bio.op/],
    ["a negative sector", (f) => bioOf(f, ReqOp.READ, -1, [[0, 512]]), "bad-argument", /bio.sector/],
    ["a size that is not whole sectors", (f) => bioOf(f, ReqOp.READ, 0, [[0, 100]]), "bad-argument", /multiple of 512/],
    ["a bvec past the end of RAM", (f) => bioOf(f, ReqOp.READ, 0, [[f.platform.memory.regions()[0]!.size - 512, 1024]]), "no-page", /has no struct page/],
    ["a bvec on MMIO without pages", (f) => bioOf(f, ReqOp.READ, 0, [[f.platform.endpoint(NVME).bars[0]!.phys, 512]]), "no-page", /no struct page/],
    ["a bvec running from one provider into another", (f) => bioOf(f, ReqOp.READ, 0, [[f.viaSwitch.phys + f.viaSwitch.size - 512, 1024]]), "crosses-owner", /crosses into/],
    ["P2P and RAM in one bio", (f) => bioOf(f, ReqOp.READ, 0, [[allocPages(f, 1), 512], [f.viaSwitch.phys, 512]]), "mixed-p2p", /never mixes/],
    ["two providers in one bio", (f) => bioOf(f, ReqOp.READ, 0, [[f.viaSwitch.phys, 512], [f.viaHostBridge.phys, 512]]), "mixed-p2p", /never mixes/],
  ];
  for (const [what, build, reason, message] of bad) {
    it(`refuses ${what} with a typed error`, () => {
      const f = makeFixture();
      let err: unknown;
      try {
        build(f);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BioError);
      expect((err as BioError).reason).toBe(reason);
      expect((err as BioError).message).toMatch(message);
      expect(["EINVAL", "EFAULT"]).toContain((err as BioError).code);
    });
  }

  it("refuses a bvec that starts in RAM and crosses into P2P pages", () => {
    const f = makeFixture({ noIommu: true });
    // Put P2P pages right after a RAM page by making a ZONE_DEVICE range adjacent to RAM's end.
    const mem = f.platform.memory;
    const ramEnd = mem.regions()[0]!.size;
    mem.addMmio(unsafePhysAddr(ramEnd), 1024 * 1024, { name: "adjacent BAR" });
    mem.pages.addZoneDevice(unsafePhysAddr(ramEnd), 1024 * 1024, { owner: f.viaSwitch.id, kind: "p2pdma" });
    expect(() => bioOf(f, ReqOp.READ, 0, [[ramEnd - 512, 1024]])).toThrow(expect.objectContaining({ reason: "crosses-owner", code: "EFAULT" }) as Error);
  });
});
