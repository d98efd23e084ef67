import { hmmDmirrorCmd } from "@dmasim/hmm-odp";
import type { Dmirror, DmirrorDevice, Mm, MmFile } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { RdmaInputError } from "./errors.js";

/** The kinds of user memory one hodgepodge MR spans. */
export type HodgepodgeKind = "anon" | "thp" | "file" | "bar-switch" | "bar-bridge" | "devpriv";

/** A segment of the layout: `pages` pages from page `first` (counted from the layout's base). */
export interface HodgepodgeSegment {
  /** What memory backs the segment. */
  readonly kind: HodgepodgeKind;
  /** Index of its first page, counted from the layout's base. */
  readonly first: number;
  /** Pages in the segment. */
  readonly pages: number;
}

/**
 * What `mmapHodgepodge` maps: how many pages of each kind, and the peer BARs and GPU that provide the exotic ones.
 */
export interface HodgepodgeOptions {
  /** Anonymous pages at the start (default 16). */
  readonly anonPages?: number;
  /** A 2 MiB THP (MADV_HUGEPAGE, faulted in with a PMD by the first write; default true). */
  readonly thp?: boolean;
  /** Pages of a shared file mapping (default 16; 0 for none). */
  readonly filePages?: number;
  /** A peer BAR the NIC reaches by bus address (behind its switch), and one reached through the host bridge: `barPages` each. */
  readonly switchBar?: P2pdmaProvider;
  /** A peer BAR the NIC reaches through the host bridge; absent: no such segment. */
  readonly bridgeBar?: P2pdmaProvider;
  /** Pages mapped of each BAR (default 8). */
  readonly barPages?: number;
  /** A device with device-private memory; the devpriv segment migrates to it (`migrateDevpriv`). */
  readonly gpu?: DmirrorDevice;
  /** Pages of the segment the GPU migrates to its device-private memory (default 16). */
  readonly devprivPages?: number;
}

/** Where each kind of memory sits, and the operations on the layout as a whole. */
export interface HodgepodgeLayout {
  /** The start of the layout: one MR over [base, base + pages * PAGE_SIZE) spans it all. */
  readonly base: number;
  /** Pages in the whole layout. */
  readonly pages: number;
  /** The segments in address order. */
  readonly segments: readonly HodgepodgeSegment[];
  /** The shared file (its page cache outlives the process: `mm.sys.dropFile` it at the end). */
  readonly file: MmFile | undefined;
  /** The GPU's mirror of the process (opened by the first migrateDevpriv). */
  readonly mirror: () => Dmirror | undefined;
  /** The kind of page `page` (an index from base). */
  readonly kindOf: (page: number) => HodgepodgeKind;
  /** Migrate the devpriv segment (or one page of it) to the GPU's device-private memory: dmirror's return. */
  readonly migrateDevpriv: (page?: number) => number;
  /** Migrate it back to system memory. */
  readonly migrateDevprivBack: (page?: number) => number;
}

const MB2 = 2 * 1024 * 1024;

/**
 * Maps, back to back in `mm` (the THP 2 MiB aligned): anonymous pages, a THP, a shared file, a BAR by
 * bus address, a BAR through the host bridge, and anonymous pages that a GPU migrates to its
 * device-private memory — the "hodgepodge of page types" one ODP MR must span. Nothing is faulted in:
 * the caller writes what it wants, then registers one MR over [base, base + pages * PAGE_SIZE).
 */
export function mmapHodgepodge(mm: Mm, options: HodgepodgeOptions = {}): HodgepodgeLayout {
  const fn = "mmapHodgepodge";
  const count = (name: keyof HodgepodgeOptions, v: number | undefined, dflt: number): number => {
    const n = v ?? dflt;
    if (!Number.isSafeInteger(n) || n < 0 || n > 1 << 20) throw new RdmaInputError(fn, `options.${name}`, n, "a page count from 0 to 1 M");
    return n;
  };
  const anon = count("anonPages", options.anonPages, 16);
  const files = count("filePages", options.filePages, 16);
  const bars = count("barPages", options.barPages, 8);
  const dev = count("devprivPages", options.devprivPages, 16);
  for (const bar of [options.switchBar, options.bridgeBar]) {
    if (bar !== undefined && bars * PAGE_SIZE > bar.size) throw new RdmaInputError(fn, "options.barPages", bars, `at most the BAR's ${bar.size / PAGE_SIZE} pages`);
  }
  const layout: [HodgepodgeKind, number][] = [["anon", anon]];
  if (options.thp !== false) layout.push(["thp", MB2 / PAGE_SIZE]);
  if (files > 0) layout.push(["file", files]);
  if (options.switchBar !== undefined && bars > 0) layout.push(["bar-switch", bars]);
  if (options.bridgeBar !== undefined && bars > 0) layout.push(["bar-bridge", bars]);
  if (options.gpu !== undefined && dev > 0) layout.push(["devpriv", dev]);
  const pages = layout.reduce((n, [, p]) => n + p, 0);
  if (pages === 0) throw new RdmaInputError(fn, "options", options, "at least one segment");
  // Reserve the whole range (2 MiB more, so the THP can start on a 2 MiB boundary), then overlay.
  const reserve = mm.mmap(Math.ceil((pages * PAGE_SIZE + 2 * MB2) / MB2) * MB2);
  const base = Math.ceil((reserve + anon * PAGE_SIZE + MB2) / MB2) * MB2 - anon * PAGE_SIZE;
  const file = files > 0 ? mm.sys.createFile(`hodgepodge@${base}`, files * PAGE_SIZE) : undefined;
  const segments: HodgepodgeSegment[] = [];
  let first = 0;
  for (const [kind, n] of layout) {
    const addr = base + first * PAGE_SIZE;
    const len = n * PAGE_SIZE;
    const bar = kind === "bar-switch" ? options.switchBar : kind === "bar-bridge" ? options.bridgeBar : undefined;
    if (kind === "thp") mm.mmap(len, { addr, hugepage: true });
    else if (kind === "file" && file !== undefined) mm.mmap(len, { addr, file, shared: true });
    else if (bar !== undefined) mm.mmap(len, { addr, p2p: bar, shared: true });
    else mm.mmap(len, { addr });
    segments.push({ kind, first, pages: n });
    first += n;
  }
  const devSeg = segments.find((s) => s.kind === "devpriv");
  let mirror: Dmirror | undefined;
  const migrate = (page: number | undefined, back: boolean): number => {
    const gpu = options.gpu;
    if (gpu === undefined || devSeg === undefined) throw new RdmaInputError(fn, "options.gpu", gpu, "a GPU and a devpriv segment");
    mirror ??= gpu.open(mm);
    const cmd = page === undefined ? hmmDmirrorCmd(base + devSeg.first * PAGE_SIZE, devSeg.pages) : hmmDmirrorCmd(base + page * PAGE_SIZE, 1);
    return back ? mirror.migrateToSys(cmd) : mirror.migrateToDev(cmd);
  };
  return {
    base,
    pages,
    segments,
    file,
    mirror: () => mirror,
    kindOf: (page) => {
      for (const s of segments) if (page >= s.first && page < s.first + s.pages) return s.kind;
      throw new RdmaInputError(`${fn}.kindOf`, "page", page, `a page index below ${pages}`);
    },
    migrateDevpriv: (page) => migrate(page, false),
    migrateDevprivBack: (page) => migrate(page, true),
  };
}
