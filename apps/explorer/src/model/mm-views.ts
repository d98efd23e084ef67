import { field, num, str, type LogEvent } from "./events.js";

/** One page of an hmm_dma_map state: its index in the mirrored range, the pfn and DMA address it had. */
export interface HmmPage {
  readonly device: string;
  readonly index: number;
  pfn: number;
  /** The DMA address (an IOVA, or a bus address for a peer page) hmm_dma_map_pfn returned. */
  addr: number;
  /** Still mapped at the step (no hmm_dma_unmap_pfn since). */
  mapped: boolean;
  /** Event index of the last map or unmap of the page. */
  last: number;
}

/** One mmu notifier invalidation and the pages the driver unmapped in answer to it. */
export interface HmmInvalidation {
  readonly index: number;
  readonly start: number;
  readonly end: number;
  readonly event: string;
  /**
   * What the subscribers took down in answer (between the previous HMM event and the invalidation's,
   * which is emitted when they returned): `device:index` of each page hmm_dma_unmap_pfn unmapped, and
   * `IOVA 0x…+size` of each IOMMU unmap (a driver that maps page by page reports only those).
   */
  readonly removed: string[];
}

/** What the HMM/ODP events up to a step say: each page's chain and each invalidation's effect. */
export interface HmmView {
  readonly pages: HmmPage[];
  readonly faults: { readonly index: number; readonly start: number; readonly end: number; readonly result: number }[];
  readonly invalidations: HmmInvalidation[];
}

/**
 * The per-page chain of hmm_range_fault → hmm_dma_map_pfn (pfn → DMA address) → hmm_dma_unmap_pfn, and
 * what each mmu notifier invalidation removed, from the events before `step`. `indices` are the indices
 * of the run's HMM events (the view never scans the whole log).
 */
export function hmmView(events: readonly LogEvent[], indices: readonly number[], step: number): HmmView {
  const pages = new Map<string, HmmPage>();
  const faults: HmmView["faults"] = [];
  const invalidations: HmmInvalidation[] = [];
  // Index of the last HMM event other than a page unmap (an invalidation's unmaps come after it).
  let prevHmm = -1;
  for (const i of indices) {
    if (i >= step) break;
    const e = events[i];
    if (e === undefined) continue;
    const device = str(e, "device") ?? "";
    const index = num(e, "index") ?? -1;
    switch (e.type) {
      case "hmm.range-fault":
        faults.push({ index: i, start: num(e, "start") ?? 0, end: num(e, "end") ?? 0, result: num(e, "result") ?? 0 });
        break;
      case "mmu-notifier.invalidate": {
        // The notifier's event is emitted once its subscribers returned: what they unmapped (pages by
        // hmm_dma_unmap_pfn, IOMMU ranges) lies between the previous HMM event and this one.
        const removed: string[] = [];
        for (let j = prevHmm + 1; j < i; j++) {
          const u = events[j];
          if (u?.type === "iommu.unmap") removed.push(`IOVA 0x${(num(u, "iova") ?? 0).toString(16)}+${num(u, "unmapped") ?? num(u, "size") ?? 0}`);
          else if (u?.type === "hmm.dma-unmap-pfn") removed.push(`${str(u, "device") ?? ""}:${num(u, "index") ?? -1}`);
        }
        invalidations.push({ index: i, start: num(e, "start") ?? 0, end: num(e, "end") ?? 0, event: str(e, "event") ?? "", removed });
        break;
      }
      case "hmm.dma-map-pfn":
        pages.set(`${device}:${index}`, { device, index, pfn: num(e, "pfn") ?? 0, addr: num(e, "addr") ?? 0, mapped: true, last: i });
        break;
      case "hmm.dma-unmap-pfn": {
        const p = pages.get(`${device}:${index}`);
        if (p !== undefined) {
          p.mapped = false;
          p.last = i;
        }
        break;
      }
      default:
        break;
    }
    if (e.type !== "hmm.dma-unmap-pfn") prevHmm = i;
  }
  return { pages: [...pages.values()].sort((a, b) => a.device.localeCompare(b.device) || a.index - b.index), faults, invalidations };
}

/** A dma-buf at a step: where it lives and who maps it. */
export interface DmaBufView {
  readonly buf: number;
  readonly exporter: string;
  /** "vram", "ram", or "mixed" while only some blocks are in VRAM; "?" before any move was seen. */
  placement: string;
  /** Blocks in VRAM and in all, from the last move. */
  inVram: number;
  totalBlocks: number;
  moves: number;
  invalidations: number;
  revoked: boolean;
  /** Each importer's mapping: device → kind ("sgt" or "phys") and size, or undefined once unmapped. */
  readonly importers: Map<string, { kind: string; size: number; mapped: boolean }>;
}

/** Every dma-buf's placement over time and each importer's mapping, from the events before `step`. */
export function dmabufView(events: readonly LogEvent[], indices: readonly number[], step: number): DmaBufView[] {
  const bufs = new Map<number, DmaBufView>();
  for (const i of indices) {
    if (i >= step) break;
    const e = events[i];
    if (!e?.type.startsWith("dmabuf.")) continue;
    const id = num(e, "buf") ?? -1;
    let b = bufs.get(id);
    if (b === undefined) {
      b = { buf: id, exporter: str(e, "exporter") ?? "?", placement: "?", inVram: 0, totalBlocks: 0, moves: 0, invalidations: 0, revoked: false, importers: new Map() };
      bufs.set(id, b);
    }
    switch (e.type) {
      case "dmabuf.map":
        b.importers.set(str(e, "device") ?? "?", { kind: str(e, "kind") ?? "?", size: num(e, "size") ?? 0, mapped: true });
        break;
      case "dmabuf.unmap": {
        const m = b.importers.get(str(e, "device") ?? "?");
        if (m !== undefined) m.mapped = false;
        break;
      }
      case "dmabuf.move": {
        b.moves++;
        b.inVram = num(e, "inVram") ?? 0;
        b.totalBlocks = num(e, "totalBlocks") ?? 0;
        b.placement = b.inVram === 0 ? "ram" : b.inVram === b.totalBlocks ? "vram" : "mixed";
        break;
      }
      case "dmabuf.invalidate":
        b.invalidations++;
        break;
      case "dmabuf.revoke":
        b.revoked = field(e, "revoked") === true;
        break;
      default:
        break;
    }
  }
  return [...bufs.values()];
}
