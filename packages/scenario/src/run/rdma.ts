import { priceCounters } from "@dmasim/dma";
import type { DmaKernel } from "@dmasim/dma";
import { Mm, MmSystem } from "@dmasim/hmm-odp";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  ibConnectQp,
  ibCreateCq,
  ibCreateQp,
  ibPollCq,
  ibPostSend,
  IbWcStatus,
  ibWcStatusName,
  Mlx5Nic,
} from "@dmasim/rdma";
import type { IbMr, IbPd, IbQp, IbSendWr, OdpDmaStrategy } from "@dmasim/rdma";
import type { RdmaOdpWorkload, Scenario } from "../types.js";
import type { RunContext } from "./context.js";
import { finish } from "./finish.js";
import { createHost, setUp } from "./host.js";
import { runRdmaDmabuf } from "./rdma-dmabuf.js";
import { runHodgepodge } from "./rdma-hodgepodge.js";
import { runMixedMr } from "./rdma-mixed.js";
import { check } from "./result.js";
import type { Check, RunResult } from "./result.js";
import { runTestOdp } from "./rdma-test-odp.js";
import { runNicWorkload } from "./rdma-workload.js";

/** How each API of the sweep maps ODP pages in the driver. */
const STRATEGY = { classic: "pfn-list + dma_map_page", "two-step": "hmm_dma_map" } as const satisfies Record<string, OdpDmaStrategy>;

const HOW: Readonly<Record<OdpDmaStrategy, string>> = {
  "pfn-list + dma_map_page": "ODP before the two-step API: ib_umem_odp with a pfn list and a dma_addr_t per page, a dma_map_page per faulted page, dma_unmap_page in the invalidate callback",
  hmm_dma_map: "ib_umem_odp on hmm_dma_map (v6.16+): one IOVA per umem reserved at registration, hmm_dma_map_pfn per faulted page (a dma_iova_link and a sync each), the MTT written by one UMR per fault",
  "hmm_dma_map batched": "hmm_dma_map batched: one dma_iova_sync per run of faulted pages",
};

export const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;
export const ODP = RW | IB_ACCESS_ON_DEMAND;

/** What a test of the workload works with: the process, the two NICs (one in loopback) and a connected QP pair. */
export interface RdmaRun {
  readonly s: Scenario;
  readonly w: RdmaOdpWorkload;
  readonly sys: MmSystem;
  readonly mm: Mm;
  /** The requester (the peer, or the device in loopback) and the responder. */
  readonly nicA: Mlx5Nic;
  readonly nicB: Mlx5Nic;
  readonly pdA: IbPd;
  readonly pdB: IbPd;
  readonly qpA: IbQp;
  readonly qpB: IbQp;
  readonly checks: Check[];
  readonly mapped: string[];
  readonly metrics: Record<string, number>;
  /** Byte comparisons so far: bytes compared and mismatching comparisons. */
  readonly verified: { bytes: number; mismatches: number; firstBad: string };
  /** Run at teardown, after the MRs are deregistered and the process exited. */
  readonly atExit: (() => void)[];
  /** Posts a WR on qpA and returns its completion status; a QP that went to error is reconnected. */
  post(wr: IbSendWr): number;
  /** Registers an MR (refusals become a ScenarioSetupError: the scenario asked for something impossible). */
  reg(nic: Mlx5Nic, pd: IbPd, addr: number, length: number, access: number): IbMr;
  /** Compares what landed with what should have, counting the bytes. */
  verify(what: string, got: Uint8Array, want: Uint8Array): boolean;
}

/** A scenario's NIC, built as the platform says (a bad BDF is the scenario's fault). */
function nicOf(s: Scenario, kernel: DmaKernel, bdf: string, odpDma: OdpDmaStrategy): Mlx5Nic {
  return setUp(`scenario "${s.name}"`, () => new Mlx5Nic(kernel, bdf, { odpDma }));
}

function runWith(s: Scenario, w: RdmaOdpWorkload, ctx: RunContext, strategy: OdpDmaStrategy): RunResult {
  const host = createHost(s, ctx);
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const { kernel } = host;
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const nicB = nicOf(s, kernel, w.device, strategy);
  const nicA = w.peer === undefined ? nicB : nicOf(s, kernel, w.peer, strategy);
  const pdB = nicB.allocPd();
  const pdA = nicA === nicB ? pdB : nicA.allocPd();
  const cqA = ibCreateCq(nicA, 4096);
  const cqB = ibCreateCq(nicB, 4096);
  const connect = (): [IbQp, IbQp] => {
    const a = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
    const b = ibCreateQp(pdB, { sendCq: cqB, recvCq: cqB });
    ibConnectQp(a, b);
    return [a, b];
  };
  const [qpA, qpB] = connect();
  const checks: Check[] = [];
  const mapped: string[] = [];
  const metrics: Record<string, number> = {};
  const verified = { bytes: 0, mismatches: 0, firstBad: "" };
  const mrs: { nic: Mlx5Nic; mr: IbMr }[] = [];
  const errors: string[] = [];
  const run: RdmaRun = {
    s,
    w,
    sys,
    mm,
    nicA,
    nicB,
    pdA,
    pdB,
    qpA,
    qpB,
    checks,
    mapped,
    metrics,
    verified,
    atExit: [],
    post(wr) {
      const ret = ibPostSend(qpA, wr);
      if (ret !== 0) return ret;
      const wc = ibPollCq(cqA, 1)[0];
      const status = wc === undefined ? -1 : wc.status;
      if (status !== IbWcStatus.SUCCESS) errors.push(`wr ${wr.wrId}: ${wc === undefined ? "no completion" : ibWcStatusName(wc.status)}`);
      return status;
    },
    reg(nic, pd, addr, length, access) {
      const mr = setUp(`scenario "${s.name}"`, () => nic.regMr(pd, mm, addr, length, access));
      if (typeof mr === "number") {
        errors.push(`ibv_reg_mr returned ${mr}`);
        throw new RegistrationFailed(mr);
      }
      mrs.push({ nic, mr });
      return mr;
    },
    verify(what, got, want) {
      verified.bytes += want.length;
      let ok = got.length === want.length;
      for (let i = 0; ok && i < want.length; i++) if (got[i] !== want[i]) ok = false;
      if (!ok) {
        verified.mismatches++;
        if (verified.firstBad === "") verified.firstBad = what;
      }
      return ok;
    },
  };
  mapped.push(`${w.test}${w.implicit === true ? " (implicit ODP)" : ""} between NIC ${nicA.bdf} and NIC ${nicB.bdf}${nicA === nicB ? " (loopback)" : ""}`);
  if (w.test !== "mixed-mr") mapped.push(HOW[strategy]);
  const clock = kernel.trace.clock;
  const before = kernel.trace.counters.snapshot();
  const t0 = clock.now;
  const faults0 = nicA.stats.pageFaultEvents + (nicA === nicB ? 0 : nicB.stats.pageFaultEvents);
  try {
    if (w.test === "hodgepodge") runHodgepodge(run, host.platform, strategy);
    else if (w.test === "mixed-mr") runMixedMr(run, host.platform, strategy);
    else if (w.test === "nic-workload") runNicWorkload(run, strategy);
    else if (w.test.startsWith("dmabuf-")) runRdmaDmabuf(run, host.platform, ctx.api);
    else runTestOdp(run);
  } catch (e) {
    if (!(e instanceof RegistrationFailed)) throw e;
  }
  const faults = nicA.stats.pageFaultEvents + (nicA === nicB ? 0 : nicB.stats.pageFaultEvents) - faults0;
  // A workload that provokes refused accesses on purpose (a revoked slice) reports them as expected.
  const faultErrors = nicA.stats.faultErrors + (nicA === nicB ? 0 : nicB.stats.faultErrors) - (metrics.expectedFaultErrors ?? 0);
  const clockNs = clock.now - t0;
  const dmaNs = priceCounters(kernel.trace.counters.snapshot().diff(before), kernel.profile).totalNs;
  metrics.nicFaults = faults;
  metrics.nicFaultErrors = faultErrors;
  metrics.nicClockNs = clockNs;
  if (faults > 0) metrics.modelledFaultLatencyNs = Math.round((clockNs + dmaNs) / faults);
  metrics.verifiedBytes = verified.bytes;
  const n = (v: number): string => v.toLocaleString("en-US");
  checks.push(check("every byte verified", verified.mismatches === 0 && verified.bytes > 0, verified.mismatches === 0 ? `${n(verified.bytes)} bytes compared, all equal` : `${verified.mismatches} mismatch(es), the first: ${verified.firstBad}`));
  checks.push(check("every work request completed", errors.length === 0, errors.length === 0 ? `${n(faults)} NIC page fault(s), each resolved and the access replayed` : errors.slice(0, 3).join("; ")));

  // Teardown as the process would: deregister (the umem is released), run the NIC's queued work, exit.
  for (const { nic, mr } of mrs.reverse()) nic.deregMr(mr);
  nicA.flushWork();
  nicB.flushWork();
  const live = nicA.mrs.length + (nicA === nicB ? 0 : nicB.mrs.length);
  const pending = nicA.pendingWork + (nicA === nicB ? 0 : nicB.pendingWork);
  checks.push(check("no fault left", faultErrors === 0 && pending === 0, faultErrors === 0 && pending === 0 ? "no page fault failed; no prefetch or child destruction left queued" : `${faultErrors} failed page fault(s), ${pending} work item(s) queued`));
  mm.exit();
  for (const fn of run.atExit) fn();
  const held = sys.pagesInUse;
  checks.push(check("nothing leaked", live === 0 && held === 0, live === 0 && held === 0 ? "every MR deregistered, every page back with its allocator after exit" : `${live} MR(s) still on the NICs, ${held} page(s) held after exit`));
  const bdfs = nicA === nicB ? [w.device] : [w.device, nicA.bdf];
  return finish(s, ctx, host, bdfs, before, { checks, mapped, metrics });
}

/** An MR the scenario needs was refused: reported by the checks, not thrown. */
class RegistrationFailed extends Error {
  constructor(readonly ret: number) {
    super(`ibv_reg_mr returned ${ret}`);
  }
}

/**
 * An mlx5-like ODP NIC workload: classic is ODP before the two-step API, two-step is hmm_dma_map; a
 * two-step run repeats the workload with the batched variant on a fresh host and reports its counters
 * beside (the three-way comparison in one result).
 */
export function runRdmaOdp(s: Scenario, w: RdmaOdpWorkload, ctx: RunContext): RunResult {
  const r = runWith(s, w, ctx, STRATEGY[ctx.api]);
  // The batched variant maps ODP pages; a dmabuf MR has none.
  if (ctx.api !== "two-step" || w.test.startsWith("dmabuf-")) return r;
  const b = runWith(s, w, { api: ctx.api, iommu: ctx.iommu, ...(ctx.costProfile === undefined ? {} : { costProfile: ctx.costProfile }) }, "hmm_dma_map batched");
  const syncs = b.counters.IotlbSyncMap ?? 0;
  const pte = b.counters.PteWrites ?? 0;
  const ok = b.ok && pte === (r.counters.PteWrites ?? 0) && syncs <= (r.counters.IotlbSyncMap ?? 0);
  const failed = b.checks.filter((c) => !c.ok).map((c) => c.name);
  const c = check(
    "batched variant",
    ok,
    failed.length > 0 ? `failed: ${failed.join(", ")}` : `the same ${b.checks.length} checks held; ${syncs.toLocaleString("en-US")} IOTLB sync(s) for ${pte.toLocaleString("en-US")} PTE write(s)`,
  );
  const metrics = { ...r.metrics, batchedPteWrites: pte, batchedIotlbSyncs: syncs, batchedModelledNs: b.modelledNs };
  if (b.metrics.modelledFaultLatencyNs !== undefined) Object.assign(metrics, { batchedFaultLatencyNs: b.metrics.modelledFaultLatencyNs });
  if (b.metrics.modelledMBps !== undefined) Object.assign(metrics, { batchedMBps: b.metrics.modelledMBps });
  return { ...r, ok: r.ok && ok, checks: [...r.checks, c], metrics };
}
