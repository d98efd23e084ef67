import { unsafeIova } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import { HMM_PFN_WRITE, MADV_DONTNEED, PROT_READ, PteKind, hmmDmaUnmapPfn } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IB_IMPLICIT_ODP_LENGTH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE,
  IB_UVERBS_ADVISE_MR_FLAG_FLUSH,
  IbWcStatus,
  MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE,
  MLX5_IMR_MTT_SIZE,
  RdmaErrno,
} from "./constants.js";
import { RdmaCounter } from "./counters.js";
import type { IbMr } from "./mr.js";
import { ibUmemOdpMapDmaAndLock, ibUmemOdpUnmapDmaPages } from "./umem-odp.js";
import { IbQpState } from "./verbs.js";
import { OK, pattern, rdmaRead, rdmaRig, rdmaWrite } from "./test-fixtures.js";
import { kOdpRange } from "./internal.js";

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;
const ODP = RW | IB_ACCESS_ON_DEMAND;

function mr(x: IbMr | number): IbMr {
  if (typeof x === "number") throw new Error(`registration failed: ${x}`);
  return x;
}

function perm(e: number): number {
  return e % 4;
}

/** An ODP MR on NIC B over `pages` fresh pages, a pinned source MR on NIC A with `pattern(tag)` per page. */
function setup(pages: number) {
  const rig = rdmaRig();
  const { mm, nicA, nicB, pdA, pdB } = rig;
  const src = mm.mmap(pages * PAGE_SIZE);
  for (let p = 0; p < pages; p++) mm.write(src + p * PAGE_SIZE, pattern(p));
  const local = mr(nicA.regMr(pdA, mm, src, pages * PAGE_SIZE, RW));
  const dst = mm.mmap(pages * PAGE_SIZE);
  const odp = mr(nicB.regMr(pdB, mm, dst, pages * PAGE_SIZE, ODP));
  return { ...rig, src, dst, local, odp };
}

describe("ODP MR: registration, device page faults, replay", () => {
  it("registration snapshots present pages without faulting; absent pages keep zero MTT entries", () => {
    const { mm, sys, nicB, pdB } = rdmaRig();
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a + PAGE_SIZE, pattern(1));
    const faults = sys.stats.minorFaults;
    const m = mr(nicB.regMr(pdB, mm, a, 4 * PAGE_SIZE, ODP));
    expect(sys.stats.minorFaults).toBe(faults);
    expect(Array.from(m.mtt, perm)).toEqual([0, MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE, 0, 0]);
    expect(m.odp?.npages).toBe(1);
    // The present page's entry is its slot of the umem's one IOVA, translated to the CPU's page.
    const e = m.mtt[1] ?? 0;
    expect(e - perm(e)).toBe((m.odp?.map.state.addr ?? 0) + PAGE_SIZE);
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(e - perm(e)))).toBe((mm.pteAt(a + PAGE_SIZE)?.pfn ?? 0) * PAGE_SIZE);
  });

  it("an RDMA WRITE to absent pages raises one page-fault event over the access, then replays and lands", () => {
    const { mm, qpA, local, odp, src, dst, kernel, nicB } = setup(4);
    const c = kernel.trace.counters;
    const t0 = kernel.trace.clock.now;
    expect(rdmaWrite(qpA, local, src, odp, dst + 100, 3 * PAGE_SIZE).status).toBe(OK);
    expect(nicB.stats.pageFaultEvents).toBe(1);
    expect(nicB.stats.replays).toBe(1);
    expect(c.get(RdmaCounter.OdpPagesFaulted)).toBe(4);
    expect(c.get(RdmaCounter.UmrPosts)).toBeGreaterThanOrEqual(2);
    const want = new Uint8Array(3 * PAGE_SIZE);
    for (let p = 0; p < 3; p++) want.set(pattern(p), p * PAGE_SIZE);
    expect(mm.read(dst + 100, 3 * PAGE_SIZE)).toEqual(want);
    // The fault path's modelled time: event + dispatch + UMR + resume, at least the default 50 µs.
    expect(kernel.trace.clock.now - t0).toBeGreaterThanOrEqual(50_000);
    // A second access to the same pages faults no more.
    expect(rdmaWrite(qpA, local, src, odp, dst, PAGE_SIZE).status).toBe(OK);
    expect(nicB.stats.pageFaultEvents).toBe(1);
  });

  it("a writable MR asks for WRITE on every fault: a device read maps the page writable (Part H)", () => {
    const { mm, qpA, local, odp, src, dst } = setup(2);
    expect(rdmaRead(qpA, local, src, odp, dst, 64).status).toBe(OK);
    expect(perm(odp.mtt[0] ?? 0)).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    expect(mm.pteAt(dst)?.kind).toBe(PteKind.PRESENT); // not the zero page: a write fault
    expect(mm.read(src, 64)).toEqual(new Uint8Array(64));
  });

  it("a writable MR over a read-only VMA: a device read fails (hmm_range_fault -EPERM) with REM_ACCESS_ERR", () => {
    const { mm, nicB, pdB, qpA, local, src } = setup(1);
    const ro = mm.mmap(PAGE_SIZE, { prot: PROT_READ });
    const m = mr(nicB.regMr(pdB, mm, ro, PAGE_SIZE, ODP));
    expect(rdmaRead(qpA, local, src, m, ro, 8).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(nicB.stats.faultErrors).toBe(1);
    expect(m.mtt[0]).toBe(0);
  });

  it("madvise(DONTNEED) zaps the MTT and unlinks the IOVA inside the callback; the next access refaults a fresh page", () => {
    const { mm, qpA, local, odp, src, dst, nicB, kernel } = setup(2);
    expect(rdmaWrite(qpA, local, src, odp, dst, 2 * PAGE_SIZE).status).toBe(OK);
    const iova = (odp.mtt[0] ?? 0) - perm(odp.mtt[0] ?? 0);
    const dirtied = kernel.trace.counters.get(RdmaCounter.OdpPagesDirtied);
    expect(mm.madvise(dst, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
    expect(odp.mtt[0]).toBe(0);
    expect(odp.mtt[1]).not.toBe(0);
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(iova))).toBeUndefined();
    expect(kernel.trace.counters.get(RdmaCounter.OdpPagesDirtied) - dirtied).toBe(1);
    expect(odp.odp?.npages).toBe(1);
    expect(mm.read(dst, 64)).toEqual(new Uint8Array(64));
    expect(rdmaRead(qpA, local, src, odp, dst, 64).status).toBe(OK);
    expect(nicB.stats.pageFaultEvents).toBe(2);
    expect(mm.read(src, 64)).toEqual(new Uint8Array(64));
  });

  it("the MTT is walked through the IOMMU: an entry whose IOVA a buggy driver unmapped faults in the IOMMU, and the WR completes with an error", () => {
    const { mm, qpA, local, odp, src, dst, nicB } = setup(1);
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    const umem = odp.odp;
    if (umem === undefined) throw new Error("no umem");
    // The bug: the DMA mapping is undone without zapping the MTT entry (what the invalidate callback must not do).
    umem.umemMutex.lock();
    expect(hmmDmaUnmapPfn(nicB.dev, umem.map, 0)).toBe(true);
    umem.umemMutex.unlock();
    expect(odp.mtt[0]).not.toBe(0);
    const iommu = nicB.endpoint.iommu;
    const faults = iommu?.faults().length ?? 0;
    mm.write(src, pattern(77));
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(iommu?.faults().length).toBe(faults + 1);
    expect(iommu?.faults().at(-1)).toMatchObject({ device: nicB.bdf, access: "write" });
    expect(mm.read(dst, 64)).toEqual(pattern(0));
  });

  it("munmap: the next access cannot fault the page back and completes with REM_ACCESS_ERR", () => {
    const { mm, qpA, local, odp, src, dst } = setup(2);
    expect(rdmaWrite(qpA, local, src, odp, dst, 2 * PAGE_SIZE).status).toBe(OK);
    mm.munmap(dst + PAGE_SIZE, PAGE_SIZE);
    expect(odp.mtt[1]).toBe(0);
    expect(rdmaWrite(qpA, local, src, odp, dst + PAGE_SIZE, 8).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(qpA.state).toBe(IbQpState.ERR);
  });

  it("mprotect(PROT_READ) zaps; a later RDMA WRITE fails, the bytes stay as they were", () => {
    const { mm, qpA, local, odp, src, dst } = setup(1);
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    expect(mm.mprotect(dst, PAGE_SIZE, PROT_READ)).toBe(0);
    expect(odp.mtt[0]).toBe(0);
    mm.write(src, pattern(99));
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(mm.read(dst, 64)).toEqual(pattern(0));
  });

  it("fork: the parent's MR is zapped; its next device write breaks COW in the parent, the child keeps the old bytes", () => {
    const { mm, qpA, local, odp, src, dst } = setup(1);
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    const child = mm.fork();
    expect(odp.mtt[0]).toBe(0);
    // The pinned source page stays the parent's (fork copied it for the child): the new bytes go out.
    mm.write(src, pattern(1));
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    expect(mm.read(dst, 64)).toEqual(pattern(1));
    expect(child.read(dst, 64)).toEqual(pattern(0));
    expect(mm.pteAt(dst)?.pfn).not.toBe(child.pteAt(dst)?.pfn);
    child.exit();
  });

  it("process exit: RELEASE zaps every entry; the MR's accesses fail from then on; dereg leaves nothing", () => {
    const { mm, sys, qpA, local, odp, src, dst, nicA, nicB } = setup(2);
    expect(rdmaWrite(qpA, local, src, odp, dst, 2 * PAGE_SIZE).status).toBe(OK);
    mm.exit();
    expect(Array.from(odp.mtt)).toEqual([0, 0]);
    expect(odp.odp?.npages).toBe(0);
    expect(rdmaWrite(qpA, local, src, odp, dst, 8).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(nicB.deregMr(odp)).toBe(0);
    expect(nicA.deregMr(local)).toBe(0);
    expect(sys.pagesInUse).toBe(0);
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(odp.odp?.map.state.addr ?? 0))).toBeUndefined();
  });
});

describe("hugetlb ODP (IB_ACCESS_HUGETLB, page_shift 21)", () => {
  it("over MAP_HUGETLB memory: one fault maps the whole 2 MiB page; over 4 KiB pages the fault is -EINVAL", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA } = rdmaRig();
    const MB2 = 2 * 1024 * 1024;
    const src = mm.mmap(PAGE_SIZE);
    mm.write(src, pattern(8));
    const local = mr(nicA.regMr(pdA, mm, src, PAGE_SIZE, RW));
    const huge = mm.mmap(MB2, { hugetlb: true });
    const m = mr(nicB.regMr(pdB, mm, huge, MB2, ODP | IB_ACCESS_HUGETLB));
    expect(m.odp?.pageShift).toBe(21);
    expect(rdmaWrite(qpA, local, src, m, huge + 5 * PAGE_SIZE, 64).status).toBe(OK);
    expect(mm.read(huge + 5 * PAGE_SIZE, 64)).toEqual(pattern(8));
    expect(mm.pteAt(huge)?.pmd).toBe(true);
    expect(Array.from(m.mtt).every((e) => perm(e) === (MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE))).toBe(true);
    expect(m.odp?.npages).toBe(512);
    const small = mm.mmap(2 * MB2);
    const aligned = Math.ceil(small / MB2) * MB2;
    const m2 = mr(nicB.regMr(pdB, mm, aligned, MB2, ODP | IB_ACCESS_HUGETLB));
    qpA.state = IbQpState.RTS;
    expect(rdmaWrite(qpA, local, src, m2, aligned, 64).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(m2.odp?.npages).toBe(0);
  });
});

describe("non-blockable invalidation", () => {
  it("the OOM reaper's CLEAR while the umem mutex is held: the callback returns false, -EAGAIN, nothing changed", () => {
    const { mm, qpA, local, odp, src, dst } = setup(2);
    expect(rdmaWrite(qpA, local, src, odp, dst, 2 * PAGE_SIZE).status).toBe(OK);
    const before = Array.from(odp.mtt);
    const umem = odp.odp;
    if (umem === undefined) throw new Error("no umem");
    umem.umemMutex.lock();
    expect(mm.oomReap(dst, 2 * PAGE_SIZE)).toBe(-RdmaErrno.EAGAIN);
    umem.umemMutex.unlock();
    expect(Array.from(odp.mtt)).toEqual(before);
    expect(mm.read(dst, 64)).toEqual(pattern(0));
    // Unlocked, the reaper's invalidation zaps like any other.
    expect(mm.oomReap(dst, 2 * PAGE_SIZE)).toBe(0);
    expect(Array.from(odp.mtt)).toEqual([0, 0]);
  });
});

describe("ib_umem_odp", () => {
  it("map_dma_and_lock returns the page count with the umem mutex held, maps no DMA, refuses ranges outside the umem", () => {
    const { odp, dst, nicB } = setup(4);
    const umem = odp.odp;
    if (umem === undefined) throw new Error("no umem");
    expect(ibUmemOdpMapDmaAndLock(umem, dst - 1, 8, 0, true, nicB.costs)).toBe(-RdmaErrno.EFAULT);
    expect(umem.umemMutex.held).toBe(false);
    const np = ibUmemOdpMapDmaAndLock(umem, dst + 10, 2 * PAGE_SIZE, HMM_PFN_WRITE, true, nicB.costs);
    expect(np).toBe(3);
    expect(umem.umemMutex.held).toBe(true);
    expect(umem.npages).toBe(0);
    expect((umem.map.flags[2] ?? 0) & HMM_PFN_WRITE).toBe(HMM_PFN_WRITE);
    ibUmemOdpUnmapDmaPages(umem, dst, dst + 4 * PAGE_SIZE);
    umem.umemMutex.unlock();
    expect(umem.map.flags[2]).toBe(0);
  });

  it("an invalidation racing the fault (inside hmm_range_fault): read_retry fails, the loop retries, the MTT gets the new page", () => {
    const { mm, qpA, local, odp, src, dst, nicB } = setup(2);
    mm.write(dst, pattern(50));
    const umem = odp.odp;
    if (umem?.[kOdpRange] === undefined) throw new Error("no umem range");
    let fired = 0;
    umem[kOdpRange].onWalk = () => {
      if (fired++ === 0) mm.madvise(dst, 2 * PAGE_SIZE, MADV_DONTNEED);
    };
    const t0 = nicB.kernel.trace.clock.now;
    expect(rdmaRead(qpA, local, src, odp, dst, 64).status).toBe(OK);
    umem[kOdpRange].onWalk = undefined;
    // The first walk's output was overtaken: a second attempt faulted the page in again.
    expect(fired).toBeGreaterThanOrEqual(2);
    expect(nicB.kernel.trace.clock.now - t0).toBeGreaterThanOrEqual(2 * nicB.costs.faultAttemptNs);
    expect(mm.read(src, 64)).toEqual(new Uint8Array(64));
    const e = odp.mtt[0] ?? 0;
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(e - perm(e)))).toBe((mm.pteAt(dst)?.pfn ?? 0) * PAGE_SIZE);
  });

  it("-EBUSY after HMM_RANGE_DEFAULT_TIMEOUT: a fault that keeps meeting a migration entry gives up after 1 s", () => {
    const { mm, qpA, local, odp, src, dst, kernel, nicB } = setup(1);
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    let wc: { status: number } | undefined;
    const t0 = kernel.trace.clock.now;
    expect(mm.migratePage(dst, () => {
      wc = rdmaWrite(qpA, local, src, odp, dst, 64);
    })).toBe(0);
    expect(wc?.status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(kernel.trace.clock.now - t0).toBeGreaterThanOrEqual(1e9);
    expect(nicB.stats.faultErrors).toBe(1);
  });
});

describe("advise_mr prefetch", () => {
  it("PREFETCH maps read-only (DOWNGRADE), PREFETCH_WRITE writable, NO_FAULT only what is present", () => {
    const { mm, nicB, pdB, sys } = rdmaRig();
    const a = mm.mmap(8 * PAGE_SIZE);
    const m = mr(nicB.regMr(pdB, mm, a, 8 * PAGE_SIZE, ODP));
    const flush = IB_UVERBS_ADVISE_MR_FLAG_FLUSH;
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, flush, [{ addr: a, length: 2 * PAGE_SIZE, lkey: m.lkey }])).toBe(0);
    expect(Array.from(m.mtt.subarray(0, 2), perm)).toEqual([MLX5_IB_MTT_READ, MLX5_IB_MTT_READ]);
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, flush, [{ addr: a + 2 * PAGE_SIZE, length: PAGE_SIZE, lkey: m.lkey }])).toBe(0);
    expect(perm(m.mtt[2] ?? 0)).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    mm.write(a + 5 * PAGE_SIZE, pattern(5));
    const faults = sys.stats.minorFaults;
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT, flush, [{ addr: a + 3 * PAGE_SIZE, length: 5 * PAGE_SIZE, lkey: m.lkey }])).toBe(0);
    expect(sys.stats.minorFaults).toBe(faults);
    expect(Array.from(m.mtt.subarray(3), perm)).toEqual([0, 0, MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE, 0, 0]);
  });

  it("an entry too weak for the access (read-only after PREFETCH) raises a fault that upgrades it in place", () => {
    const { mm, nicB, pdB, qpA, local, src, odp, dst } = setup(1);
    mm.write(src, pattern(6));
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, IB_UVERBS_ADVISE_MR_FLAG_FLUSH, [{ addr: dst, length: PAGE_SIZE, lkey: odp.lkey }])).toBe(0);
    const ro = odp.mtt[0] ?? 0;
    expect(perm(ro)).toBe(MLX5_IB_MTT_READ);
    const faults = nicB.stats.pageFaultEvents;
    expect(rdmaRead(qpA, local, src + 64, odp, dst, 64).status).toBe(OK);
    expect(nicB.stats.pageFaultEvents).toBe(faults);
    expect(rdmaWrite(qpA, local, src, odp, dst, 64).status).toBe(OK);
    expect(nicB.stats.pageFaultEvents).toBe(faults + 1);
    const rw = odp.mtt[0] ?? 0;
    expect(perm(rw)).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    // The read-only prefetch mapped the zero page; the write fault gave the process a page of its own.
    expect(mm.read(dst, 64)).toEqual(pattern(6));
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(rw - perm(rw)))).toBe((mm.pteAt(dst)?.pfn ?? 0) * PAGE_SIZE);
  });

  it("without FLUSH the prefetch waits on the workqueue; bad keys, advice and flags are refused first", () => {
    const { mm, nicA, nicB, pdA, pdB } = rdmaRig();
    const a = mm.mmap(4 * PAGE_SIZE);
    const m = mr(nicB.regMr(pdB, mm, a, 4 * PAGE_SIZE, ODP));
    const pinned = mr(nicB.regMr(pdB, mm, mm.mmap(PAGE_SIZE), PAGE_SIZE, RW));
    const sg = [{ addr: a, length: 4 * PAGE_SIZE, lkey: m.lkey }];
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, 0, sg)).toBe(0);
    expect(nicB.pendingWork).toBe(1);
    expect(Array.from(m.mtt)).toEqual([0, 0, 0, 0]);
    nicB.flushWork();
    expect(Array.from(m.mtt, perm)).toEqual([3, 3, 3, 3]);
    expect(nicB.adviseMr(pdB, 7, 0, sg)).toBe(-RdmaErrno.EOPNOTSUPP);
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, 2, sg)).toBe(-RdmaErrno.EINVAL);
    expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, 0, [...sg, { addr: 0, length: 8, lkey: pinned.lkey }])).toBe(-RdmaErrno.ENOENT);
    expect(nicB.adviseMr(nicA === nicB ? pdB : pdA, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, 0, sg)).toBe(-RdmaErrno.ENOENT);
    expect(nicB.pendingWork).toBe(0);
  });
});

describe("implicit ODP", () => {
  it("1 GiB children made on demand, each with its own 1 GiB IOVA window; an idle child is destroyed by the workqueue", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA, kernel } = rdmaRig();
    const src = mm.mmap(PAGE_SIZE);
    mm.write(src, pattern(1));
    const local = mr(nicA.regMr(pdA, mm, src, PAGE_SIZE, RW));
    const imr = mr(nicB.regMr(pdB, mm, 0, IB_IMPLICIT_ODP_LENGTH, ODP));
    expect(imr.implicit).toBe(true);
    const x = mm.mmap(PAGE_SIZE, { addr: 3 * MLX5_IMR_MTT_SIZE - PAGE_SIZE });
    const y = mm.mmap(PAGE_SIZE, { addr: 5 * MLX5_IMR_MTT_SIZE + 8 * PAGE_SIZE });
    expect(rdmaWrite(qpA, local, src, imr, x, 64).status).toBe(OK);
    expect(rdmaWrite(qpA, local, src, imr, y, 64).status).toBe(OK);
    expect(mm.read(x, 64)).toEqual(pattern(1));
    expect(mm.read(y, 64)).toEqual(pattern(1));
    expect([...imr.children.keys()].sort()).toEqual([2, 5]);
    const [c2, c5] = [imr.children.get(2), imr.children.get(5)];
    const w2 = c2?.odp?.map.state;
    const w5 = c5?.odp?.map.state;
    expect(w2?.size).toBe(MLX5_IMR_MTT_SIZE);
    expect(w5?.size).toBe(MLX5_IMR_MTT_SIZE);
    expect(w2?.addr).not.toBe(w5?.addr);
    expect(kernel.trace.counters.get(RdmaCounter.OdpImplicitChildren)).toBe(2);
    // A write past any mapping faults -EFAULT.
    expect(rdmaWrite(qpA, local, src, imr, 7 * MLX5_IMR_MTT_SIZE, 8).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    mm.munmap(x, PAGE_SIZE);
    expect(c2?.odp?.npages).toBe(0);
    expect(nicB.pendingWork).toBe(1);
    nicB.flushWork();
    expect([...imr.children.keys()].sort()).toEqual([5, 7]);
    expect(nicB.dev.domain?.iovaToPhys(unsafeIova(w2?.addr ?? 0))).toBeUndefined();
    expect(nicB.deregMr(imr)).toBe(0);
    expect(imr.children.size).toBe(0);
  });
});

describe("device accesses at addresses past 2^32", () => {
  it("a WRITE crossing a page boundary of an ODP MR above 4 GiB lands byte-exact and READs back", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA } = rdmaRig();
    // User addresses (MAP_FIXED at 5 GiB) and IOVAs (64-bit mask) above 2^32: page offsets and MTT
    // permission bits come from the low bits of numbers that do not fit in 32 bits.
    const src = mm.mmap(2 * PAGE_SIZE, { addr: 0x1_4000_0000 });
    mm.write(src + 8, pattern(7, 100));
    const local = mr(nicA.regMr(pdA, mm, src, 2 * PAGE_SIZE, RW));
    const dst = mm.mmap(2 * PAGE_SIZE, { addr: 0x1_4010_0000 });
    const odp = mr(nicB.regMr(pdB, mm, dst, 2 * PAGE_SIZE, ODP));
    const at = dst + PAGE_SIZE - 40;
    expect(rdmaWrite(qpA, local, src + 8, odp, at, 100).status).toBe(OK);
    expect(perm(odp.mtt[0] ?? 0)).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    expect(perm(odp.mtt[1] ?? 0)).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    expect(Array.from(mm.read(at, 100))).toEqual(Array.from(pattern(7, 100)));
    expect(rdmaRead(qpA, local, src + PAGE_SIZE, odp, at, 100).status).toBe(OK);
    expect(Array.from(mm.read(src + PAGE_SIZE, 100))).toEqual(Array.from(pattern(7, 100)));
  });
});
