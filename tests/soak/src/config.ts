import { FAIL_IOVA, FAIL_SWIOTLB, type DmaKernelOptions, type IommuMode } from "@dmasim/dma";
import { FAIL_IO_PGTABLE } from "@dmasim/iommu";
import fc from "fast-check";

/** The two endpoints of every soak platform: one trusted, one behind an external-facing port. */
export const TRUSTED = "0000:01:00.0";
export const UNTRUSTED = "0000:02:00.0";
export const BDFS = [TRUSTED, UNTRUSTED] as const;

export type SwiotlbMode = "default" | "none" | "forced";

export interface DeviceConfig {
  readonly coherent: boolean;
  /** dma_set_min_align_mask: 0, or NVMe's 4 KiB - 1. */
  readonly minAlignMask: number;
  /** The streaming DMA mask: 32 bits (PCI's default) or 64 (IOVAs above 4 GiB once the low ones run out). */
  readonly dmaMaskBits: number;
}

/**
 * One fault-injection site: a probability in percent for every call, or (the kernel's "chosen points")
 * the `interval`-th call failing, `times` times.
 */
export type FaultSiteConfig = { readonly probability: number } | { readonly probability: 100; readonly interval: number; readonly times: number };

/** One soak sequence's platform: how the kernel runs and what fails. */
export interface SoakConfig {
  readonly iommuMode: IommuMode;
  readonly swiotlb: SwiotlbMode;
  /** The pool's size when there is one: 256 KiB fills up quickly, 2 MiB rarely. */
  readonly swiotlbBytes: number;
  /** CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC. */
  readonly kmallocBounce: boolean;
  /** VT-d caching mode / a virtual IOMMU: new PTEs are invisible to the device until iotlb_sync_map. */
  readonly requiresSyncMap: boolean;
  /** A small IOTLB (16 entries) evicts constantly; the default one (2048) rarely. */
  readonly smallIotlb: boolean;
  readonly devices: readonly [DeviceConfig, DeviceConfig];
  /** Fault injection: the seed and each site's attributes. */
  readonly faults: { readonly seed: number; readonly iova: FaultSiteConfig; readonly swiotlb: FaultSiteConfig; readonly pgtable: FaultSiteConfig };
}

const deviceArb: fc.Arbitrary<DeviceConfig> = fc.record({
  coherent: fc.boolean(),
  minAlignMask: fc.constantFrom(0, 0xfff),
  dmaMaskBits: fc.constantFrom(32, 64),
});

const site: fc.Arbitrary<FaultSiteConfig> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ probability: fc.constantFrom(0, 0, 2, 10, 30) }) },
  { weight: 1, arbitrary: fc.record({ probability: fc.constant(100 as const), interval: fc.integer({ min: 2, max: 8 }), times: fc.integer({ min: 1, max: 3 }) }) },
);

export const configArb: fc.Arbitrary<SoakConfig> = fc.record({
  iommuMode: fc.constantFrom<IommuMode>("strict", "lazy", "passthrough", "off"),
  swiotlb: fc.constantFrom<SwiotlbMode>("default", "none", "forced"),
  swiotlbBytes: fc.constantFrom(256 * 1024, 2 * 1024 * 1024),
  kmallocBounce: fc.boolean(),
  requiresSyncMap: fc.boolean(),
  smallIotlb: fc.boolean(),
  devices: fc.tuple(deviceArb, deviceArb),
  faults: fc.record({ seed: fc.integer({ min: 1, max: 0x7fff_ffff }), iova: site, swiotlb: site, pgtable: site }),
});

/** createDmaKernel's options for a configuration. dma-debug collects, so a finding is a violation, not a crash. */
export function kernelOptions(cfg: SoakConfig): DmaKernelOptions {
  const [t, u] = cfg.devices;
  return {
    iommuMode: cfg.iommuMode,
    debug: "collect",
    // A small pool keeps a sequence cheap and makes "pool full" reachable.
    swiotlb: cfg.swiotlb === "none" ? false : { bytes: cfg.swiotlbBytes, force: cfg.swiotlb === "forced" },
    kmallocBounce: cfg.kmallocBounce,
    devices: { [TRUSTED]: { ...t }, [UNTRUSTED]: { ...u } },
    faultInject: {
      seed: cfg.faults.seed,
      sites: { [FAIL_IOVA]: cfg.faults.iova, [FAIL_SWIOTLB]: cfg.faults.swiotlb, [FAIL_IO_PGTABLE]: cfg.faults.pgtable },
    },
  };
}
