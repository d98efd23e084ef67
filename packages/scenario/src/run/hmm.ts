import { dmaUseIova } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { DmirrorDevice, HmmErrno, InvalidationLog, MADV_DONTNEED, Mm, MmSystem, PteKind, hmmDmirrorCmd } from "@dmasim/hmm-odp";
import type { Dmirror, DmirrorFaultStep } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import type { HmmWorkload, Scenario } from "../types.js";
import type { RunContext } from "./context.js";
import { finish } from "./finish.js";
import type { Outcome } from "./finish.js";
import { PfnListMirror } from "./hmm-pfn-list.js";
import { createHost, setUp } from "./host.js";
import { check } from "./result.js";
import type { Check, RunResult } from "./result.js";
import { kStaleSeqs } from "@dmasim/hmm-odp/internal";

/** How the device driver turns hmm_range_fault output into DMA addresses. */
type Variant = "pfn-list" | "hmm_dma_map" | "batched";

/** What the workload needs of a mirroring driver, whichever way it maps. */
interface Mirror {
  /** The device reads whole pages at `addr`, faulting what it has no translation for. 0 or -errno. */
  deviceRead(addr: number, buf: Uint8Array): number;
  liveTranslations(lo: number, hi: number): number;
  translate(addr: number): { phys: number } | undefined;
  /** Device faults handled so far (runs of the read_begin / hmm_range_fault / read_retry loop that programmed it). */
  readonly faults: number;
  readonly bookkeepingBytes: number;
  /** Failed read_retry checks of the fault loop (the sequences the notifier saw go stale). */
  readonly retries: number;
  /** Runs `fn` at `step` of every attempt of the fault loop (undefined: no injection). */
  inject(step: DmirrorFaultStep, fn: (() => void) | undefined): void;
  close(): void;
}

/** dmirror in DMA mode (hmm_dma_map), with its READ command's fault count. */
function dmirrorMirror(d: Dmirror): Mirror {
  let faults = 0;
  return {
    deviceRead(addr, buf) {
      const cmd = hmmDmirrorCmd(addr, buf.length / PAGE_SIZE, buf);
      const ret = d.read(cmd);
      faults += cmd.faults;
      return ret;
    },
    liveTranslations: (lo, hi) => d.liveTranslations(lo, hi),
    translate: (addr) => d.translate(addr),
    get faults() {
      return faults;
    },
    get bookkeepingBytes() {
      return d.dma?.map.bookkeepingBytes ?? 0;
    },
    get retries() {
      return d.notifier[kStaleSeqs].size;
    },
    inject(step, fn) {
      if (fn === undefined) d.inject = {};
      else d.inject = { [step]: fn };
    },
    close: () => {
      d.close();
    },
  };
}

function pfnListMirror(p: PfnListMirror): Mirror {
  return {
    deviceRead: (addr, buf) => p.deviceRead(addr, buf),
    liveTranslations: (lo, hi) => p.liveTranslations(lo, hi),
    translate: (addr) => p.translate(addr),
    get faults() {
      return p.faults;
    },
    get bookkeepingBytes() {
      return p.pfns.byteLength + p.flags.byteLength + p.dmaAddr.byteLength + p.mappedPfn.byteLength + p.mappedDir.byteLength;
    },
    get retries() {
      return p.notifier[kStaleSeqs].size;
    },
    inject(step, fn) {
      if (fn === undefined) p.inject = {};
      else p.inject = { [step]: fn };
    },
    close: () => {
      p.close();
    },
  };
}

/**
 * Bytes for `size` bytes of a mirrored range (a multiple of 4): every 32-bit word distinct and derived
 * from the seed, so a page read from the wrong frame or offset never matches. Cheaper than the byte-wise
 * generator of @dmasim/memory, which would dominate a run of a few thousand pages.
 */
function rangePattern(size: number, seed: number): Uint8Array {
  const words = new Uint32Array(size / 4);
  const base = Math.imul(seed + 1, 0x9e3779b1);
  for (let k = 0; k < words.length; k++) words[k] = (base + Math.imul(k + 1, 0x85ebca6b)) ^ (k >>> 7);
  return new Uint8Array(words.buffer);
}

/** Byte equality of two page-sized buffers, a word at a time. */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.byteOffset % 4 !== 0 || b.byteOffset % 4 !== 0 || a.length % 4 !== 0) {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Device-private memory of the driver's own dmirror and of the peer that migration moves pages to. */
const DEVMEM_OWN = 64 * GiB;
const DEVMEM_PEER = 65 * GiB;
const DEVMEM_BYTES = 256 * MiB;

const HOW_NO_IOVA = "hmm_dma_map_alloc without an IOVA (no paging IOMMU domain): hmm_dma_map_pfn maps each page directly, hmm_dma_unmap_pfn in the invalidate callback";

/** Where an injected race lands, in words. */
const RACE_WHERE: Readonly<Record<DmirrorFaultStep, string>> = {
  "after-read-begin": "just after mmu_interval_read_begin",
  "in-hmm-range-fault": "inside hmm_range_fault",
  "before-driver-lock": "between hmm_range_fault and the driver lock",
  "before-read-retry": "while the driver held its lock for mmu_interval_read_retry",
};

const HOW: Readonly<Record<Variant, string>> = {
  "pfn-list": "hmm_range_fault into the driver's pfn list, a dma_map_page per page (a dma_addr_t each), dma_unmap_page per page in the invalidate callback",
  hmm_dma_map: "hmm_dma_map_alloc once (one IOVA for the range), hmm_dma_map_pfn per page (a dma_iova_link and a dma_iova_sync each), hmm_dma_unmap_pfn in the invalidate callback",
  batched: "batched: a dma_iova_link per run of up to 64 faulted entries and one dma_iova_sync per run",
};

/**
 * A process range mirrored by a device (kernel lib/test_hmm.c's dmirror, in DMA mode, or a pfn-list
 * driver of the pre-two-step era): the device faults the range in and reads it, then the event of the
 * workload changes the CPU page table under the device's feet, and the run checks that the notifier took
 * every device translation away before the change took effect, that the device re-faults and sees what
 * the CPU sees, and that nothing stays mapped. classic runs the pfn-list driver; two-step runs
 * hmm_dma_map per entry, and the batched variant on a second, identical host for comparison.
 */
export function runHmm(s: Scenario, w: HmmWorkload, ctx: RunContext): RunResult {
  if (ctx.api === "classic") return runVariant(s, w, ctx, "pfn-list", `${s.name} classic/${ctx.iommu}`);
  const main = runVariant(s, w, ctx, "hmm_dma_map", `${s.name} two-step/${ctx.iommu}`);
  // Its own label ("<scenario> batched two-step/<iommu>"): a run log keeps it apart from the result's run.
  const batched = runVariant(s, w, ctx, "batched", `${s.name} batched two-step/${ctx.iommu}`);
  // The batched run makes the same checks; one line sums them up, or names those that failed.
  const failed = batched.checks.filter((c) => !c.ok);
  const bc = batched.counters;
  const summary = check(
    "batched variant",
    batched.ok,
    batched.ok
      ? `the same ${batched.checks.length} checks held; ${(bc.IotlbSyncMap ?? 0).toLocaleString("en-US")} IOTLB sync(s) for ${(bc.DmaIovaLinks ?? 0).toLocaleString("en-US")} dma_iova_link(s) and ${(bc.PteWrites ?? 0).toLocaleString("en-US")} PTE write(s)`
      : failed.map((c) => `${c.name}: ${c.detail}`).join("; "),
  );
  const checks: Check[] = [...main.checks, summary];
  return {
    ...main,
    ok: main.ok && batched.ok,
    checks,
    mapped: [...main.mapped, HOW.batched],
    metrics: {
      ...main.metrics,
      batchedPteWrites: batched.counters.PteWrites ?? 0,
      batchedIotlbSyncs: batched.counters.IotlbSyncMap ?? 0,
      batchedLinks: batched.counters.DmaIovaLinks ?? 0,
      batchedModelledNs: batched.modelledNs,
    },
  };
}

function runVariant(s: Scenario, w: HmmWorkload, ctx: RunContext, variant: Variant, label: string): RunResult {
  const host = createHost(s, ctx);
  const { platform, kernel } = host;
  const dev: DmaDevice = setUp(`workload.device of scenario "${s.name}"`, () => kernel.device(w.device));
  ctx.onHost?.(label, host);
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const own = new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: DEVMEM_OWN, devmemSize: DEVMEM_BYTES, ownerId: 0x10000 });
  const pages = w.pages ?? 256;
  const size = pages * PAGE_SIZE;
  const seed = s.seed ?? 1;
  const addr = mm.mmap(size);
  const data0 = rangePattern(size, seed * 7919);
  mm.write(addr, data0);

  const before = platform.trace.counters.snapshot();
  const faults0 = sys.stats.minorFaults + sys.stats.majorFaults;
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  const dmirror = variant === "pfn-list" ? undefined : own.open(mm, { dev, start: addr, size, batched: variant === "batched" });
  const mirror = dmirror === undefined ? pfnListMirror(new PfnListMirror(dev, mm, addr, size)) : dmirrorMirror(dmirror);
  // Without a paging IOMMU domain hmm_dma_map_alloc gets no IOVA and each entry is a direct mapping.
  const noIova = dmirror?.dma !== undefined && !dmaUseIova(dmirror.dma.map.state);
  const how = noIova ? HOW_NO_IOVA : HOW[variant === "batched" ? "hmm_dma_map" : variant];
  out.mapped.push(`${pages.toLocaleString("en-US")} page(s) mirrored by ${w.device}: ${how}`);
  if (variant === "batched") out.mapped.push(HOW.batched);

  /** Pages the device reaches at a frame other than the one the CPU page table maps: must stay 0. */
  const stale = (lo: number, hi: number): number => {
    let n = 0;
    for (let a = lo; a < hi; a += PAGE_SIZE) {
      const t = mirror.translate(a);
      if (t === undefined) continue;
      const pte = mm.pteAt(a);
      const cpu =
        pte === undefined
          ? undefined
          : pte.kind === PteKind.PRESENT
            ? pte.pfn * PAGE_SIZE
            : pte.kind === PteKind.ZERO
              ? sys.zeroPfn * PAGE_SIZE
              : pte.kind === PteKind.DEVICE_PRIVATE
                ? sys.pagemapOf(pte.pfn)?.backingPhys(pte.pfn)
                : undefined;
      if (cpu !== t.phys) n++;
    }
    return n;
  };
  const end = addr + size;
  const afterEvent = (what: string, lo: number, hi: number): void => {
    const live = mirror.liveTranslations(lo, hi);
    const bad = stale(addr, end);
    out.checks.push(
      check(
        `no stale translation after ${what}`,
        live === 0 && bad === 0,
        live === 0 && bad === 0 ? `the notifier dropped every device translation of the range before ${what} completed` : `${live} translation(s) still live in the range, ${bad} page(s) pointing at a frame the CPU no longer maps`,
      ),
    );
  };
  const deviceSees = (name: string, at: number, want: Uint8Array): void => {
    const got = new Uint8Array(want.length);
    const ret = mirror.deviceRead(at, got);
    const ok = ret === 0 && equal(got, want);
    out.checks.push(check(name, ok, ok ? `${(want.length / PAGE_SIZE).toLocaleString("en-US")} page(s) read back identical` : ret !== 0 ? `the device read returned ${ret}` : "the bytes differ"));
  };

  const race = w.race;
  let raced: number | undefined;
  const victim = addr + Math.floor(pages / 2) * PAGE_SIZE;
  if (race !== undefined) {
    mirror.inject(race, () => {
      // Once: a NUMA/compaction migration of one page of the range while the fault is under way.
      raced ??= mm.migratePage(victim);
    });
  }
  deviceSees("device saw the right bytes", addr, data0);
  if (race !== undefined) {
    mirror.inject(race, undefined);
    const bad = stale(addr, end);
    const ok = raced === 0 && bad === 0;
    out.checks.push(
      check(
        `the race ${race} was caught`,
        ok,
        raced === undefined
          ? "the injection point was never reached"
          : `a page migrated ${RACE_WHERE[race]} (migrate returned ${raced}); ${mirror.retries} read_retry failure(s), ${bad} stale translation(s) after the fault`,
      ),
    );
  }
  const faultsIn = mirror.faults;
  out.metrics.deviceFaultsIn = faultsIn;

  switch (w.event) {
    case "fault-in": {
      deviceSees("re-read without a fault", addr, data0);
      const again = mirror.faults - faultsIn;
      out.checks.push(check("no fault on a re-read", again === 0, again === 0 ? "every page still had its translation" : `${again} device fault(s) on a range that was already mapped`));
      break;
    }
    case "munmap": {
      const keep = Math.floor(pages / 2) * PAGE_SIZE;
      mm.munmap(addr + keep, size - keep);
      afterEvent("munmap", addr + keep, end);
      const got = new Uint8Array(size - keep);
      const ret = mirror.deviceRead(addr + keep, got);
      out.checks.push(check("device access to the unmapped part fails", ret === -HmmErrno.EFAULT, `hmm_range_fault on the unmapped range: ${ret === -HmmErrno.EFAULT ? "-EFAULT" : String(ret)}`));
      if (keep > 0) {
        const f = mirror.faults;
        deviceSees("the kept half still reads right", addr, data0.subarray(0, keep));
        const again = mirror.faults - f;
        out.checks.push(check("the kept half kept its translations", again === 0, again === 0 ? "no fault on the half munmap left alone" : `${again} device fault(s) on the kept half`));
      }
      break;
    }
    case "madvise": {
      mm.madvise(addr, size, MADV_DONTNEED);
      afterEvent("madvise(MADV_DONTNEED)", addr, end);
      const zeros = new Uint8Array(size);
      deviceSees("device sees zeros after MADV_DONTNEED", addr, zeros);
      out.checks.push(check("CPU sees zeros too", equal(mm.read(addr, size), zeros), "the private anonymous range reads as the zero page"));
      break;
    }
    case "fork": {
      const child = mm.fork();
      afterEvent("fork (COW write-protect)", addr, end);
      const data1 = rangePattern(size, seed * 7919 + 1);
      mm.write(addr, data1);
      deviceSees("device sees the parent's write after the COW break", addr, data1);
      out.checks.push(check("the child keeps the old bytes", equal(child.read(addr, size), data0), "the child's pages are the pre-fork copies"));
      out.checks.push(check("no stale translation after the COW break", stale(addr, end) === 0, "every device translation points at the parent's new pages"));
      child.exit();
      break;
    }
    case "migrate": {
      const peer = new DmirrorDevice(sys, { name: "hmm_dmirror1", devmemPhys: DEVMEM_PEER, devmemSize: DEVMEM_BYTES, ownerId: 0x10001 });
      const gpu = peer.open(mm);
      const cmd = hmmDmirrorCmd(addr, pages, new Uint8Array(size));
      const ret = gpu.migrateToDev(cmd);
      let priv = 0;
      for (let a = addr; a < end; a += PAGE_SIZE) if (mm.pteAt(a)?.kind === PteKind.DEVICE_PRIVATE) priv++;
      const moved = ret === 0 && cmd.cpages === pages && priv === pages && equal(cmd.ptr, data0);
      out.checks.push(check("migrated to device-private memory", moved, moved ? `${pages} page(s) in ${peer.name}'s memory, its copy identical` : `migrate returned ${ret}, ${cmd.cpages} page(s) migrated, ${priv} device-private PTE(s)`));
      afterEvent("migration to device-private memory", addr, end);
      deviceSees("device faults the pages back and sees the same bytes", addr, data0);
      let back = 0;
      for (let a = addr; a < end; a += PAGE_SIZE) if (mm.pteAt(a)?.kind === PteKind.PRESENT) back++;
      out.checks.push(check("back in system memory", back === pages, `${back} of ${pages} page(s) present in system memory after migrate_to_ram`));
      gpu.close();
      break;
    }
  }

  const subs = mm.subscriptions;
  const recs = mm.invalidations.records;
  const unquiesced = recs.filter((r) => r.tQuiesced === undefined).length;
  const hmmReports = kernel.debugReports().filter((r) => r.check.startsWith("hmm-")).length;
  const seqOk = (subs.invalidateSeq & 1) === 0 && subs.activeInvalidateRanges === 0 && unquiesced === 0 && hmmReports === 0;
  out.checks.push(
    check(
      "notifier sequence consistent",
      seqOk,
      seqOk
        ? `${recs.length} invalidation(s), each quiesced; no invalidation left open; no device PTE programmed without a passing read_retry`
        : `${unquiesced} invalidation(s) not quiesced, seq ${subs.invalidateSeq}, ${subs.activeInvalidateRanges} range(s) open, ${hmmReports} notifier report(s)`,
    ),
  );
  let quiesce = 0;
  for (const r of recs) quiesce = Math.max(quiesce, InvalidationLog.timeToQuiescence(r) ?? 0);
  out.metrics.invalidations = recs.length;
  out.metrics.maxQuiesceNs = quiesce;
  out.metrics.deviceFaults = mirror.faults;
  out.metrics.retries = mirror.retries;
  out.metrics.cpuFaults = sys.stats.minorFaults + sys.stats.majorFaults - faults0;
  out.metrics.bookkeepingBytesPerPage = mirror.bookkeepingBytes / pages;
  mirror.close();
  mm.exit();
  // Every page the process, the COW child and the device-private migration used is back with the allocator.
  const pagesHeld = sys.pagesInUse;
  out.checks.push(check("no page leaked", pagesHeld === 0, pagesHeld === 0 ? "after exit every page and device page went back to its allocator" : `${pagesHeld} page(s) still held after the process exited`));
  const r = finish(s, ctx, host, [w.device], before, out);
  const c = dev.ops === "iommu" && dev.domain?.type === "paging" ? countersCheck(variant, r, mirror.faults) : undefined;
  return c === undefined ? r : { ...r, ok: r.ok && c.ok, checks: [...r.checks, c] };
}

/**
 * What each way of mapping must cost behind a paging IOMMU domain: the pfn-list driver an IOVA, a PTE
 * write and an IOTLB sync per dma_map_page; hmm_dma_map one IOVA for the range and a PTE write and a
 * sync per link; the batched variant the same PTE writes but one sync per run of up to 64 links.
 */
function countersCheck(variant: Variant, r: RunResult, deviceFaults: number): Check {
  const c = r.counters;
  const pte = c.PteWrites ?? 0;
  const syncs = c.IotlbSyncMap ?? 0;
  const iovas = (c.IovaAllocCache ?? 0) + (c.IovaAllocTree ?? 0);
  const n = (v: number): string => v.toLocaleString("en-US");
  const detail = (what: string): string => `${n(iovas)} IOVA allocation(s), ${n(pte)} PTE write(s), ${n(syncs)} IOTLB sync(s) for ${what}`;
  if (variant === "pfn-list") {
    const maps = c.DmaMapCalls ?? 0;
    return check("counters add up", maps > 0 && iovas === maps && pte === maps && syncs === maps, detail(`${n(maps)} dma_map_page call(s): one of each per page`));
  }
  const links = c.DmaIovaLinks ?? 0;
  const allocs = c.DmaIovaTryAllocs ?? 0;
  if (variant === "hmm_dma_map") {
    return check("counters add up", links > 0 && allocs === 1 && iovas === 1 && pte === links && syncs === links, detail(`${n(links)} dma_iova_link(s): one IOVA for the range, a PTE write and a sync per link`));
  }
  const ok = links > 0 && allocs === 1 && iovas === 1 && pte === links && syncs * 64 >= links && syncs <= Math.ceil(links / 64) + deviceFaults;
  return check("counters add up", ok, detail(`${n(links)} dma_iova_link(s): one IOVA, a PTE write per link, a sync per run of up to 64`));
}
