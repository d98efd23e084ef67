import { createDmaKernel } from "@dmasim/dma";
import { DmaBufCounter, DmaBufErrno, DmaBufSystem, SystemHeap, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { switchTopology } from "@dmasim/pcie-p2p/testing";
import { describe, expect, it } from "vitest";
import {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_MW_BIND,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IB_ACCESS_ZERO_BASED,
  RdmaErrno,
} from "./constants.js";
import { RdmaInputError } from "./errors.js";
import { ACCESS_ALL, dmabufRig, leftovers, mustMr, vfioBuf } from "./test-dmabuf.js";
import type { DmabufRig } from "./test-dmabuf.js";
import { ibUmemDmabufGet, ibUmemDmabufMapPages } from "./umem-dmabuf.js";

const SIZE = 128 * 1024;

/** What a refusal must leave as it was. */
function state(rig: DmabufRig, buf: DmaBuf): unknown {
  const c = rig.kernel.trace.counters;
  return {
    refs: buf.refs,
    attachments: buf.attachments.length,
    attaches: c.get(DmaBufCounter.DmaBufAttaches),
    maps: c.get(DmaBufCounter.DmaBufMaps),
    mrsA: rig.nicA.mrs.length,
    mrsB: rig.nicB.mrs.length,
    mappedB: rig.nicB.dev.domain?.mappedBytes ?? 0,
    placement: buf.expName.startsWith("gpu") ? rig.gpu.placement(buf) : [],
    leaks: rig.sys.leaks(),
  };
}

describe("ibv_reg_dmabuf_mr: bad input is a typed error, thrown before anything changes", () => {
  const rig = dmabufRig();
  const buf = rig.gpu.allocate(SIZE, "vram");
  const before = state(rig, buf);
  const reg = (over: { pd?: unknown; buf?: unknown; offset?: unknown; length?: unknown; iova?: unknown; access?: unknown; options?: unknown }): unknown =>
    rig.nicB.regDmabufMr((over.pd ?? rig.pdB) as never, (over.buf ?? buf) as never, (over.offset ?? 0) as never, (over.length ?? SIZE) as never, (over.iova ?? 0) as never, (over.access ?? ACCESS_ALL) as never, over.options ?? {});
  const cases: [string, Parameters<typeof reg>[0]][] = [
    ["a PD of another NIC", { pd: rig.pdA }],
    ["no PD", { pd: {} }],
    ["not a dma-buf", { buf: { size: SIZE } }],
    ["a negative offset", { offset: -4096 }],
    ["a fractional offset", { offset: 0.5 }],
    ["a zero length", { length: 0 }],
    ["a negative length", { length: -1 }],
    ["a negative iova", { iova: -4096 }],
    ["an iova past 2^53", { iova: 2 ** 53 }],
    ["IB_ACCESS_MW_BIND", { access: IB_ACCESS_LOCAL_WRITE | IB_ACCESS_MW_BIND }],
    ["IB_ACCESS_ZERO_BASED", { access: IB_ACCESS_ZERO_BASED }],
    ["an unknown access bit", { access: 1 << 29 }],
    ["a kind that does not exist", { options: { kind: "static" } }],
    ["a mapping type that does not exist", { options: { mapping: "pages" } }],
    ["options that are not an object", { options: "pinned" }],
  ];
  for (const [what, over] of cases) {
    it(`${what}: RdmaInputError, nothing changed`, () => {
      expect(() => reg(over)).toThrow(RdmaInputError);
      expect(state(rig, buf)).toEqual(before);
    });
  }

  it("a released dma-buf (a closed fd): RdmaInputError", () => {
    const gone = rig.heap.allocate(SIZE);
    dmaBufPut(gone);
    expect(() => rig.nicB.regDmabufMr(rig.pdB, gone, 0, SIZE, 0, ACCESS_ALL)).toThrow(RdmaInputError);
  });

  it("a dma-buf of another host: RdmaInputError", () => {
    const other = createDmaKernel(createPlatform(switchTopology({ ramBytes: 1 * GiB })), {});
    const foreign = new SystemHeap(new DmaBufSystem(other)).allocate(SIZE);
    expect(() => rig.nicB.regDmabufMr(rig.pdB, foreign, 0, SIZE, 0, ACCESS_ALL)).toThrow(RdmaInputError);
  });
});

describe("ibv_reg_dmabuf_mr: what the kernel refuses, with its errno, changing nothing", () => {
  const cases: [string, number, (rig: DmabufRig, buf: DmaBuf) => unknown][] = [
    // ib_check_mr_access (rdma-core test_dmabuf_reg_mr_bad_access).
    ["REMOTE_WRITE without LOCAL_WRITE", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, 0, SIZE, 0, IB_ACCESS_REMOTE_WRITE)],
    ["REMOTE_ATOMIC without LOCAL_WRITE", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, 0, SIZE, 0, IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC)],
    ["IB_ACCESS_HUGETLB (no user pages behind a dma-buf)", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, 0, SIZE, 0, ACCESS_ALL | IB_ACCESS_HUGETLB)],
    // The uverbs handler: offset and iova at different places in their page.
    ["offset and iova at different page offsets", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, 100, 4096, 0x10_0200, ACCESS_ALL)],
    // ib_umem_dmabuf_get: the window runs past the buffer.
    ["a window past the buffer", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, PAGE_SIZE, SIZE, PAGE_SIZE, ACCESS_ALL)],
    ["a window starting past the buffer", -RdmaErrno.EINVAL, (r, b) => r.nicB.regDmabufMr(r.pdB, b, 2 * SIZE, PAGE_SIZE, 0, ACCESS_ALL)],
  ];
  for (const [what, errno, call] of cases) {
    it(`${what}: ${errno}`, () => {
      const rig = dmabufRig();
      const buf = rig.gpu.allocate(SIZE, "vram");
      const before = state(rig, buf);
      expect(call(rig, buf)).toBe(errno);
      expect(state(rig, buf)).toEqual(before);
    });
  }

  it("a NIC without ODP: a dynamic MR and IB_ACCESS_ON_DEMAND are -EOPNOTSUPP; a pinned MR works", () => {
    const rig = dmabufRig({ odpB: false });
    const buf = rig.gpu.allocate(SIZE, "vram");
    const before = state(rig, buf);
    expect(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0, ACCESS_ALL)).toBe(-RdmaErrno.EOPNOTSUPP);
    expect(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0, ACCESS_ALL | IB_ACCESS_ON_DEMAND, { kind: "pinned" })).toBe(-RdmaErrno.EOPNOTSUPP);
    expect(state(rig, buf)).toEqual(before);
    const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0, ACCESS_ALL, { kind: "pinned" }));
    expect(rig.nicB.deregMr(mr)).toBe(0);
    expect({ refs: buf.refs, attachments: buf.attachments.length, mappedB: rig.nicB.dev.domain?.mappedBytes }).toEqual({ refs: 1, attachments: 0, mappedB: 0 });
  });

  it("VFIO refuses a pinned MR (-EOPNOTSUPP) and any MR of a revoked buffer (-ENODEV); the refusals leave no reference", () => {
    const rig = dmabufRig();
    const v = vfioBuf(rig, 0, SIZE);
    const before = state(rig, v);
    expect(rig.nicB.regDmabufMr(rig.pdB, v, 0, SIZE, 0, ACCESS_ALL, { kind: "pinned" })).toBe(-RdmaErrno.EOPNOTSUPP);
    rig.vfio.setMemoryEnable(false);
    const off = state(rig, v);
    expect(rig.nicB.regDmabufMr(rig.pdB, v, 0, SIZE, 0, ACCESS_ALL)).toBe(-DmaBufErrno.ENODEV);
    expect(rig.nicB.regDmabufMr(rig.pdB, v, 0, SIZE, 0, ACCESS_ALL, { kind: "revocable" })).toBe(-DmaBufErrno.ENODEV);
    expect(state(rig, v)).toEqual(off);
    rig.vfio.setMemoryEnable(true);
    expect(state(rig, v)).toEqual(before);
  });

  it("test_dmabuf_dereg_mr_twice: the second dereg is -EINVAL; ibUmemDmabufGet without a callback is -EINVAL", () => {
    const rig = dmabufRig();
    const buf = rig.heap.allocate(SIZE);
    const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0, ACCESS_ALL));
    expect(rig.nicB.deregMr(mr)).toBe(0);
    expect(rig.nicB.deregMr(mr)).toBe(-RdmaErrno.EINVAL);
    expect(ibUmemDmabufGet(rig.nicB.dev, buf, 0, SIZE, ACCESS_ALL, undefined as never)).toBe(-RdmaErrno.EINVAL);
    dmaBufPut(buf);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });

  it("a revoked umem's map_pages is -EINVAL; a dereg inside the buffer's lock is -EDEADLK and changes nothing", () => {
    const rig = dmabufRig();
    const v = vfioBuf(rig, 0, SIZE);
    const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, v, 0, SIZE, 0, ACCESS_ALL, { kind: "revocable" }));
    rig.vfio.setMemoryEnable(false);
    const umem = mr.dmabuf;
    if (umem === undefined) throw new Error("no umem");
    expect(v.resv.lock()).toBe(0);
    expect(ibUmemDmabufMapPages(umem)).toBe(-RdmaErrno.EINVAL);
    expect(rig.nicB.deregMr(mr)).toBe(-DmaBufErrno.EDEADLK);
    expect(mr.deregistered).toBe(false);
    v.resv.unlock();
    expect(rig.nicB.deregMr(mr)).toBe(0);
    rig.vfio.setMemoryEnable(true);
    dmaBufPut(v);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });
});
