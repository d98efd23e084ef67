import type { PhysicalMemory } from "@dmasim/memory";
import type { Platform } from "@dmasim/pcie-p2p";
import type { Trace } from "@dmasim/trace";
import type { TraceEvent } from "./events.js";
import type { CpuCache } from "./cache/index.js";
import type { DmaDebugChecker } from "./debug/checker.js";
import type { IovaTracker } from "./debug/iova-tracker.js";
import type { SwiotlbPool } from "./swiotlb/index.js";

/**
 * The kernel as a device's code reaches it (`dev.kernel`): the machine-wide state the DMA paths read
 * and the CPU-side services they call. `DmaKernel` implements it; declaring it apart keeps device.ts
 * from importing kernel.ts, which imports device.ts.
 */
export interface DeviceKernel {
  readonly platform: Platform;
  readonly trace: Trace<TraceEvent>;
  readonly memory: PhysicalMemory;
  readonly debug: DmaDebugChecker;
  readonly iovaTracker: IovaTracker;
  /** The swiotlb pool, undefined when the platform has none. */
  readonly swiotlb: SwiotlbPool | undefined;
  /** swiotlb=force: every streaming mapping of dma-direct bounces. */
  readonly swiotlbForce: boolean;
  readonly cpuCache: CpuCache;
  /** The kmalloc-minalign bounce rule of non-coherent devices is on. */
  readonly kmallocBounce: boolean;
  /** ARCH_DMA_MINALIGN in bytes (dma_get_cache_alignment). */
  readonly archDmaMinalign: number;
  /** The CPU the current call runs on (raw_smp_processor_id()). */
  readonly cpu: number;
  /** A line in the kernel log (dev_warn & co), for a device or by bdf. */
  log(dev: { readonly bdf: string } | string, message: string): void;
  /** A line in the kernel log once per device and call site (dev_WARN_ONCE). */
  logOnce(dev: { readonly bdf: string }, site: string, message: string): void;
  /** A CPU store through the CPU cache model (or straight to memory for an uncached range). */
  cpuWrite(phys: number, bytes: Uint8Array): void;
  /** A CPU load through the CPU cache model (or straight from memory for an uncached range). */
  cpuRead(phys: number, len: number): Uint8Array;
  /** arch_dma_set_uncached. */
  archDmaSetUncached(phys: number, size: number): void;
  /** arch_dma_clear_uncached. */
  archDmaClearUncached(phys: number): void;
  /** Working storage a consumer package keeps per kernel, under a key it owns (see DmaKernel). */
  consumerScratch<T>(key: symbol, make: () => T): T;
}
