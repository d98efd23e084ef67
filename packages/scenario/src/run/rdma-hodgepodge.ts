import { unsafeIova } from "@dmasim/iommu";
import { DmirrorDevice, HMM_PFN_P2PDMA_BUS, MADV_DONTNEED, PteKind } from "@dmasim/hmm-odp";
import type { Mm } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import type { P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { IB_IMPLICIT_ODP_LENGTH, IbWrOpcode, MLX5_IMR_MTT_SIZE, mmapHodgepodge } from "@dmasim/rdma";
import type { HodgepodgeKind, IbMr, Mlx5Nic, OdpDmaStrategy } from "@dmasim/rdma";
import { setUp } from "./host.js";
import { check } from "./result.js";
import type { RdmaRun } from "./rdma.js";
import { ODP, RW } from "./rdma.js";
import { rdmaPattern } from "./rdma-test-odp.js";

const LEN = 64;

/**
 * One ODP MR over a hodgepodge of user memory (mmapHodgepodge of @dmasim/rdma): anonymous pages, a 2 MiB
 * THP, a shared file, a peer BAR reached by bus address, one reached through the host bridge, and pages
 * a GPU migrates to its device-private memory. The requester NIC reads and writes every page of it
 * through the responder's MTT while the process madvises, forks and the GPU migrates pages in and out;
 * every byte is checked against what the CPU sees.
 */
export function runHodgepodge(r: RdmaRun, platform: Platform, strategy: OdpDmaStrategy): void {
  const { s, w, mm, sys, nicA, nicB, pdA, pdB, checks, metrics, mapped } = r;
  const seed = s.seed ?? 1;
  const provider = (bdf: string | undefined): P2pdmaProvider | undefined =>
    bdf === undefined ? undefined : setUp(`scenario "${s.name}"`, () => platform.providers.find((p) => p.owner === bdf) ?? platform.addP2pdmaProvider(bdf, 0));
  const switchBar = provider(w.switchBar);
  const bridgeBar = provider(w.bridgeBar);
  const gpu = new DmirrorDevice(sys, { name: "gpu0", devmemPhys: 64 * GiB, devmemSize: 16 * MiB, ownerId: 0x20000 });
  const l = mmapHodgepodge(mm, { ...(switchBar === undefined ? {} : { switchBar }), ...(bridgeBar === undefined ? {} : { bridgeBar }), gpu });
  const { base, pages, segments } = l;
  mapped.push(`one ODP MR over ${pages} pages: ${segments.map((g) => `${g.kind} ×${g.pages}`).join(", ")}`);
  if (strategy === "pfn-list + dma_map_page" && (switchBar !== undefined || bridgeBar !== undefined)) {
    mapped.push("the pre-two-step umem maps RAM only: the BAR pages fault with an error (P2P pages were not ODP-mappable then)");
  }
  // What each page holds first: the CPU writes every page that is not a BAR, the BARs get their bytes directly.
  const want: Uint8Array[] = [];
  for (let p = 0; p < pages; p++) {
    const kind = l.kindOf(p);
    const data = rdmaPattern(LEN, seed, p);
    if (kind === "bar-switch" || kind === "bar-bridge") {
      const bar = kind === "bar-switch" ? switchBar : bridgeBar;
      const seg = segments.find((g) => g.kind === kind);
      if (bar !== undefined && seg !== undefined) platform.memory.write(physAddr(bar.phys + (p - seg.first) * PAGE_SIZE), data);
    } else {
      mm.write(base + p * PAGE_SIZE, data);
    }
    want.push(data);
  }
  const dev = l.migrateDevpriv();
  checks.push(check("pages migrated to the GPU", dev === 0, `dmirror migrate_to_dev returned ${dev}`));
  const stage = mm.mmap(pages * PAGE_SIZE);
  const staging = r.reg(nicA, pdA, stage, pages * PAGE_SIZE, RW);
  const odp = w.implicit === true ? r.reg(nicB, pdB, 0, IB_IMPLICIT_ODP_LENGTH, ODP) : r.reg(nicB, pdB, base, pages * PAGE_SIZE, ODP);
  const read = (p: number, what: string, expect: Uint8Array): void => {
    r.post({ wrId: p, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: stage + p * PAGE_SIZE, length: LEN, lkey: staging.lkey }], remoteAddr: base + p * PAGE_SIZE, rkey: odp.rkey });
    r.verify(`${what}: page ${p} (${l.kindOf(p)})`, mm.read(stage + p * PAGE_SIZE, LEN), expect);
  };
  const write = (p: number, tag: number): Uint8Array => {
    const data = rdmaPattern(LEN, seed + tag, p);
    mm.write(stage + p * PAGE_SIZE, data);
    r.post({ wrId: p, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: stage + p * PAGE_SIZE, length: LEN, lkey: staging.lkey }], remoteAddr: base + p * PAGE_SIZE, rkey: odp.rkey });
    r.verify(`the CPU sees the NIC's write: page ${p} (${l.kindOf(p)})`, mm.read(base + p * PAGE_SIZE, LEN), data);
    return data;
  };
  const pagesOf = (kind: HodgepodgeKind): number[] => {
    const g = segments.find((x) => x.kind === kind);
    return g === undefined ? [] : Array.from({ length: g.pages }, (_, i) => g.first + i);
  };
  // After every step: each live MTT entry leads where the CPU's page table points (never to a page the
  // process no longer maps at that address).
  let stale = 0;
  let live = 0;
  let steps = 0;
  const audit = (): void => {
    steps++;
    for (let p = 0; p < pages; p++) {
      const addr = base + p * PAGE_SIZE;
      const nic = mttPhys(nicB, odp, addr);
      if (nic === undefined) continue;
      live++;
      if (nic !== cpuPhys(mm, addr)) stale++;
    }
  };
  // 1. The NIC reads every page as the CPU left it (device-private pages migrate back on the fault).
  for (let p = 0; p < pages; p++) read(p, "first read", want[p] ?? new Uint8Array(LEN));
  audit();
  // 2. It writes every page; the CPU sees each write.
  for (let p = 0; p < pages; p++) want[p] = write(p, 1);
  audit();
  // 3. The GPU takes its pages again: the invalidation zaps their MTT entries, the NIC faults them back.
  const again = l.migrateDevpriv();
  audit();
  for (const p of pagesOf("devpriv")) read(p, "after a second migration to the GPU", want[p] ?? new Uint8Array(LEN));
  // 4. madvise(MADV_DONTNEED) over the anonymous pages: they come back zeroed; the file keeps its bytes.
  for (const kind of ["anon", "file"] as const) {
    const ps = pagesOf(kind);
    const first = ps[0];
    if (first === undefined) continue;
    mm.madvise(base + first * PAGE_SIZE, ps.length * PAGE_SIZE, MADV_DONTNEED);
    audit();
    for (const p of ps) {
      if (kind === "anon") want[p] = new Uint8Array(LEN);
      read(p, `after madvise(MADV_DONTNEED) of the ${kind} pages`, want[p] ?? new Uint8Array(LEN));
    }
  }
  // 5. fork: COW write-protect invalidates; the parent's write goes to a new page the NIC must reach.
  const child = mm.fork();
  audit();
  const thp = pagesOf("thp")[0];
  const cow = [0, ...(thp === undefined ? [] : [thp])];
  for (const p of cow) {
    const before = want[p] ?? new Uint8Array(LEN);
    const data = rdmaPattern(LEN, seed + 2, p);
    mm.write(base + p * PAGE_SIZE, data);
    want[p] = data;
    read(p, "after fork and the parent's write", data);
    r.verify(`the child keeps the old bytes: page ${p}`, child.read(base + p * PAGE_SIZE, LEN), before);
  }
  child.exit();
  audit();
  // 6. A last pass: every page reads what the model says it holds.
  for (let p = 0; p < pages; p++) read(p, "last read", want[p] ?? new Uint8Array(LEN));
  audit();
  checks.push(check("no stale MTT entry", stale === 0 && live > 0, `${live.toLocaleString("en-US")} live MTT entries audited after ${steps} steps; ${stale.toLocaleString("en-US")} led elsewhere than the CPU's page`));
  checks.push(check("the GPU took its pages twice", again === 0, `the second migrate_to_dev returned ${again}`));
  l.mirror()?.close();
  const file = l.file;
  metrics.pages = pages;
  metrics.invalidations = mm.invalidations.records.length;
  // The file's page cache outlives the process: dropped once the MR and the process are gone (after teardown).
  if (file !== undefined) r.atExit.push(() => { sys.dropFile(file); });
}

/**
 * Where an MTT entry leads the NIC: through its IOMMU domain for an IOVA (or the address itself without
 * one), or the BAR behind a P2P bus address. Undefined for no entry.
 */
function mttPhys(nic: Mlx5Nic, mr: IbMr, addr: number): number | undefined {
  let m: IbMr | undefined = mr;
  if (mr.implicit) m = mr.children.get(Math.floor(addr / MLX5_IMR_MTT_SIZE));
  if (m === undefined) return undefined;
  const i = Math.floor((addr - m.mttStart) / PAGE_SIZE);
  const e = m.mtt[i] ?? 0;
  if (e === 0) return undefined;
  const dma = e - (e % 4); // the entry is dma_addr | MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE
  if (((m.odp?.map.flags[i] ?? 0) & HMM_PFN_P2PDMA_BUS) !== 0) {
    for (const p of nic.kernel.platform.providers) if (dma >= p.bus && dma < p.bus + p.size) return p.phys + (dma - p.bus);
    return undefined;
  }
  const domain = nic.dev.domain;
  return domain?.type === "paging" ? domain.iovaToPhys(unsafeIova(dma)) : dma;
}

/** The physical page the CPU maps at `addr` (present or the zero page), or undefined. */
function cpuPhys(mm: Mm, addr: number): number | undefined {
  const pte = mm.pteAt(addr);
  if (pte?.kind !== PteKind.PRESENT && pte?.kind !== PteKind.ZERO) return undefined;
  return pte.pfn * PAGE_SIZE;
}
