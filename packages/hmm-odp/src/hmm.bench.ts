import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { bench, describe } from "vitest";
import { createDmaKernel } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { DmirrorDevice } from "./dmirror.js";
import { HmmRange, hmmRangeFault } from "./hmm.js";
import { MmSystem } from "./mm-system.js";
import { Mm } from "./mm.js";
import { MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalSetSeq } from "./notifier.js";
import { kPageTableBytes } from "./internal.js";

// Targets (dma-debug off): hmm_range_fault over present pages <= 30 ns/page; mm + pfn list + IO page
// table <= 32 B per 4 KiB page mirrored; fault-in + DMA-map of 1 M pages through dmirror, each page given
// a distinct pattern and checked by a 64-byte device read, <= 2 s. The 1 M-page case runs once and
// writes its phases (wall and CPU time) and the bytes per page to stdout.

// A full collection before each host-memory reading, so the figure is live data, not garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
function hostBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

function rig(ramBytes: number) {
  const platform = createPlatform({ memory: { ramBytes }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false, devices: { "0000:01:00.0": { dmaMaskBits: 48 } } });
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const mdev = new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: 64 * GiB, devmemSize: 4 * MiB, ownerId: 0x10000 });
  return { platform, kernel, dev: kernel.device("0000:01:00.0"), sys, mm, mdev };
}

describe("hmm_range_fault over present pages (4096 pages per call: ns/page = mean / 4096)", () => {
  const N = 4096;
  const { mm } = rig(1 * GiB);
  const sub = new MmuIntervalNotifier();
  mmuIntervalNotifierInsert(sub, mm, 0, 2 ** 47, {
    invalidate: (s, _r, seq) => {
      mmuIntervalSetSeq(s, seq);
      return true;
    },
  });
  const a = mm.mmap(N * PAGE_SIZE);
  mm.write(a, new Uint8Array(N * PAGE_SIZE).fill(1));
  const range = new HmmRange({ notifier: sub, start: a, end: a + N * PAGE_SIZE });
  const fault = hmmRangeFault;
  bench("hmm_range_fault, 4096 present pages, no fault requested", () => {
    range.notifierSeq = mmuIntervalReadBegin(sub);
    mm.mmapReadLock();
    fault(range);
    mm.mmapReadUnlock();
  }, { warmupTime: 1000, time: 1000 });
});

describe("1 M pages (4 GiB) through dmirror in DMA mode", () => {
  bench("fault-in + hmm_dma_map + 64-byte pattern write and device read check, per page", () => {
    const PAGES = 1 << 20;
    const { mm, mdev, dev } = rig(6 * GiB);
    const h0 = hostBytes();
    const a = mm.mmap(PAGES * PAGE_SIZE);
    const d = mdev.open(mm, { dev, start: a, size: PAGES * PAGE_SIZE });
    const cpu = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const ret = d.fault(a, a + PAGES * PAGE_SIZE, true);
    const t1 = performance.now();
    const c1 = process.cpuUsage(c0);
    // Measured: everything the process holds more after mmap + open + fault-in + map (V8 heap and
    // typed arrays), which includes the page descriptors, the IO page table's spare capacity and the IOTLB.
    const measured = (hostBytes() - h0) / PAGES;
    const c1b = process.cpuUsage(c0);
    const t1b = performance.now();
    const pat = new Uint8Array(64);
    const dv = new DataView(pat.buffer);
    for (let i = 0; i < PAGES; i++) {
      dv.setUint32(0, i);
      dv.setUint32(60, ~i);
      d.deviceWrite(a + i * PAGE_SIZE, pat);
    }
    const t2 = performance.now();
    const c2 = process.cpuUsage(c0);
    const writeCpu = cpu(c2) - cpu(c1b);
    const got = new Uint8Array(64);
    const gv = new DataView(got.buffer);
    let bad = 0;
    for (let i = 0; i < PAGES; i++) {
      d.deviceRead(a + i * PAGE_SIZE, got);
      if (gv.getUint32(0) !== i || gv.getUint32(60) !== (~i >>> 0)) bad++;
    }
    const t3 = performance.now();
    const c3 = process.cpuUsage(c0);
    const bytes = mm[kPageTableBytes] + (d.dma?.map.bookkeepingBytes ?? 0) + (dev.domain?.ptBytes ?? 0);
    process.stdout.write(
      `1M pages: ret ${ret}, bad ${bad}; fault-in+map ${(t1 - t0).toFixed(0)} ms wall / ${cpu(c1).toFixed(0)} ms cpu; ` +
        `pattern write ${(t2 - t1b).toFixed(0)} ms wall / ${writeCpu.toFixed(0)} ms cpu (${((c2.system - c1b.system) / 1000).toFixed(0)} ms system); ` +
        `64-byte read check ${(t3 - t2).toFixed(0)} ms wall / ${(cpu(c3) - cpu(c2)).toFixed(0)} ms cpu; ` +
        `total ${(cpu(c1) + writeCpu + cpu(c3) - cpu(c2)).toFixed(0)} ms cpu; ` +
        `host bytes per page: mm + pfn list + IO page table ${(bytes / PAGES).toFixed(1)}, measured growth ${measured.toFixed(1)}\n`,
    );
  }, { iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
});
