import { dmaAllocCoherent, dmaFreeCoherent } from "@dmasim/dma";
import type { DmaCoherentBuffer, DmaDevice } from "@dmasim/dma";
import { NvmeInputError, NvmeStateError } from "./errors.js";

/**
 * dma_pool (mm/dmapool.c): fixed-size blocks carved from coherent pages, for PRP lists and SGL segments.
 * Blocks are handles (indices); their CPU and DMA addresses live in typed arrays.
 */
export class DmaPool {
  readonly blockSize: number;
  readonly #dev: DmaDevice;
  readonly #pages: DmaCoherentBuffer[] = [];
  #cpu = new Float64Array(0);
  #dma = new Float64Array(0);
  #free = new Int32Array(0);
  #nfree = 0;

  constructor(dev: DmaDevice, blockSize: number) {
    if (![256, 4096].includes(blockSize)) throw new NvmeInputError("DmaPool", "blockSize", blockSize, "256 or 4096");
    this.#dev = dev;
    this.blockSize = blockSize;
  }

  /** dma_pool_alloc: a block handle, or -1 when no coherent memory is left. */
  alloc(): number {
    if (this.#nfree === 0 && !this.#grow()) return -1;
    return this.#free[--this.#nfree] ?? -1;
  }

  /** dma_pool_free. */
  free(block: number): void {
    this.#free[this.#nfree++] = block;
  }

  cpuAddr(block: number): number {
    return this.#cpu[block] ?? -1;
  }

  dmaAddr(block: number): number {
    return this.#dma[block] ?? -1;
  }

  get blocks(): number {
    return this.#cpu.length;
  }

  #grow(): boolean {
    const page = dmaAllocCoherent(this.#dev, 4096);
    if (page === undefined) return false;
    this.#pages.push(page);
    const per = 4096 / this.blockSize;
    const old = this.#cpu.length;
    const cpu = new Float64Array(old + per);
    cpu.set(this.#cpu);
    const dma = new Float64Array(old + per);
    dma.set(this.#dma);
    const free = new Int32Array(old + per);
    free.set(this.#free.subarray(0, this.#nfree));
    for (let i = 0; i < per; i++) {
      cpu[old + i] = page.cpuAddr + i * this.blockSize;
      dma[old + i] = page.dmaHandle + i * this.blockSize;
      free[this.#nfree++] = old + per - 1 - i;
    }
    this.#cpu = cpu;
    this.#dma = dma;
    this.#free = free;
    return true;
  }

  /** dma_pool_destroy: every block must be back. */
  destroy(): void {
    if (this.#nfree !== this.#cpu.length) throw new NvmeStateError("EBUSY", `dma_pool_destroy: ${this.#cpu.length - this.#nfree} block(s) still in use`);
    for (const p of this.#pages) dmaFreeCoherent(this.#dev, p.size, p.cpuAddr, p.dmaHandle);
    this.#pages.length = 0;
    this.#cpu = new Float64Array(0);
    this.#dma = new Float64Array(0);
    this.#free = new Int32Array(0);
    this.#nfree = 0;
  }
}
