import type { IommuDomain } from "@dmasim/iommu";
import type { PhysAddr } from "@dmasim/memory";
import type { DmaAddr, Endpoint } from "@dmasim/pcie-p2p";
import { DMA_BIT_MASK } from "./constants.js";
import type { IommuDmaCookie, IommuDmaDeviceState } from "./iova/index.js";
import type { DeviceKernel } from "./device-kernel.js";
import type { DmaDeviceOptions } from "./options.js";
import type { SwiotlbPool } from "./swiotlb/index.js";

/** Keys DmaDevice's live coherent allocations; not exported from `.`, so only this package reaches them. */
export const kCoherentAllocs = Symbol("coherentAllocs");

/**
 * How a device's DMA is handled, as `dev->dma_ops` / `use_dma_iommu()` decide it:
 * - "direct": dma-direct (no IOMMU, an identity domain, or IOMMU off), swiotlb when needed;
 * - "iommu": iommu-dma with a paging domain ("strict": IOMMU_DOMAIN_DMA, "lazy": IOMMU_DOMAIN_DMA_FQ).
 */
export type DmaOps = "direct" | "iommu";

export type { DmaDeviceOptions } from "./options.js";

/**
 * `struct device` as the DMA API sees it. Created by `kernel.device(bdf)`; the kernel functions take it
 * first, as in Linux.
 */
export class DmaDevice {
  /** The PCI name of the device (`0000:02:00.0`), as dev_name() prints it. */
  readonly bdf: string;
  /** The DMA kernel that probed the device. */
  readonly kernel: DeviceKernel;
  /** The PCI endpoint whose TLPs carry this device's DMA. */
  readonly endpoint: Endpoint;
  /** Which DMA implementation serves the device: dma-direct or iommu-dma (dev->dma_ops / use_dma_iommu()). */
  readonly ops: DmaOps;
  /** The default domain when the device is behind an IOMMU (paging or identity), else undefined. */
  readonly domain: IommuDomain | undefined;
  /** iommu-dma's cookie (IOVA domain + flush queue) for "iommu" ops. */
  readonly cookie: IommuDmaCookie | undefined;
  /** dev->iommu->pci_32bit_workaround. */
  readonly iommuState: IommuDmaDeviceState = { pci32bitWorkaround: true };
  /**
   * IOVA granule of the device's iommu-dma domain (0 without one). Fixed when the domain is set up, so
   * it is a plain field: every mapping reads it, and a chain of lookups there shows in the hot paths.
   */
  readonly granule: number;
  /** Lazy (flush queue) or strict invalidation; untrusted devices are always strict. */
  readonly strict: boolean;
  /** pdev->untrusted (from the endpoint): always strict, and buffers not aligned to the granule bounce. */
  readonly untrusted: boolean;
  /** dev_is_dma_coherent(): the device snoops CPU caches; false makes dma_sync_* do cache maintenance. */
  coherent: boolean;
  /** dev->dma_mask: highest address the device can put on the bus for streaming DMA (dma_set_mask). */
  dmaMask: number;
  /** dev->coherent_dma_mask: the same limit for dma_alloc_coherent (dma_set_coherent_mask). */
  coherentDmaMask: number;
  /** bus_dma_limit (0 = none). */
  busDmaLimit = 0;
  /** dma_get_max_seg_size(): the longest segment, in bytes, a scatterlist mapping may merge into (default 64 KiB). */
  maxSegmentSize: number;
  /** dma_get_seg_boundary(): a merged segment may not cross an address multiple of this mask + 1. */
  segBoundaryMask: number;
  /**
   * dma_get_min_align_mask(): low address bits swiotlb keeps from the original buffer in a bounce slot (NVMe: page
   * size - 1).
   */
  minAlignMask: number;
  /** Bytes phys_to_dma adds to a physical address on dma-direct (a dma-ranges offset); 0 by default. */
  busOffset: number;
  /**
   * dev->dma_skip_sync: a coherent device that never bounced needs no syncs or unmaps on dma-direct.
   * Cleared for good the first time the device bounces through swiotlb (dma_reset_need_sync).
   */
  dmaSkipSync: boolean;
  /** Cleared by unbind: every later API call on the device is a use-after-unbind. */
  bound = true;
  /**
   * Live dma_alloc_coherent buffers by DMA handle (CPU address and size), kept whatever the dma-debug
   * mode, so a double or bogus dma_free_coherent never frees an IOVA or pages twice. Keyed by a symbol
   * `.` does not export: only this package's coherent.ts reaches it.
   */
  readonly [kCoherentAllocs] = new Map<DmaAddr, { readonly phys: PhysAddr; readonly size: number }>();

  /** Made by `DmaKernel.device(bdf)`, the documented way; `.` exports the class for `instanceof` checks. */
  constructor(init: {
    kernel: DeviceKernel;
    endpoint: Endpoint;
    ops: DmaOps;
    domain: IommuDomain | undefined;
    cookie: IommuDmaCookie | undefined;
    strict: boolean;
    options: DmaDeviceOptions;
  }) {
    this.kernel = init.kernel;
    this.endpoint = init.endpoint;
    this.bdf = init.endpoint.bdf;
    this.ops = init.ops;
    this.domain = init.domain;
    this.cookie = init.cookie;
    this.granule = init.cookie?.iovad.granule ?? 0;
    this.strict = init.strict;
    this.untrusted = init.endpoint.untrusted;
    const o = init.options;
    this.coherent = o.coherent ?? true;
    this.dmaMask = DMA_BIT_MASK(o.dmaMaskBits ?? 32);
    this.coherentDmaMask = this.dmaMask;
    this.maxSegmentSize = o.maxSegmentSize ?? 65536;
    this.segBoundaryMask = o.segBoundaryMask ?? 0xffffffff;
    this.minAlignMask = o.minAlignMask ?? 0;
    this.busOffset = o.busOffset ?? 0;
    this.dmaSkipSync = this.coherent && !init.kernel.swiotlbForce;
  }

  /** Device name as swiotlb and the logs print it. */
  get name(): string {
    return this.bdf;
  }

  /** dev->dma_io_tlb_mem: the swiotlb pool the device bounces through, if the kernel has one. */
  get dmaIoTlbMem(): SwiotlbPool | undefined {
    return this.kernel.swiotlb;
  }


  /** The device's BDF, so a device in a template string prints like dev_name(). */
  toString(): string {
    return this.bdf;
  }
}
