import { Trace } from "@dmasim/trace";
import { expect, it } from "vitest";
import { FlushQueue, IovaDomain, iommuDmaAllocIova, iommuDmaFreeIova } from "./index.js";

it("the README example works as written", () => {
  const trace = new Trace();
  const iovad = new IovaDomain(trace, { granule: 4096, startPfn: 1, cpus: 2 });
  const released: unknown[] = [];
  const fq = new FlushQueue(trace, iovad, {
    flushIotlbAll: () => undefined,
    releasePtPages: (list) => released.push(list),
  });
  const cookie = { iovad, fq };
  const dev = { pci32bitWorkaround: true };
  const iova = iommuDmaAllocIova(cookie, dev, 8192, 2 ** 64 - 1, 2 ** 48 - 1, 0);
  expect(iova).toBe(0xffffe000);
  iommuDmaFreeIova(cookie, iova, 8192, 0, { queued: true, freelist: "pt-pages" });
  expect(fq.pending(0)).toBe(1);
  trace.clock.advance(10_000_000);
  expect(released).toEqual(["pt-pages"]);
  expect(iommuDmaAllocIova(cookie, dev, 8192, 2 ** 64 - 1, 2 ** 48 - 1, 0)).toBe(iova);
});
