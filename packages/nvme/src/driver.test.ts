import { Bio, BioError, ReqOp, Request, bvecAt, BLK_STS_OK, BLK_STS_TARGET } from "@dmasim/bio";
import { dmaAllocCoherent } from "@dmasim/dma";
import { MiB, PAGE_SIZE, patternBytes, physAddr } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { NvmeInputError } from "./errors.js";
import type { NvmeCompletion } from "./driver.js";
import { NVME_SQE_BYTES, NvmeOpcode, NvmePsdt, NvmeStatus, emptyCommand, encodeSqe, sqTailDoorbell } from "./nvme-defs.js";
import { createNvmeHost, createNvmeSystem } from "./system.js";
import type { NvmeSystem } from "./system.js";
import { runWorkload } from "./workload.js";

function run(sys: NvmeSystem, rq: Request): NvmeCompletion {
  expect(sys.driver.queueRq(rq)).toBe(BLK_STS_OK);
  sys.controller.service(1);
  let done: NvmeCompletion | undefined;
  sys.driver.poll((c) => (done = c));
  expect(done).toBeDefined();
  return done!;
}

const pattern = patternBytes;

describe("NVMe data pointers", () => {
  it("a 4 MiB transfer at an offset needs PRP1 plus three chained PRP list pages", () => {
    // dma-direct (identity domain): no dma_opt_mapping_size cap, so the MDTS allows 4 MiB.
    // A PRP-only controller: a single segment beyond two pages is not for nvme_pci_setup_data_simple.
    const sys = createNvmeSystem({ iommuMode: "passthrough", queueDepth: 2, maxTransfer: 8 * MiB, namespaceBytes: 16 * MiB, sglSupported: false });
    const mem = sys.platform.memory;
    const len = 4 * MiB;
    const buf = mem.allocator.allocPages(len / PAGE_SIZE + 1);
    const data = pattern(len, 3);
    mem.write(physAddr(buf + 512), data);
    const c = run(sys, Request.fromBio(sys.driver.limits, new Bio(mem, { op: ReqOp.WRITE, sector: 2048, vecs: [bvecAt(physAddr(buf + 512), len)] })));
    expect(c.status).toBe(BLK_STS_OK);
    expect(c.sgl).toBe(false);
    // 1025 pages touched: PRP1 + 1024 list entries = 511 + chain, 511 + chain, 2.
    expect(sys.driver.stats.prpLists).toBe(3);
    expect(sys.controller.stats.prpListReads).toBe(3);
    expect(Buffer.compare(sys.controller.namespace.read(2048 * 512, len), data)).toBe(0);
  });

  it("a request with a gap inside a controller page is forced to SGL: a segment of data descriptors", () => {
    const sys = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB });
    const mem = sys.platform.memory;
    const a = mem.allocator.allocPages(1);
    mem.allocator.allocPages(1);
    const b = mem.allocator.allocPages(1);
    const d1 = pattern(1024, 1);
    const d2 = pattern(1024, 2);
    mem.write(a, d1);
    mem.write(physAddr(b + 512), d2);
    const rq = Request.fromBio(sys.driver.limits, new Bio(mem, { op: ReqOp.WRITE, sector: 8, vecs: [bvecAt(a, 1024), bvecAt(physAddr(b + 512), 1024)] }));
    const c = run(sys, rq);
    expect(c.sgl).toBe(true);
    expect(sys.driver.stats.sglLists).toBe(1);
    expect(sys.controller.stats.sglSegmentReads).toBe(1);
    expect(sys.controller.namespace.read(8 * 512, 2048)).toEqual(new Uint8Array([...d1, ...d2]));
  });

  it("the SGL-vs-PRP choice counts DMA segments: a request coalesced into one IOVA is one inline SGL descriptor", () => {
    // Behind iommu-dma the iterator links 16 scattered pages into one IOVA: one 64 KiB segment >= 32 KiB.
    const sys = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB });
    const r = runWorkload(sys, { ops: 50, bsMin: 65536, layout: "scattered", readPct: 50, seed: 5 });
    expect(r.sglCommands).toBe(50);
    expect(sys.controller.stats.sglSegmentReads).toBe(0);
    // dma-direct maps each page on its own: 16 segments of 4 KiB average below the threshold → PRPs.
    const direct = createNvmeSystem({ iommuMode: "passthrough", queueDepth: 2, namespaceBytes: 1 * MiB });
    expect(runWorkload(direct, { ops: 50, bsMin: 65536, layout: "scattered", readPct: 50, seed: 5 }).sglCommands).toBe(0);
    // The scatterlist-era driver decides on the count dma_map_sg returned: one coalesced entry → SGL.
    const sg = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB, mapping: "sg-classic" });
    expect(runWorkload(sg, { ops: 50, bsMin: 65536, layout: "scattered", readPct: 50, seed: 5 }).sglCommands).toBe(50);
    const r2 = runWorkload(sys, { ops: 50, bsMin: 65536, layout: "contiguous", readPct: 50, seed: 5 });
    expect(r2.sglCommands).toBe(50);
  });

  it("queue limits as nvme_set_ctrl_limits sets them: max_hw_sectors capped at dma_opt_mapping_size, max_segments from it", () => {
    const iommu = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB });
    expect([iommu.driver.limits.maxSectors, iommu.driver.limits.maxSegments]).toEqual([256, 33]); // 128 KiB, 128/4 + 1
    const direct = createNvmeSystem({ iommuMode: "off", queueDepth: 2, namespaceBytes: 1 * MiB });
    expect([direct.driver.limits.maxSectors, direct.driver.limits.maxSegments]).toEqual([2048, 256]); // MDTS 1 MiB; NVME_MAX_SEGS
    const big = createNvmeSystem({ iommuMode: "off", queueDepth: 2, namespaceBytes: 1 * MiB, maxTransfer: 32 * MiB });
    expect(big.driver.limits.maxSectors).toBe(16384); // NVME_MAX_BYTES, 8 MiB
    expect(() => runWorkload(iommu, { ops: 1, bsMin: 256 * 1024 })).toThrow(NvmeInputError);
  });

  it("a single-segment request takes nvme_pci_setup_data_simple: one dma_map_phys, PRP1/PRP2, no iterator, no list", () => {
    const sys = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB });
    const mem = sys.platform.memory;
    const buf = mem.allocator.allocPages(3);
    const data = pattern(8192, 9);
    mem.write(physAddr(buf + 512), data); // two pages' worth starting 512 bytes in: spans three pages → PRP1 + PRP2 is not enough
    const before = sys.platform.trace.counters.snapshot();
    const c1 = run(sys, Request.fromBio(sys.driver.limits, new Bio(mem, { op: ReqOp.WRITE, sector: 0, vecs: [bvecAt(physAddr(buf + 512), 4096)] })));
    expect([c1.status, c1.sgl]).toEqual([BLK_STS_OK, false]);
    const moved = sys.platform.trace.counters.snapshot().diff(before);
    expect([moved.get(Counter.DmaMapCalls), moved.get(Counter.DmaUnmapCalls), moved.get(Counter.DmaIovaTryAllocs)]).toEqual([1, 1, 0]);
    expect(sys.driver.stats.simpleCommands).toBe(1);
    // 8 KiB at offset 512 needs three PRPs: not possible in PRP1/PRP2, so SGLs (the controller supports them).
    const c2 = run(sys, Request.fromBio(sys.driver.limits, new Bio(mem, { op: ReqOp.WRITE, sector: 16, vecs: [bvecAt(physAddr(buf + 512), 8192)] })));
    expect([c2.status, c2.sgl]).toEqual([BLK_STS_OK, true]);
    expect(sys.driver.stats.simpleCommands).toBe(2);
    expect(sys.driver.stats.prpLists + sys.driver.stats.sglLists).toBe(0);
    expect(Buffer.compare(sys.controller.namespace.read(16 * 512, 8192), data)).toBe(0);
    // A PRP-only controller cannot: the iterator and a PRP list take it.
    const prpOnly = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB, sglSupported: false });
    const m2 = prpOnly.platform.memory;
    const b2 = m2.allocator.allocPages(3);
    const c3 = run(prpOnly, Request.fromBio(prpOnly.driver.limits, new Bio(m2, { op: ReqOp.WRITE, sector: 0, vecs: [bvecAt(physAddr(b2 + 512), 8192)] })));
    expect([c3.status, c3.sgl, prpOnly.driver.stats.simpleCommands, prpOnly.driver.stats.prpLists]).toEqual([BLK_STS_OK, false, 0, 1]);
    expect(sys.kernel.debugReports()).toEqual([]);
  });

  it("a PRP-only controller sets the virtual boundary, so a gap inside a page never reaches the driver", () => {
    const sys = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB, sglSupported: false });
    expect(sys.driver.limits.virtBoundaryMask).toBe(4095);
    const mem = sys.platform.memory;
    const a = mem.allocator.allocPages(2);
    expect(() => Request.fromBio(sys.driver.limits, new Bio(mem, { op: ReqOp.READ, sector: 0, vecs: [bvecAt(a, 1024), bvecAt(physAddr(a + PAGE_SIZE + 512), 1024)] }))).toThrow(BioError);
    expect(runWorkload(sys, { ops: 40, bsMin: 4096, bsMax: 65536, layout: "scattered", readPct: 50, seed: 2 }).mismatches).toBe(0);
  });
});

describe("the controller goes through the IOMMU", () => {
  it("a command pointing at an unmapped IOVA completes with a data transfer error and a recorded fault", () => {
    const sys = createNvmeSystem({ queueDepth: 2, namespaceBytes: 1 * MiB });
    const dev = sys.driver.dev;
    const sq = dmaAllocCoherent(dev, 4 * NVME_SQE_BYTES)!;
    const cq = dmaAllocCoherent(dev, 4 * 16)!;
    sys.controller.createIoQueuePair(2, sq.dmaHandle, cq.dmaHandle, 4);
    const cmd = emptyCommand();
    cmd.opcode = NvmeOpcode.READ;
    cmd.psdt = NvmePsdt.PRP;
    cmd.cid = 7;
    cmd.nsid = 1;
    cmd.prp1 = 0x7000_0000; // never mapped
    const sqe = new Uint8Array(NVME_SQE_BYTES);
    encodeSqe(new DataView(sqe.buffer), 0, cmd);
    sys.platform.memory.write(sq.cpuAddr, sqe);
    sys.platform.memory.write(physAddr(sys.controller.bar0.phys + sqTailDoorbell(2)), new Uint8Array([1, 0, 0, 0]));
    const faults = sys.platform.trace.counters.get(Counter.IommuFaults);
    expect(sys.controller.service(2)).toBe(1);
    const cqe = new DataView(sys.platform.memory.read(cq.cpuAddr, 16).buffer);
    const dw3 = cqe.getUint32(12, true);
    expect(dw3 & 0xffff).toBe(7);
    expect((dw3 >>> 17) & 0x7fff).toBe(NvmeStatus.DATA_XFER_ERROR | NvmeStatus.DNR);
    expect(sys.platform.trace.counters.get(Counter.IommuFaults)).toBe(faults + 1);
    expect(sys.controller.stats.faults).toBe(1);
  });
});

describe("workloads in other configurations verify every byte", () => {
  it.each([
    ["lazy", { iommuMode: "lazy" as const }],
    ["no IOMMU", { iommuMode: "off" as const }],
    ["passthrough", { iommuMode: "passthrough" as const }],
    ["untrusted (bouncing)", { untrusted: true }],
  ])("%s", (_name, sysOptions: { iommuMode?: "lazy" | "off" | "passthrough"; untrusted?: boolean }) => {
    const sys = createNvmeSystem({ queueDepth: 8, namespaceBytes: 4 * MiB, ...sysOptions });
    for (const layout of ["contiguous", "scattered", "offset"] as const) {
      const r = runWorkload(sys, { ops: 60, bsMin: 4096, bsMax: 32768, readPct: 60, layout, seed: 11 });
      expect(r.mismatches).toBe(0);
      expect(r.verifiedBytes).toBeGreaterThan(0);
    }
    if (sysOptions.iommuMode !== "off") expect(sys.platform.trace.counters.get(Counter.IommuFaults)).toBe(0);
    // The untrusted drive bounces the partial granules of the offset layout through swiotlb.
    expect(sys.platform.trace.counters.get(Counter.SwiotlbBounceBytes) > 0).toBe(sysOptions.untrusted === true);
    expect(sys.kernel.debugReports()).toEqual([]);
  });
});

describe("driver options", () => {
  it("refuses a bad queue depth or threshold", () => {
    expect(() => createNvmeSystem({ queueDepth: 0 })).toThrow(NvmeInputError);
    expect(() => createNvmeSystem({ queueDepth: 0 })).toThrow(/queueDepth/);
    expect(() => createNvmeSystem({ sglThreshold: -1 })).toThrow(/sglThreshold/);
  });
});

describe("P2P memory the drive cannot reach", () => {
  it("-EREMOTEIO from dma_map_sgtable completes the request with BLK_STS_TARGET (scatterlist-era driver)", () => {
    const spec = {
      memory: { ramBytes: 1024 * MiB },
      iommu: {},
      rootPorts: [{ id: "rp0" }, { id: "rp1" }],
      endpoints: [
        { bdf: "0000:02:00.0", parent: "rp0", bars: [{ size: 16 * 1024 }] },
        { bdf: "0000:05:00.0", parent: "rp1", bars: [{ size: 4 * MiB }] },
      ],
    };
    const host = createNvmeHost(spec, "0000:02:00.0", { queueDepth: 2, namespaceBytes: MiB, mapping: "sg-classic" });
    const provider = host.platform.addP2pdmaProvider("0000:05:00.0", 0);
    const rq = Request.fromBio(host.driver.limits, new Bio(host.platform.memory, { op: ReqOp.WRITE, sector: 0, vecs: [bvecAt(provider.phys, 8192)] }));
    expect(host.driver.queueRq(rq)).toBe(BLK_STS_TARGET);
    expect(host.driver.inFlight).toBe(0);
  });
});

