import { PAGE_SIZE } from "@dmasim/memory";
import type { Trace } from "@dmasim/trace";
import { SG_NO_SEGMENT_LIMIT } from "./constants.js";
import { ScatterlistError, checkCount } from "./errors.js";
import { SgTable, checkTableAlloc } from "./sg-table.js";

/** Page frame numbers standing for `struct page **pages`. */
export type PageList = ArrayLike<number>;

/**
 * sg_alloc_table_from_pages_segment (lib/scatterlist.c): a table describing `size` bytes that start
 * `offset` bytes into the first of `nPages` pages, with physically contiguous pages merged into one entry
 * as long as the entry stays under `maxSegment` (rounded down to whole pages, at least one page).
 */
export function sgAllocTableFromPagesSegment(trace: Trace, pages: PageList, nPages: number, offset: number, size: number, maxSegment: number): SgTable {
  const fn = "sg_alloc_table_from_pages_segment";
  checkCount(fn, "nPages", nPages, 1);
  if (typeof pages !== "object" || (pages as unknown) === null || !Number.isSafeInteger(pages.length)) {
    throw new ScatterlistError("EINVAL", fn, "pages", pages, "an array of page frame numbers");
  }
  if (nPages > pages.length) throw new ScatterlistError("EINVAL", fn, "nPages", nPages, `at most pages.length (${pages.length})`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= PAGE_SIZE) throw new ScatterlistError("EINVAL", fn, "offset", offset, `an offset inside the first page (0 to ${PAGE_SIZE - 1})`);
  const capacity = nPages * PAGE_SIZE - offset;
  if (!Number.isSafeInteger(size) || size < 1 || size > capacity) throw new ScatterlistError("EINVAL", fn, "size", size, `1 to ${capacity} bytes (what nPages pages hold after offset)`);
  checkCount(fn, "maxSegment", maxSegment, 1);
  // max_segment = ALIGN_DOWN(max_segment, PAGE_SIZE); WARN_ON(max_segment < PAGE_SIZE) → -EINVAL.
  const maxSeg = Math.floor(Math.min(maxSegment, SG_NO_SEGMENT_LIMIT) / PAGE_SIZE) * PAGE_SIZE;
  if (maxSeg < PAGE_SIZE) throw new ScatterlistError("EINVAL", fn, "maxSegment", maxSegment, `at least one page (${PAGE_SIZE} bytes)`);
  for (let i = 0; i < nPages; i++) {
    const pfn = pages[i] ?? -1;
    if (!Number.isSafeInteger(pfn) || pfn < 0 || !Number.isSafeInteger((pfn + 1) * PAGE_SIZE)) {
      throw new ScatterlistError("EINVAL", fn, `pages[${i}]`, pfn, "a page frame number >= 0 below 2^53 bytes");
    }
  }
  // Only pages that hold some of the `size` bytes count, as the caller's n_pages should say.
  const used = Math.ceil((offset + size) / PAGE_SIZE);
  // First pass counts the chunks (the kernel sizes the table from it), the second fills them.
  let chunks = 1;
  let segLen = 0;
  for (let i = 1; i < used; i++) {
    segLen += PAGE_SIZE;
    if (segLen >= maxSeg || pages[i] !== (pages[i - 1] ?? 0) + 1) {
      chunks++;
      segLen = 0;
    }
  }
  checkTableAlloc(fn, trace, chunks);
  const table = new SgTable(trace, chunks);
  let cur = 0;
  let left = size;
  let off = offset;
  for (let c = 0; c < chunks; c++) {
    let j = cur + 1;
    segLen = 0;
    for (; j < used; j++) {
      segLen += PAGE_SIZE;
      if (segLen >= maxSeg || pages[j] !== (pages[j - 1] ?? 0) + 1) break;
    }
    const chunkSize = (j - cur) * PAGE_SIZE - off;
    table.phys[c] = (pages[cur] ?? 0) * PAGE_SIZE + off;
    table.length[c] = Math.min(left, chunkSize);
    left -= chunkSize;
    off = 0;
    cur = j;
  }
  return table;
}

/** sg_alloc_table_from_pages: the same with no segment limit but the 32-bit entry length. */
export function sgAllocTableFromPages(trace: Trace, pages: PageList, nPages: number, offset: number, size: number): SgTable {
  return sgAllocTableFromPagesSegment(trace, pages, nPages, offset, size, SG_NO_SEGMENT_LIMIT);
}
