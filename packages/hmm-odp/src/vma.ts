import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import type { MmFile } from "./mm-system.js";

/**
 * struct vm_area_struct with its slice of the CPU page table: one byte of entry kind and bits (`pte`) and
 * one 32-bit frame or swap slot (`pfn`) per page, in typed arrays, so a walk over a VMA touches two
 * arrays and no objects.
 */
export class Vma {
  /** vm_start: first address of the mapping (page-aligned). */
  start: number;
  /** vm_end: address just past the mapping. */
  end: number;
  /** vm_flags: VM_* bits. */
  flags: number;
  /** The file or shmem object of a shared (or file-backed private) mapping. */
  file: MmFile | undefined;
  /** Page offset of `start` in `file`. */
  pgoff: number;
  /** VM_PFNMAP: frame of the first page (every entry is special). */
  pfnBase: number;
  /** An mmap of a peer's BAR: its pages belong to this MEMORY_DEVICE_PCI_P2PDMA provider. */
  p2p: P2pdmaProvider | undefined;
  /** The page table of the range, one PteKind per page (the model's PTEs). */
  pte: Uint8Array;
  /** The page frame each present PTE points at (same index as `pte`). */
  pfn: Uint32Array;

  /** Made by `Mm.mmap` and the VMA splits (`.` exports the class as a type only). */
  constructor(init: { start: number; end: number; flags: number; file?: MmFile | undefined; pgoff?: number; pfnBase?: number; p2p?: P2pdmaProvider | undefined; pte?: Uint8Array; pfn?: Uint32Array }) {
    this.start = init.start;
    this.end = init.end;
    this.flags = init.flags;
    this.file = init.file;
    this.pgoff = init.pgoff ?? 0;
    this.pfnBase = init.pfnBase ?? 0;
    this.p2p = init.p2p;
    const n = (init.end - init.start) / 4096;
    this.pte = init.pte ?? new Uint8Array(n);
    this.pfn = init.pfn ?? new Uint32Array(n);
  }

  /** Pages in the mapping. */
  get pages(): number {
    return this.pte.length;
  }

  /** Splits at `addr` (page aligned, strictly inside): this keeps [start, addr), the result is [addr, end). */
  splitAt(addr: number): Vma {
    const k = (addr - this.start) / 4096;
    const tail = new Vma({
      start: addr,
      end: this.end,
      flags: this.flags,
      file: this.file,
      pgoff: this.pgoff + k,
      pfnBase: this.pfnBase === 0 ? 0 : this.pfnBase + k,
      p2p: this.p2p,
      pte: this.pte.slice(k),
      pfn: this.pfn.slice(k),
    });
    this.end = addr;
    this.pte = this.pte.slice(0, k);
    this.pfn = this.pfn.slice(0, k);
    return tail;
  }
}
