import { PAGE_SIZE, type PhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import type { Iova } from "@dmasim/iommu";
import { Counter } from "@dmasim/dma";
import type { DmaAddr, DmaDevice, DmaDirection, DmaIovaState } from "@dmasim/dma";
import { SG_ENTRY_BYTES, SG_MAX_NENTS, SG_MAX_SINGLE_ALLOC, SgDmaFlag } from "./constants.js";
import { ScatterlistBusyError, ScatterlistError, ScatterlistNoMemError, checkCount } from "./errors.js";
import { kMarkFreed } from "./internal.js";

/** Which mapping path produced a table's DMA side (see README "Paths"). */
export type SgMapPath = "two-step" | "classic" | "swiotlb" | "direct";

/**
 * What a mapped table remembers so it can be unmapped, one shape per mapping path (`path` tells which).
 * Upstream derives everything from the DMA fields of the list; the two-step path also needs its
 * dma_iova_state(s), which a two-step sg_table has to keep somewhere (counted as bookkeeping, 16 bytes
 * each), and the classic path its single IOVA.
 */
export type SgMapping = SgMappingTwoStep | SgMappingClassic | SgMappingPerSegment;

/** What every mapping records: the device, what dma_map_sg was given, and what it returned. */
interface SgMappingCommon {
  /** The device the table is mapped for (dma_map_sg's dev). */
  readonly dev: DmaDevice;
  /** nents passed to dma_map_sg, and what it returned. */
  readonly nents: number;
  /** What dma_map_sg returned: the number of DMA segments in use. */
  readonly mappedEnts: number;
  /** The direction given to dma_map_sg; the unmap must pass the same. */
  readonly dir: DmaDirection;
}

/** The two-step path: one state per IOVA chunk and the bytes linked in it. */
export interface SgMappingTwoStep extends SgMappingCommon {
  /** Mapped with dma_iova_try_alloc + dma_iova_link, one IOVA range per chunk. */
  readonly path: "two-step";
  /** The dma_iova_state of each IOVA chunk, in entry order. */
  readonly states: readonly DmaIovaState[];
  /** Bytes linked into each state (same index), for dma_iova_destroy. */
  readonly stateLens: readonly number[];
}

/** Upstream's iommu_dma_map_sg: the single IOVA and its length. */
export interface SgMappingClassic extends SgMappingCommon {
  /** Mapped by iommu_dma_map_sg: one IOVA range for the whole list. */
  readonly path: "classic";
  /** Start of the single IOVA range. */
  readonly iova: Iova;
  /** Length in bytes of the IOVA range iommu_dma_map_sg allocated. */
  readonly iovaLen: number;
}

/** dma-direct or swiotlb: each entry mapped on its own; the DMA fields say it all. */
export interface SgMappingPerSegment extends SgMappingCommon {
  /** dma-direct (bus address = physical) or swiotlb bounce buffers. */
  readonly path: "direct" | "swiotlb";
}

/** Entries taken by chain links when a table of `nents` entries is built from page-sized chunks. */
export function sgChainEntries(nents: number): number {
  return nents <= SG_MAX_SINGLE_ALLOC ? 0 : Math.ceil((nents - SG_MAX_SINGLE_ALLOC) / (SG_MAX_SINGLE_ALLOC - 1));
}

/**
 * struct sg_table with its scatterlist, one column per field (a table of 4096 entries is six typed arrays,
 * not 4096 objects). Entry `i` describes CPU memory [phys[i], phys[i] + length[i]); after mapping, the
 * first `nents` entries also carry the DMA segments the device uses (dmaAddress, dmaLength), which are
 * fewer than the CPU entries when the IOMMU merged some.
 */
export class SgTable {
  /** orig_nents: CPU entries. */
  readonly origNents: number;
  /** nents: DMA segments after dmaMapSgtable; equal to origNents until then. */
  nents: number;
  /** sg_phys(sg) = page_to_phys(sg_page(sg)) + sg->offset. */
  readonly phys: Float64Array;
  /** sg->length: bytes of CPU memory in each entry. */
  readonly length: Float64Array;
  /** sg_dma_address: where the device reaches each DMA segment. */
  readonly dmaAddress: Float64Array;
  /** sg_dma_len: bytes in each DMA segment. */
  readonly dmaLength: Float64Array;
  /** SgDmaFlag bits. */
  readonly flags: Uint8Array;
  /** Bytes of struct scatterlist this table costs, chain links included. */
  readonly bookkeepingBytes: number;
  /** The platform's trace, which counts the table's bookkeeping bytes. */
  readonly trace: Trace;
  #freed = false;
  /** How the table is mapped, undefined while it is not: set by the mapping functions, for reading. */
  mapping: SgMapping | undefined = undefined;

  /** Package-private (keyed by a symbol `.` does not export): marks the table freed, sg_free_table's one write of the flag. */
  [kMarkFreed](): void {
    this.#freed = true;
  }

  /**
   * A table of `nents` zeroed entries counted on `trace`. Unchecked: make tables with sgAllocTable or
   * sgAllocTableFromPages, which check their arguments first.
   */
  constructor(trace: Trace, nents: number) {
    this.trace = trace;
    this.origNents = nents;
    this.nents = nents;
    this.phys = new Float64Array(nents);
    this.length = new Float64Array(nents);
    this.dmaAddress = new Float64Array(nents);
    this.dmaLength = new Float64Array(nents);
    this.flags = new Uint8Array(nents);
    this.bookkeepingBytes = (nents + sgChainEntries(nents)) * SG_ENTRY_BYTES;
    trace.counters.add(Counter.DmaBookkeepingBytesAllocated, this.bookkeepingBytes);
  }

  /** True once sgFreeTable has released the table; any later use is refused. */
  get freed(): boolean {
    return this.#freed;
  }

  /** True while dmaMapSg/dmaMapSgtable has mapped it and no unmap has followed. */
  get mapped(): boolean {
    return this.mapping !== undefined;
  }
}

/** Throws unless `table` is still usable (sgFreeTable has not released it). */
export function checkSgTableUsable(fn: string, table: SgTable): void {
  if (table.freed) throw new ScatterlistError("EINVAL", fn, "table", "a freed sg_table", "a table that sgFreeTable has not released");
}

/** Throws unless `i` is an entry index of `table`. */
function checkSgIndex(fn: string, table: SgTable, i: number): void {
  if (!Number.isSafeInteger(i) || i < 0 || i >= table.origNents) {
    throw new ScatterlistError("EINVAL", fn, "index", i, `an entry index from 0 to ${table.origNents - 1}`);
  }
}

/** The DMA fields of `table` back to their unmapped state (zeros, no flags, nents = orig_nents). */
export function sgClearDma(table: SgTable): void {
  table.dmaAddress.fill(0);
  table.dmaLength.fill(0);
  table.flags.fill(0);
  table.nents = table.origNents;
}

/**
 * The checks before a table is allocated: a real Trace to count its bookkeeping on, and a size the model
 * can hold (nents is an unsigned int upstream: more is EINVAL; more than SG_MAX_NENTS is ENOMEM, as the
 * kernel's chunk allocations would fail, and nothing is allocated).
 */
export function checkTableAlloc(fn: string, trace: unknown, nents: number): asserts trace is Trace {
  if (!(trace instanceof Trace)) throw new ScatterlistError("EINVAL", fn, "trace", trace, "the platform's Trace (platform.trace)");
  checkCount(fn, "nents", nents, 1);
  if (nents > 0xffffffff) throw new ScatterlistError("EINVAL", fn, "nents", nents, "an unsigned int (at most 2^32 - 1)");
  if (nents > SG_MAX_NENTS) throw new ScatterlistNoMemError(fn, `nents = ${nents} is more than SG_MAX_NENTS (${SG_MAX_NENTS}) entries: the chained chunk allocations would fail`);
}

/** sg_alloc_table: a table of `nents` zeroed entries. */
export function sgAllocTable(trace: Trace, nents: number): SgTable {
  checkTableAlloc("sg_alloc_table", trace, nents);
  return new SgTable(trace, nents);
}

/** sg_free_table: gives the entries back (a mapped table must be unmapped first). */
export function sgFreeTable(table: SgTable): void {
  const fn = "sg_free_table";
  if (!(table instanceof SgTable)) throw new ScatterlistError("EINVAL", fn, "table", table, "an SgTable from sgAllocTable or sgAllocTableFromPages");
  checkSgTableUsable(fn, table);
  if (table.mapping !== undefined) {
    throw new ScatterlistBusyError(fn, "the table is still mapped for DMA: unmap it with dmaUnmapSgtable first (freeing it would leak the mapping)");
  }
  table[kMarkFreed]();
  table.trace.counters.add(Counter.DmaBookkeepingBytesFreed, table.bookkeepingBytes);
}

function checkEntryWrite(fn: string, table: SgTable, i: number, len: number): void {
  if (!(table instanceof SgTable)) throw new ScatterlistError("EINVAL", fn, "table", table, "an SgTable from sgAllocTable or sgAllocTableFromPages");
  checkSgTableUsable(fn, table);
  checkSgIndex(fn, table, i);
  if (table.mapping !== undefined) throw new ScatterlistBusyError(fn, "entries of a mapped table belong to the device until it is unmapped");
  if (!Number.isSafeInteger(len) || len < 0 || len > 0xffffffff) throw new ScatterlistError("EINVAL", fn, "len", len, "a byte count that fits in 32 bits (unsigned int length)");
}

/** sg_set_page: entry `i` covers `len` bytes from byte `offset` of page frame `pfn`. */
export function sgSetPage(table: SgTable, i: number, pfn: number, len: number, offset: number): void {
  const fn = "sg_set_page";
  checkEntryWrite(fn, table, i, len);
  checkCount(fn, "pfn", pfn, 0);
  checkCount(fn, "offset", offset, 0);
  const phys = pfn * PAGE_SIZE + offset;
  if (!Number.isSafeInteger(phys + len)) throw new ScatterlistError("EINVAL", fn, "pfn", pfn, "a page frame whose bytes lie below 2^53");
  table.phys[i] = phys;
  table.length[i] = len;
}

/** sg_set_page with a physical address in place of page + offset (what sg_set_buf computes). */
export function sgSetPhys(table: SgTable, i: number, phys: PhysAddr, len: number): void {
  const fn = "sg_set_phys";
  checkEntryWrite(fn, table, i, len);
  checkCount(fn, "phys", phys, 0);
  if (!Number.isSafeInteger(phys + len)) throw new ScatterlistError("EINVAL", fn, "len", len, "a length that keeps phys + len below 2^53");
  table.phys[i] = phys;
  table.length[i] = len;
}

/** sg_phys. */
export function sgPhys(table: SgTable, i: number): PhysAddr {
  return (table.phys[i] ?? 0) as PhysAddr;
}

/** sg_page, as a page frame number. */
export function sgPage(table: SgTable, i: number): number {
  return Math.floor((table.phys[i] ?? 0) / PAGE_SIZE);
}

/** sg->offset: the entry's offset inside its page. */
export function sgOffset(table: SgTable, i: number): number {
  return (table.phys[i] ?? 0) % PAGE_SIZE;
}

/** sg_dma_address. */
export function sgDmaAddress(table: SgTable, i: number): DmaAddr {
  return (table.dmaAddress[i] ?? 0) as DmaAddr;
}

/** sg_dma_len. */
export function sgDmaLen(table: SgTable, i: number): number {
  return table.dmaLength[i] ?? 0;
}

/** sg_dma_is_bus_address: the segment carries a PCI bus address (P2P), not an IOVA. */
export function sgDmaIsBusAddress(table: SgTable, i: number): boolean {
  return ((table.flags[i] ?? 0) & SgDmaFlag.BUS_ADDRESS) !== 0;
}

/** sg_dma_is_swiotlb: the list was mapped entry by entry through swiotlb (marked on the first entry). */
export function sgDmaIsSwiotlb(table: SgTable): boolean {
  return ((table.flags[0] ?? 0) & SgDmaFlag.SWIOTLB) !== 0;
}

/** dmasim: entry `i`'s data was bounced through swiotlb. */
export function sgDmaIsBounced(table: SgTable, i: number): boolean {
  return ((table.flags[i] ?? 0) & SgDmaFlag.BOUNCED) !== 0;
}
