import { createDmaKernel, Counter, DMA_ATTR_MMIO, DMA_MAPPING_ERROR, DmaDirection, dmaMapPhys, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { CounterSnapshot } from "@dmasim/trace";
import { SG_ENTRY_BYTES, SgTable, dmaMapSgtable, dmaUnmapSgtable, sgAllocTableFromPages, sgFreeTable } from "@dmasim/scatterlist";
import { GpuVramExporter } from "./exporters/gpu-vram.js";
import { freeSgtFromRanges, sgtFromRanges } from "./exporters/sg-from-ranges.js";
import { dmaBufDynamicAttach } from "./dma-buf.js";
import type { DmaBufAttachment } from "./dma-buf.js";
import { DmaBufPhysList, dmaBufPhysListDmaFree, dmaBufPhysListDmaMap, dmaBufPhysListDmaUnlink, dmaBufPhysListDmaUnmap } from "./phys-list.js";
import type { DmaBufPhysListDma } from "./phys-list.js";
import { DmaBufSystem } from "./system.js";

/** One way of handing a dma-buf to an importer, measured. */
export interface DmaBufMappingComparisonRow {
  /** The mapping path measured. */
  readonly path: string;
  /** Bytes of mapping metadata per buffer (sg_table entries, or the range list + the importer's state). */
  readonly metadataBytes: number;
  /** IOVA allocations of the first map. */
  readonly iovaAllocations: number;
  /** IOMMU page-table entries written by the first map. */
  readonly pteWrites: number;
  /** IOTLB syncs of the first map. */
  readonly iotlbSyncs: number;
  /** After one block moved: the unmap and the new map. */
  readonly remapPteWrites: number;
  /** IOTLB syncs of the unmap and re-map. */
  readonly remapIotlbSyncs: number;
  /** IOVA allocations of the re-map. */
  readonly remapIovaAllocations: number;
  /** IOTLB invalidations of the unmap and re-map. */
  readonly remapIotlbInvalidations: number;
}

type Path = "sg_table, upstream exporter style" | "sg_table, one IOVA (dmasim exporter)" | "physical-range list, importer maps";

/** A mapping made by one path, and how to undo it. */
interface Made {
  readonly metadataBytes: number;
  /** `final`: the last undo (a kept IOVA is given back too). */
  undo(final?: boolean): void;
}

/**
 * amdgpu's way for a buffer that mixes VRAM and GTT: dma_map_resource (dma_map_phys with DMA_ATTR_MMIO
 * since 6.18) per VRAM range — an IOVA, its PTEs and a sync each — and dma_map_sgtable over the RAM pages; the segments go into one more sg_table.
 */
function upstreamStyle(dev: DmaDevice, list: DmaBufPhysList): Made {
  const dir = DmaDirection.BIDIRECTIONAL;
  const res: { addr: number; len: number }[] = [];
  const pfns: number[] = [];
  for (let i = 0; i < list.nrRanges; i++) {
    const phys = list.phys[i] ?? 0;
    const len = list.len[i] ?? 0;
    if (list.isP2p(i)) {
      const a = dmaMapPhys(dev, unsafePhysAddr(phys), len, dir, DMA_ATTR_MMIO);
      if (a === DMA_MAPPING_ERROR) throw new Error("dma_map_phys failed");
      res.push({ addr: a, len });
    } else {
      for (let p = 0; p < len; p += PAGE_SIZE) pfns.push((phys + p) / PAGE_SIZE);
    }
  }
  const trace = dev.kernel.trace;
  let ram: SgTable | undefined;
  if (pfns.length > 0) {
    ram = sgAllocTableFromPages(trace, pfns, pfns.length, 0, pfns.length * PAGE_SIZE);
    if (dmaMapSgtable(dev, ram, dir) < 0) throw new Error("dma_map_sgtable failed");
  }
  const outEntries = res.length + (ram?.nents ?? 0);
  return {
    metadataBytes: (ram?.bookkeepingBytes ?? 0) + outEntries * SG_ENTRY_BYTES,
    undo: () => {
      for (const r of res) dmaUnmapPhys(dev, unsafeDmaAddr(r.addr), r.len, dir, DMA_ATTR_MMIO);
      if (ram !== undefined) {
        dmaUnmapSgtable(dev, ram, dir);
        sgFreeTable(ram);
      }
    },
  };
}

function oneIova(attach: DmaBufAttachment, list: DmaBufPhysList): Made {
  const maps = new WeakMap<SgTable, DmaBufPhysListDma>();
  const sgt = sgtFromRanges(attach, list, DmaDirection.BIDIRECTIONAL, maps);
  if (typeof sgt === "number") throw new Error(`map: ${sgt}`);
  const m = maps.get(sgt);
  return {
    metadataBytes: sgt.bookkeepingBytes + (m?.bookkeepingBytes ?? 0),
    undo: () => {
      freeSgtFromRanges(sgt, maps);
    },
  };
}

/** The importer maps the list itself; after a move it unlinks, keeps its IOVA and relinks into it. */
function physList(dev: DmaDevice, list: DmaBufPhysList, kept: { m?: DmaBufPhysListDma }): Made {
  const m = dmaBufPhysListDmaMap(dev, list, DmaDirection.BIDIRECTIONAL, kept.m);
  if (typeof m === "number") throw new Error(`map: ${m}`);
  delete kept.m;
  return {
    metadataBytes: list.metadataBytes + m.bookkeepingBytes,
    undo: (final = false) => {
      if (final) {
        dmaBufPhysListDmaUnmap(m);
        return;
      }
      dmaBufPhysListDmaUnlink(m);
      kept.m = m;
    },
  };
}

/**
 * Maps one GPU buffer that holds a mix of VRAM and RAM (every other block moved to RAM) for an importer
 * that reaches VRAM through the host bridge, by each path; then moves one block and maps again.
 * `bufferBytes` in 2 MiB blocks.
 */
export function dmaBufMappingComparison(bufferBytes = 64 * MiB): DmaBufMappingComparisonRow[] {
  const paths: Path[] = ["sg_table, upstream exporter style", "sg_table, one IOVA (dmasim exporter)", "physical-range list, importer maps"];
  return paths.map((path) => {
    const platform = createPlatform({
      memory: { ramBytes: 2 * GiB },
      iommu: {},
      hostBridges: [{ id: "hb0", p2p: "any" }],
      rootPorts: [{ id: "rp0" }, { id: "rp1" }],
      endpoints: [
        { bdf: "0000:01:00.0", parent: "rp0" },
        { bdf: "0000:02:00.0", parent: "rp1", bars: [{ size: 2 * bufferBytes }] },
      ],
    });
    const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false, devices: { "0000:01:00.0": { dmaMaskBits: 48 } } });
    const sys = new DmaBufSystem(kernel, { debug: "off" });
    const gpu = new GpuVramExporter(sys, { bdf: "0000:02:00.0", blockBytes: 2 * MiB });
    const buf = gpu.allocate(bufferBytes);
    const blocks = bufferBytes / (2 * MiB);
    gpu.migrate(buf, "ram", Array.from({ length: blocks / 2 }, (_, i) => 2 * i + 1));
    const dev = kernel.device("0000:01:00.0");
    const attach = dmaBufDynamicAttach(buf, dev, { allowPeer2peer: true, invalidateMappings: () => undefined });
    if (typeof attach === "number") throw new Error(`attach: ${attach}`);
    const kept: { m?: DmaBufPhysListDma } = {};
    const make = (): Made => {
      const list = gpu.currentList(buf);
      return path === "sg_table, upstream exporter style" ? upstreamStyle(dev, list) : path === "sg_table, one IOVA (dmasim exporter)" ? oneIova(attach, list) : physList(dev, list, kept);
    };
    const snap = (): CounterSnapshot => platform.trace.counters.snapshot();
    const allocs = (d: CounterSnapshot) => d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree);
    let before = snap();
    const made = make();
    const d1 = snap().diff(before);
    gpu.migrate(buf, "ram", [0]);
    before = snap();
    made.undo();
    const again = make();
    const d2 = snap().diff(before);
    again.undo(true);
    if (kept.m !== undefined) dmaBufPhysListDmaFree(kept.m);
    return {
      path,
      metadataBytes: made.metadataBytes,
      iovaAllocations: allocs(d1),
      pteWrites: d1.get(Counter.PteWrites),
      iotlbSyncs: d1.get(Counter.IotlbSyncMap),
      remapPteWrites: d2.get(Counter.PteWrites),
      remapIotlbSyncs: d2.get(Counter.IotlbSyncMap),
      remapIovaAllocations: allocs(d2),
      remapIotlbInvalidations: d2.get(Counter.IotlbInvalRange) + d2.get(Counter.IotlbInvalDomain) + d2.get(Counter.IotlbInvalGlobal),
    };
  });
}

/** The comparison as a markdown table. */
export function dmaBufMappingComparisonTable(bufferBytes = 64 * MiB): string {
  const lines = [
    "| path | metadata bytes | IOVA allocs | PTE writes | IOTLB syncs | remap: IOVA allocs | remap: PTE writes | remap: IOTLB syncs | remap: IOTLB invalidations |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of dmaBufMappingComparison(bufferBytes)) {
    lines.push(`| ${r.path} | ${r.metadataBytes} | ${r.iovaAllocations} | ${r.pteWrites} | ${r.iotlbSyncs} | ${r.remapIovaAllocations} | ${r.remapPteWrites} | ${r.remapIotlbSyncs} | ${r.remapIotlbInvalidations} |`);
  }
  return lines.join("\n");
}
