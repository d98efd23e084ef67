import { DmaBufSystem, GpuVramExporter, VfioPciCoreDevice, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { unsafeIova } from "@dmasim/iommu";
import { DmirrorDevice, HMM_PFN_P2PDMA_BUS, MADV_DONTNEED, PteKind } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import type { P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { IbWcStatus, IbWrOpcode, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend, ibUmemMixedOf, mmapHodgepodge, regMixedMr } from "@dmasim/rdma";
import type { IbMr, MixedSegmentSpec, OdpDmaStrategy } from "@dmasim/rdma";
import { setUp } from "./host.js";
import { check } from "./result.js";
import type { RdmaRun } from "./rdma.js";
import { RW } from "./rdma.js";
import { rdmaPattern } from "./rdma-test-odp.js";

const LEN = 64;
const BLOCK = 64 * 1024;
const GPU_PAGES = 64;
const VFIO_PAGES = 16;

type Kind = "anon" | "thp" | "file" | "bar-switch" | "bar-bridge" | "devpriv" | "gpu-vram" | "vfio-bar";
interface Part {
  readonly kind: Kind;
  readonly first: number;
  readonly pages: number;
  /** User address (VA kinds) or byte offset in the buffer. */
  readonly at: number;
}

/**
 * ★ One MR from a hodgepodge (dmasim's proposal; upstream's ib_umem is ODP or dmabuf): regMixedMr over
 * user VA (anonymous, THP, file, two BAR mmaps, device-private) and two dma-bufs (GPU VRAM that migrates,
 * a VFIO BAR that is revoked), one mkey, one IOVA. The requester NIC reads and writes every page and WRs
 * that cross segment boundaries while the process madvises, munmaps and forks, the dmirror GPU migrates,
 * the GPU exporter moves blocks and VFIO revokes; after every step each live MTT entry must lead to the
 * memory backing the MR there, and per source the run reports time to quiescence and to the first DMA.
 */
export function runMixedMr(r: RdmaRun, platform: Platform, strategy: OdpDmaStrategy): void {
  const { s, w, mm, sys, nicA, nicB, pdA, pdB, checks, metrics, mapped } = r;
  const seed = s.seed ?? 1;
  const name = `scenario "${s.name}"`;
  const provider = (bdf: string | undefined): P2pdmaProvider | undefined =>
    bdf === undefined ? undefined : setUp(name, () => platform.providers.find((p) => p.owner === bdf && p.bar === 0) ?? platform.addP2pdmaProvider(bdf, 0));
  const switchBar = provider(w.switchBar);
  const bridgeBar = provider(w.bridgeBar);
  const kernel = nicB.kernel;
  const dmabufs = new DmaBufSystem(kernel, { debug: "collect" });
  const gpuBdf = w.gpuVram;
  const vfioBdf = w.vfioBar;
  if (gpuBdf === undefined || vfioBdf === undefined) {
    checks.push(check("mixed MR set up", false, "the mixed-mr test needs gpuVram and vfioBar (devices with a BAR 1)"));
    return;
  }
  const gpuVram = setUp(name, () => new GpuVramExporter(dmabufs, { bdf: gpuBdf, bar: 1, blockBytes: BLOCK }));
  const vram = gpuVram.allocate(GPU_PAGES * PAGE_SIZE);
  const vfio = setUp(name, () => new VfioPciCoreDevice(dmabufs, vfioBdf));
  const vfioBuf = vfio.featureDmaBuf({ regionIndex: 1, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: VFIO_PAGES * PAGE_SIZE }] });
  const vfioPhys = platform.endpoint(vfioBdf).bars.find((b) => b.index === 1)?.phys;
  if (typeof vfioBuf === "number" || vfioPhys === undefined) {
    checks.push(check("mixed MR set up", false, `VFIO could not export BAR 1 of ${vfioBdf}: ${typeof vfioBuf === "number" ? vfioBuf : "no BAR 1"}`));
    return;
  }
  const gpu = new DmirrorDevice(sys, { name: "gpu0", devmemPhys: 64 * GiB, devmemSize: 16 * MiB, ownerId: 0x20000 });
  const l = mmapHodgepodge(mm, { ...(switchBar === undefined ? {} : { switchBar }), ...(bridgeBar === undefined ? {} : { bridgeBar }), gpu });
  const tail = l.segments.find((g) => g.kind === "file")?.first ?? l.pages;
  // MR order: [anon + THP] (VA) · [GPU buffer] (dma-buf) · [file, BARs, devpriv] (VA) · [VFIO BAR] (dma-buf).
  const parts: Part[] = [];
  for (const g of l.segments) if (g.first < tail) parts.push({ kind: g.kind, first: g.first, pages: g.pages, at: l.base + g.first * PAGE_SIZE });
  parts.push({ kind: "gpu-vram", first: tail, pages: GPU_PAGES, at: 0 });
  for (const g of l.segments) if (g.first >= tail) parts.push({ kind: g.kind, first: g.first + GPU_PAGES, pages: g.pages, at: l.base + g.first * PAGE_SIZE });
  parts.push({ kind: "vfio-bar", first: l.pages + GPU_PAGES, pages: VFIO_PAGES, at: 0 });
  const pages = l.pages + GPU_PAGES + VFIO_PAGES;
  const partOf = (p: number): Part => parts.find((x) => p >= x.first && p < x.first + x.pages) ?? { kind: "anon", first: 0, pages: 0, at: 0 };
  const cpuWrite = (p: number, data: Uint8Array): void => {
    const x = partOf(p);
    const j = p - x.first;
    if (x.kind === "gpu-vram") gpuVram.cpuWrite(vram, j * PAGE_SIZE, data);
    else if (x.kind === "vfio-bar") platform.memory.write(physAddr(vfioPhys + j * PAGE_SIZE), data);
    else if (x.kind === "bar-switch" || x.kind === "bar-bridge") {
      const bar = x.kind === "bar-switch" ? switchBar : bridgeBar;
      if (bar !== undefined) platform.memory.write(physAddr(bar.phys + j * PAGE_SIZE), data);
    } else mm.write(x.at + j * PAGE_SIZE, data);
  };
  const cpuRead = (p: number): Uint8Array => {
    const x = partOf(p);
    const j = p - x.first;
    if (x.kind === "gpu-vram") return gpuVram.cpuRead(vram, j * PAGE_SIZE, LEN);
    if (x.kind === "vfio-bar") return platform.memory.read(physAddr(vfioPhys + j * PAGE_SIZE), LEN);
    return mm.read(x.at + j * PAGE_SIZE, LEN);
  };
  const want: Uint8Array[] = [];
  for (let p = 0; p < pages; p++) {
    const data = rdmaPattern(LEN, seed, p);
    cpuWrite(p, data);
    want.push(data);
  }
  checks.push(check("pages migrated to the GPU", l.migrateDevpriv() === 0, "dmirror migrate_to_dev of the devpriv pages"));
  gpuVram.migrate(vram, "ram", [1, 3]);
  const va1 = l.segments.filter((g) => g.first < tail).reduce((n, g) => n + g.pages, 0);
  const specs: MixedSegmentSpec[] = [
    { kind: "va", mm, addr: l.base, length: va1 * PAGE_SIZE, name: "mm" },
    { kind: "dmabuf", buf: vram, offset: 0, length: GPU_PAGES * PAGE_SIZE, name: "gpu" },
    { kind: "va", mm, addr: l.base + tail * PAGE_SIZE, length: (l.pages - tail) * PAGE_SIZE, name: "mm" },
    { kind: "dmabuf", buf: vfioBuf, offset: 0, length: VFIO_PAGES * PAGE_SIZE, name: "vfio" },
  ];
  const reg = setUp(name, () => regMixedMr(nicB, pdB, specs, RW));
  const umem = typeof reg === "number" ? undefined : ibUmemMixedOf(reg);
  if (typeof reg === "number" || umem === undefined) {
    checks.push(check("mixed MR registered", false, `regMixedMr returned ${typeof reg === "number" ? reg : "an MR without a mixed umem"}`));
    return;
  }
  const mr: IbMr = reg;
  mapped.push(`one mixed MR (dmasim's proposal) over ${pages} pages: ${parts.map((x) => `${x.kind} ×${x.pages}`).join(", ")}; one mkey, one IOVA of ${(pages * PAGE_SIZE).toLocaleString("en-US")} bytes`);
  mapped.push(`VA segments fault through hmm_range_fault (mmu interval notifiers) and hmm_dma_map_pfn into their IOVA slice (${strategy === "hmm_dma_map batched" ? "one sync per run of faulted pages" : "a link and a sync per page"}); dma-buf segments map the exporter's physical-range list into their IOVA slice on access and wait for its KERNEL fence`);
  const stage = mm.mmap(pages * PAGE_SIZE);
  const staging = r.reg(nicA, pdA, stage, pages * PAGE_SIZE, RW);
  const read = (p: number, what: string): void => {
    r.post({ wrId: p, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: stage + p * PAGE_SIZE, length: LEN, lkey: staging.lkey }], remoteAddr: p * PAGE_SIZE, rkey: mr.rkey });
    r.verify(`${what}: page ${p} (${partOf(p).kind})`, mm.read(stage + p * PAGE_SIZE, LEN), want[p] ?? new Uint8Array(LEN));
  };
  const write = (p: number, tag: number, len = LEN, off = 0): void => {
    const data = rdmaPattern(len, seed + tag, p);
    mm.write(stage + p * PAGE_SIZE + off, data);
    r.post({ wrId: p, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: stage + p * PAGE_SIZE + off, length: len, lkey: staging.lkey }], remoteAddr: p * PAGE_SIZE + off, rkey: mr.rkey });
  };
  // An access expected to fail (a revoked or unmapped slice), on a QP pair of its own (it goes to error).
  let refused = 0;
  const probe = (p: number): boolean => {
    const errors = nicB.stats.faultErrors;
    const cqA = ibCreateCq(nicA, 4);
    const cqB = ibCreateCq(nicB, 4);
    const a = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
    ibConnectQp(a, ibCreateQp(pdB, { sendCq: cqB, recvCq: cqB }));
    ibPostSend(a, { wrId: p, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: stage + p * PAGE_SIZE, length: LEN, lkey: staging.lkey }], remoteAddr: p * PAGE_SIZE, rkey: mr.rkey });
    const failed = ibPollCq(cqA, 1)[0]?.status === IbWcStatus.REM_ACCESS_ERR;
    if (failed) refused++;
    metrics.expectedFaultErrors = (metrics.expectedFaultErrors ?? 0) + nicB.stats.faultErrors - errors;
    return failed;
  };
  // After every step: each live MTT entry leads to the memory backing the MR there now.
  let stale = 0;
  let live = 0;
  let steps = 0;
  const backing = (p: number): number | undefined => {
    const x = partOf(p);
    const j = p - x.first;
    if (x.kind === "gpu-vram") {
      const list = gpuVram.currentList(vram);
      for (let i = 0, pos = 0; i < list.nrRanges; pos += list.len[i] ?? 0, i++) if (j * PAGE_SIZE < pos + (list.len[i] ?? 0)) return (list.phys[i] ?? 0) + j * PAGE_SIZE - pos;
      return undefined;
    }
    if (x.kind === "vfio-bar") return vfio.memoryEnabled ? vfioPhys + j * PAGE_SIZE : undefined;
    const pte = mm.pteAt(x.at + j * PAGE_SIZE);
    return pte !== undefined && (pte.kind === PteKind.PRESENT || pte.kind === PteKind.ZERO) ? pte.pfn * PAGE_SIZE : undefined;
  };
  const audit = (): void => {
    steps++;
    for (let p = 0; p < pages; p++) {
      const e = mr.mtt[p] ?? 0;
      if (e === 0) continue;
      live++;
      const dma = e - (e % 4);
      let phys: number | undefined;
      if (((umem.map.flags[p] ?? 0) & HMM_PFN_P2PDMA_BUS) !== 0) {
        const pr = platform.providers.find((x) => dma >= x.bus && dma < x.bus + x.size);
        phys = pr === undefined ? undefined : pr.phys + dma - pr.bus;
      } else {
        phys = nicB.dev.domain?.type === "paging" ? nicB.dev.domain.iovaToPhys(unsafeIova(dma)) : dma;
      }
      if (phys !== backing(p)) stale++;
    }
  };
  const of = (kind: Kind): Part => parts.find((x) => x.kind === kind) ?? { kind, first: 0, pages: 0, at: 0 };
  const range = (x: Part): number[] => Array.from({ length: x.pages }, (_, i) => x.first + i);

  // 1. The NIC reads every page as its source left it, then writes every page; each source's CPU view sees it.
  for (let p = 0; p < pages; p++) read(p, "first read");
  audit();
  for (let p = 0; p < pages; p++) {
    write(p, 1);
    const data = rdmaPattern(LEN, seed + 1, p);
    want[p] = data;
    r.verify(`the CPU view sees the NIC's write: page ${p} (${partOf(p).kind})`, cpuRead(p), data);
  }
  audit();
  // 2. WRs of 8 KiB that cross from one source to the next (VA → GPU, GPU → VA, VA → VFIO).
  for (const b of [of("gpu-vram").first, of("file").first, of("vfio-bar").first]) {
    write(b - 1, 2, 2 * PAGE_SIZE);
    const data = rdmaPattern(2 * PAGE_SIZE, seed + 2, b - 1);
    want[b - 1] = data.subarray(0, LEN);
    want[b] = data.subarray(PAGE_SIZE, PAGE_SIZE + LEN);
    read(b - 1, "a WR across a segment boundary");
    read(b, "a WR across a segment boundary");
  }
  // 3. The mm: madvise(MADV_DONTNEED) of the anonymous pages, munmap of one, fork and the parent's write.
  const anon = of("anon");
  mm.madvise(anon.at, anon.pages * PAGE_SIZE, MADV_DONTNEED);
  audit();
  for (const p of range(anon)) {
    want[p] = new Uint8Array(LEN);
    read(p, "after madvise(MADV_DONTNEED)");
  }
  mm.munmap(anon.at + 3 * PAGE_SIZE, PAGE_SIZE);
  audit();
  const unmappedRefused = probe(anon.first + 3);
  read(anon.first + 4, "the neighbour of an unmapped page");
  const child = mm.fork();
  audit();
  const thp = of("thp").first;
  write(thp, 3);
  want[thp] = rdmaPattern(LEN, seed + 3, thp);
  r.verify("after fork, the parent sees the NIC's write", mm.read(of("thp").at, LEN), want[thp]);
  r.verify("after fork, the child keeps its copy", child.read(of("thp").at, LEN), rdmaPattern(LEN, seed + 1, thp));
  child.exit();
  audit();
  // 4. The dmirror GPU takes its pages again; the NIC faults them back.
  l.migrateDevpriv();
  audit();
  for (const p of range(of("devpriv"))) read(p, "after a migration to the GPU");
  // 5. The GPU exporter moves blocks (RAM → VRAM, VRAM → RAM); the NIC waits for each copy's fence.
  const g = of("gpu-vram");
  for (const [to, block] of [["vram", 1], ["ram", 0], ["ram", 2]] as const) {
    gpuVram.migrate(vram, to, [block]);
    audit();
    for (const p of range(g)) read(p, `after the GPU moved block ${block} to ${to}`);
  }
  // 6. VFIO revokes: the VFIO slice refuses the NIC, the rest works; memory enabled again, it works again.
  const v = of("vfio-bar");
  const revoke = vfio.setMemoryEnable(false);
  audit();
  const vfioRefused = probe(v.first) && probe(v.first + v.pages - 1);
  read(g.first, "while VFIO is revoked");
  read(anon.first, "while VFIO is revoked");
  vfio.setMemoryEnable(true);
  for (const p of range(v)) read(p, "after VFIO memory is enabled again");
  audit();
  // 7. A last pass over every page still mapped.
  for (let p = 0; p < pages; p++) if (p !== anon.first + 3) read(p, "last read");
  audit();

  checks.push(check("no stale MTT entry", stale === 0 && live > 0, `${live.toLocaleString("en-US")} live MTT entries audited after ${steps} steps; ${stale.toLocaleString("en-US")} led elsewhere than the memory backing the MR there`));
  checks.push(check("revoked and unmapped slices refused, the rest served", revoke.done && vfioRefused && unmappedRefused, `${refused} access(es) refused as expected (an unmapped page, the revoked VFIO slice); the GPU and VA slices kept working meanwhile`));
  // Per source: time to quiescence and to the first DMA after the event (virtual ns).
  const rows = umem.events.bySource();
  const ns = (x: number | undefined): string => (x === undefined ? "–" : `${(x / 1000).toFixed(1)} µs`);
  for (const row of rows) {
    metrics[`${row.source}Events`] = row.events;
    metrics[`${row.source}QuiescenceMaxNs`] = Math.round(row.quiescenceMaxNs);
    if (row.firstDmaMaxNs !== undefined) metrics[`${row.source}FirstDmaMaxNs`] = Math.round(row.firstDmaMaxNs);
  }
  const sources = rows.map((x) => x.source).sort().join(",");
  checks.push(
    check(
      "each source invalidated its own slice",
      sources === "gpu,mm,vfio" && rows.every((x) => x.awaitingFirstDma === 0),
      rows.map((x) => `${x.source}: ${x.events} event(s), quiescence ≤ ${ns(x.quiescenceMaxNs)}, first DMA after ≤ ${ns(x.firstDmaMaxNs)}`).join("; "),
    ),
  );
  metrics.pages = pages;
  // Teardown of the mixed MR here (the runner deregisters the MRs it registered itself).
  const attachments = (b: DmaBuf): number => b.attachments.length;
  const dereg = nicB.deregMr(mr);
  const left = attachments(vram) + attachments(vfioBuf) + mm.subscriptions.itree.filter((n) => n.owner.includes(".mixed")).length;
  checks.push(check("the mixed MR left nothing", dereg === 0 && left === 0 && dmabufs.debug.reports().length === 0, `deregistration returned ${dereg}; ${left} attachment(s) or notifier(s) left; ${dmabufs.debug.reports().length} dma-buf rule finding(s)`));
  l.mirror()?.close();
  dmaBufPut(vram);
  dmaBufPut(vfioBuf);
  const file = l.file;
  if (file !== undefined) r.atExit.push(() => { sys.dropFile(file); });
}
