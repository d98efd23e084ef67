import type { DmaDevice } from "@dmasim/dma";
import { Counter, DmaBufCounter, DmaBufImporter, DmaBufSystem, GpuVramExporter, VfioPciCoreDevice, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { MiB, physAddr } from "@dmasim/memory";
import type { CounterSnapshot } from "@dmasim/trace";
import type { DmabufWorkload, Scenario } from "../types.js";
import type { Host, RunContext } from "./context.js";
import { equal, finish, pattern } from "./finish.js";
import type { Outcome } from "./finish.js";
import { runDmabufNvme } from "./dmabuf-nvme.js";
import { createHost, setUp } from "./host.js";
import { mapTypeName } from "./p2p.js";
import { check } from "./result.js";
import type { RunResult } from "./result.js";

const n = (v: number): string => v.toLocaleString("en-US");

/** What the importer's mapping cost: counters between two snapshots. */
interface MapCost {
  readonly iovaAllocs: number;
  readonly pteWrites: number;
  readonly iotlbSyncs: number;
  readonly iotlbInvalidations: number;
  /** The DMA layer's counters priced by the cost profile. */
  readonly modelledNs: number;
}

function mapCost(host: Host, since: CounterSnapshot): MapCost {
  const d = host.platform.trace.counters.snapshot().diff(since);
  return {
    iovaAllocs: d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree),
    pteWrites: d.get(Counter.PteWrites),
    iotlbSyncs: d.get(Counter.IotlbSyncMap),
    iotlbInvalidations: d.get(Counter.IotlbInvalRange) + d.get(Counter.IotlbInvalDomain) + d.get(Counter.IotlbInvalGlobal),
    modelledNs: host.kernel.costs(since).totalNs,
  };
}

/** Bytes of mapping metadata the importer holds for the buffer: the sg_table, or the range list and its own IOVA state. */
function metadataBytes(imp: DmaBufImporter): number {
  const m = imp.deviceMapping;
  if (m === undefined) return 0;
  return m.bookkeepingBytes + (imp.physList?.metadataBytes ?? 0);
}

/** What a flow needs: the importer, the buffer, and how to read the buffer's bytes as the exporter holds them. */
interface Rig {
  readonly host: Host;
  readonly sys: DmaBufSystem;
  readonly dev: DmaDevice;
  readonly out: Outcome;
  /** The importer device reads the whole buffer; the check compares with what the exporter holds. */
  readonly importerSees: (imp: DmaBufImporter, when: string, want: Uint8Array) => void;
}

/**
 * A dma-buf shared between an exporter and a dynamic importer in umem_dmabuf's shape
 * (@dmasim/dmabuf's DmaBufImporter: maps on access, waits for KERNEL fences, unmaps in its
 * invalidate_mappings callback). classic maps the exporter's sg_table (dma_buf_map_attachment); two-step
 * maps the physical-range list itself with the dma_iova_* API. Every run checks that each byte the
 * importer's device reads is the buffer's, that the dma-buf rule checker found nothing, and that no
 * buffer, attachment or mapping is left once the importer detached and the buffer was put.
 */
export function runDmabuf(s: Scenario, w: DmabufWorkload, ctx: RunContext): RunResult {
  if (w.flow.startsWith("nvme-")) return runDmabufNvme(s, w, ctx);
  const host = createHost(s, ctx);
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const dev = setUp(`workload.device of scenario "${s.name}"`, () => host.kernel.device(w.device));
  // "collect": a finding becomes a failed check instead of ending the run.
  const sys = new DmaBufSystem(host.kernel, { debug: "collect" });
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  const importerSees = (imp: DmaBufImporter, when: string, want: Uint8Array): void => {
    const got = imp.read(0, want.length);
    const ok = got instanceof Uint8Array && equal(got, want);
    out.checks.push(check(`importer read the buffer's bytes ${when}`, ok, typeof got === "number" ? `the read returned ${got}` : ok ? `${n(want.length)} bytes identical` : "the bytes differ"));
  };
  const rig: Rig = { host, sys, dev, out, importerSees };
  const before = host.platform.trace.counters.snapshot();
  const dmabufBefore = host.platform.trace.counters.snapshot();
  const mapping = ctx.api === "classic" ? "sgt" : "phys";
  out.mapped.push(
    mapping === "sgt"
      ? `importer ${w.device}: dma_buf_map_attachment, the exporter's sg_table (dma_buf_phys_vec_to_sgt: bus addresses, or one IOVA with a link per range)`
      : `importer ${w.device}: the physical-range list (a P2P bit per range, one provider), mapped by the importer (dmaBufPhysListDmaMap: its own IOVA, a link per range, one sync)`,
  );
  const buffers = w.flow === "vfio-revoke" ? vfioRevoke(s, w, rig, mapping) : gpuFlow(s, w, rig, mapping);
  for (const b of buffers) dmaBufPut(b);

  const reports = sys.debug.reports();
  out.checks.push(check("dma-buf rules clean", reports.length === 0, reports.length === 0 ? "no finding of the dma-buf rule checker" : reports.map((r) => `${r.check}: ${r.message}`).slice(0, 3).join("; ")));
  const leaks = sys.leaks();
  const leaked = leaks.buffers + leaks.attachments + leaks.mappings;
  out.checks.push(
    check("no dma-buf leaked", leaked === 0, leaked === 0 ? "every buffer released, every attachment detached" : `${leaks.buffers} buffer(s), ${leaks.attachments} attachment(s), ${leaks.mappings} mapping(s) still held`),
  );
  const dbc = sys.costs(dmabufBefore).counters;
  out.metrics.invalidations = dbc.DmaBufInvalidations ?? 0;
  out.metrics.fenceWaitNs = dbc.DmaBufFenceWaitNs ?? 0;
  out.metrics.migratedBytes = dbc.DmaBufMigratedBytes ?? 0;
  out.metrics.revokes = dbc.DmaBufRevokes ?? 0;
  return finish(s, ctx, host, [w.device], before, out);
}

/** The GPU flows: p2p, migrate, mixed-remap. Returns the buffers to put. */
function gpuFlow(s: Scenario, w: DmabufWorkload, rig: Rig, mapping: "sgt" | "phys"): DmaBuf[] {
  const { host, sys, dev, out, importerSees } = rig;
  const bytes = w.bytes ?? 4 * MiB;
  const blockBytes = w.blockBytes ?? MiB;
  const gpu = setUp(`workload.exporter of scenario "${s.name}"`, () => new GpuVramExporter(sys, { bdf: w.exporter, blockBytes }));
  const route = mapTypeName(host.platform.pciP2pdmaMapType(gpu.provider, w.device));
  out.mapped.push(`GPU ${w.exporter}: ${n(bytes / MiB)} MiB buffer in ${n(blockBytes / MiB)} MiB blocks of VRAM (BAR 0, a p2pdma provider); pci_p2pdma_map_type to the importer → ${route}`);
  if (s.expect?.mapType !== undefined) out.checks.push(check("P2P route", route === s.expect.mapType, `pci_p2pdma_map_type is ${route}, expected ${s.expect.mapType}`));
  const buf = gpu.allocate(bytes);
  gpu.cpuWrite(buf, 0, pattern(bytes, s.seed ?? 1));
  const imp = DmaBufImporter.attach(buf, dev, { mapping });
  if (typeof imp === "number") {
    out.checks.push(check("importer attached", false, `dma_buf_dynamic_attach returned ${imp}`));
    return [buf];
  }
  const holds = (): Uint8Array => gpu.cpuRead(buf, 0, bytes);
  const blocks = gpu.placement(buf).length;
  switch (w.flow) {
    case "p2p": {
      importerSees(imp, "from VRAM", holds());
      const data = pattern(bytes / 2, (s.seed ?? 1) + 1);
      const wr = imp.write(bytes / 4, data);
      const landed = wr === 0 && equal(gpu.cpuRead(buf, bytes / 4, data.length), data);
      out.checks.push(check("importer's write landed in VRAM", landed, wr !== 0 ? `the write returned ${wr}` : landed ? `${n(data.length)} bytes read back by the GPU` : "the GPU reads other bytes"));
      break;
    }
    case "migrate": {
      importerSees(imp, "from VRAM", holds());
      const want = holds();
      const waits0 = sys.trace.counters.get(DmaBufCounter.DmaBufFenceWaits);
      const maps0 = imp.maps;
      const r = gpu.migrate(buf, "ram");
      const moved = r === blocks && gpu.placement(buf).every((v) => !v) && !imp.isMapped;
      out.checks.push(check("moved to RAM, importer invalidated", moved, `${r} of ${blocks} block(s) moved; ${imp.invalidations} invalidation(s); importer ${imp.isMapped ? "still mapped" : "unmapped in its callback"}`));
      importerSees(imp, "after the move to RAM", want);
      const waited = sys.trace.counters.get(DmaBufCounter.DmaBufFenceWaits) - waits0;
      out.checks.push(check("rebind waited for the copy's fence", imp.maps === maps0 + 1 && waited > 0, `${imp.maps - maps0} rebind(s), ${waited} KERNEL fence wait(s) before the device touched the new pages`));
      const back = gpu.migrate(buf, "vram");
      out.checks.push(check("moved back to VRAM", back === blocks && gpu.placement(buf).every((v) => v), `${back} of ${blocks} block(s) moved back`));
      importerSees(imp, "after the move back to VRAM", want);
      out.metrics.rebinds = imp.maps - maps0;
      break;
    }
    case "mixed-remap": {
      // Every other block in RAM: a buffer that holds P2P and RAM ranges at once.
      const odd = Array.from({ length: Math.floor(blocks / 2) }, (_, i) => 2 * i + 1);
      gpu.migrate(buf, "ram", odd);
      const want = holds();
      let since = host.platform.trace.counters.snapshot();
      importerSees(imp, "of a VRAM/RAM mix", want);
      const first = mapCost(host, since);
      out.metrics.metadataBytes = metadataBytes(imp);
      out.metrics.mapIovaAllocs = first.iovaAllocs;
      out.metrics.mapPteWrites = first.pteWrites;
      out.metrics.mapIotlbSyncs = first.iotlbSyncs;
      since = host.platform.trace.counters.snapshot();
      gpu.migrate(buf, "ram", [0]);
      importerSees(imp, "after one block moved", want);
      const again = mapCost(host, since);
      out.metrics.remapIovaAllocs = again.iovaAllocs;
      out.metrics.remapPteWrites = again.pteWrites;
      out.metrics.remapIotlbSyncs = again.iotlbSyncs;
      out.metrics.remapIotlbInvalidations = again.iotlbInvalidations;
      out.metrics.remapModelledNs = again.modelledNs;
      out.mapped.push(
        `${n(blocks)} blocks, every other one in RAM: map ${n(first.iovaAllocs)} IOVA allocation(s), ${n(first.pteWrites)} PTE write(s), ${n(first.iotlbSyncs)} IOTLB sync(s), ${n(out.metrics.metadataBytes)} metadata bytes; after one block moved, remap (unmap and map) ${n(again.iovaAllocs)} IOVA allocation(s), ${n(again.pteWrites)} PTE write(s), ${n(again.iotlbSyncs)} sync(s), ${n(again.iotlbInvalidations)} IOTLB invalidation(s), ${n(Math.round(again.modelledNs))} ns modelled`,
      );
      break;
    }
    case "vfio-revoke":
      break;
  }
  imp.close();
  gpu.reap();
  return [buf];
}

/**
 * VFIO exports two ranges of a device's BAR 0 (VFIO_DEVICE_FEATURE_DMA_BUF); the importer reads them;
 * a memory disable revokes (the importer unmaps in its callback, the disable completes, a map gets
 * -ENODEV); re-enabling lets it map and read again; closing the device revokes for good.
 */
function vfioRevoke(s: Scenario, w: DmabufWorkload, rig: Rig, mapping: "sgt" | "phys"): DmaBuf[] {
  const { host, sys, dev, out, importerSees } = rig;
  const bytes = w.bytes ?? 4 * MiB;
  const vdev = setUp(`workload.exporter of scenario "${s.name}"`, () => new VfioPciCoreDevice(sys, w.exporter));
  const bar = host.platform.endpoint(w.exporter).bars.find((b) => b.index === 0);
  if (bar === undefined || bar.size < 2 * bytes) {
    out.checks.push(check("VFIO export", false, `${w.exporter} has no BAR 0 of at least ${n(2 * bytes)} bytes (two ranges of the buffer's size, a gap between)`));
    return [];
  }
  // Two ranges with a gap: the second half of the buffer comes from further into the BAR.
  const half = bytes / 2;
  const data = pattern(bytes, s.seed ?? 1);
  host.platform.memory.write(bar.phys, data.subarray(0, half));
  host.platform.memory.write(physAddr(bar.phys + bytes + half), data.subarray(half));
  const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: half }, { offset: bytes + half, length: half }] });
  if (typeof buf === "number") {
    out.checks.push(check("VFIO export", false, `VFIO_DEVICE_FEATURE_DMA_BUF returned ${buf}`));
    return [];
  }
  out.mapped.push(`VFIO ${w.exporter}: a dma-buf of two ${n(half / 1024)} KiB ranges of BAR 0; importers must be P2P-capable and revocable`);
  const imp = DmaBufImporter.attach(buf, dev, { mapping });
  if (typeof imp === "number") {
    out.checks.push(check("importer attached", false, `dma_buf_dynamic_attach returned ${imp}`));
    return [buf];
  }
  importerSees(imp, "before the revoke", data);
  const r = vdev.setMemoryEnable(false);
  const revoked = r.done && !vdev.memoryEnabled && !imp.isMapped;
  out.checks.push(check("memory disable revoked the buffer", revoked, `revoke ${r.done ? "done" : `waiting for ${r.waitingFor} mapping(s)`}; importer ${imp.isMapped ? "still mapped" : "unmapped in its callback"}`));
  const refused = imp.read(0, 8);
  out.checks.push(check("no access while revoked", typeof refused === "number", typeof refused === "number" ? `the importer's map returned ${refused}` : "the importer read a revoked buffer"));
  vdev.setMemoryEnable(true);
  importerSees(imp, "after memory was enabled again", data);
  const c = vdev.close();
  out.checks.push(check("close revoked for good", c.done && !imp.isMapped && typeof imp.read(0, 8) === "number", `close ${c.done ? "done" : `waiting for ${c.waitingFor}`}; a later map is refused`));
  imp.close();
  return [buf];
}
