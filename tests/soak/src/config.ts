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
}

/** One soak sequence's platform: how the kernel runs and what fails. */
export interface SoakConfig {
  readonly iommuMode: IommuMode;
  readonly swiotlb: SwiotlbMode;
  readonly devices: readonly [DeviceConfig, DeviceConfig];
  /** Fault injection: the seed and each site's probability in percent (0 = off). */
  readonly faults: { readonly seed: number; readonly iova: number; readonly swiotlb: number; readonly pgtable: number };
}

const deviceArb: fc.Arbitrary<DeviceConfig> = fc.record({
  coherent: fc.boolean(),
  minAlignMask: fc.constantFrom(0, 0xfff),
});

const percent = fc.constantFrom(0, 0, 2, 10, 30);

export const configArb: fc.Arbitrary<SoakConfig> = fc.record({
  iommuMode: fc.constantFrom<IommuMode>("strict", "lazy", "passthrough", "off"),
  swiotlb: fc.constantFrom<SwiotlbMode>("default", "none", "forced"),
  devices: fc.tuple(deviceArb, deviceArb),
  faults: fc.record({ seed: fc.integer({ min: 1, max: 0x7fff_ffff }), iova: percent, swiotlb: percent, pgtable: percent }),
});

/** createDmaKernel's options for a configuration. dma-debug collects, so a finding is a violation, not a crash. */
export function kernelOptions(cfg: SoakConfig): DmaKernelOptions {
  const [t, u] = cfg.devices;
  return {
    iommuMode: cfg.iommuMode,
    debug: "collect",
    // A small pool keeps a sequence cheap and makes "pool full" reachable.
    swiotlb: cfg.swiotlb === "none" ? false : { bytes: 2 * 1024 * 1024, force: cfg.swiotlb === "forced" },
    devices: { [TRUSTED]: { ...t }, [UNTRUSTED]: { ...u } },
    faultInject: {
      seed: cfg.faults.seed,
      sites: {
        [FAIL_IOVA]: { probability: cfg.faults.iova },
        [FAIL_SWIOTLB]: { probability: cfg.faults.swiotlb },
        [FAIL_IO_PGTABLE]: { probability: cfg.faults.pgtable },
      },
    },
  };
}
