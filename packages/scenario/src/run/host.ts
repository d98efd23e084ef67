import { createDmaKernel, DmaConfigError, DmaInputError } from "@dmasim/dma";
import type { DmaKernelOptions } from "@dmasim/dma";
import { createPlatform, PciError, PlatformSpecError } from "@dmasim/pcie-p2p";
import { DmasimInputError } from "@dmasim/trace";
import { ScenarioSetupError } from "../errors.js";
import type { Scenario } from "../types.js";
import type { Host, RunContext } from "./context.js";

const MiB = 1024 * 1024;

/** The kernel options a scenario asks for, with the sweep's IOMMU mode. */
export function kernelOptions(s: Scenario, ctx: RunContext): DmaKernelOptions {
  const k = s.kernel ?? {};
  const swiotlb = k.swiotlbBytes ?? 4 * MiB;
  const costProfile = ctx.costProfile ?? k.costProfile;
  return {
    iommuMode: ctx.iommu,
    ...(costProfile === undefined ? {} : { costProfile }),
    debug: k.debug ?? "collect",
    swiotlb: swiotlb === 0 ? false : { bytes: swiotlb },
    ...(k.devices === undefined ? {} : { devices: k.devices }),
  };
}

/**
 * Builds what a scenario describes. Errors of the model's own validation (a bad platform spec, an IOMMU
 * mode the platform cannot have) are the scenario's fault, so they become a ScenarioSetupError.
 */
export function setUp<T>(what: string, build: () => T): T {
  try {
    return build();
  } catch (e) {
    if (e instanceof PlatformSpecError || e instanceof PciError || e instanceof DmaConfigError || e instanceof DmaInputError || e instanceof DmasimInputError || e instanceof RangeError) {
      throw new ScenarioSetupError(what, e);
    }
    throw e;
  }
}

export function createHost(s: Scenario, ctx: RunContext): Host {
  return setUp(`scenario "${s.name}"`, () => {
    const platform = createPlatform(s.platform);
    const kernel = createDmaKernel(platform, kernelOptions(s, ctx));
    return { platform, kernel };
  });
}
