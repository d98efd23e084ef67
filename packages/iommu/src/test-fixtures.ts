import { Trace } from "@dmasim/trace";
import { Iommu, type IommuOptions } from "./iommu.js";
import type { IommuDomain } from "./domain.js";
import type { TraceEvent } from "./events.js";

/** The device the tests attach first, and a second one. */
export const DEV_BDF = "0000:01:00.0";
export const OTHER_BDF = "0000:02:00.0";

/** A unit, one paging domain and one attached device: the common test setup. */
export function setup(options: IommuOptions = {}): { trace: Trace<TraceEvent>; mmu: Iommu; dom: IommuDomain; dev: string } {
  const trace = new Trace<TraceEvent>();
  const mmu = new Iommu(trace, { name: "iommu0", ...options });
  const dom = mmu.allocDomain("paging");
  const dev = DEV_BDF;
  mmu.attachDevice(dev, dom);
  return { trace, mmu, dom, dev };
}
