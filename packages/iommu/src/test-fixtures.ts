import { Trace } from "@dmasim/trace";
import { Iommu, type IommuOptions } from "./iommu.js";
import type { IommuDomain } from "./domain.js";

/** A unit, one paging domain and one attached device: the common test setup. */
export function setup(options: IommuOptions = {}): { trace: Trace; mmu: Iommu; dom: IommuDomain; dev: string } {
  const trace = new Trace();
  const mmu = new Iommu(trace, { name: "iommu0", ...options });
  const dom = mmu.allocDomain("paging");
  const dev = "0000:01:00.0";
  mmu.attachDevice(dev, dom);
  return { trace, mmu, dom, dev };
}
