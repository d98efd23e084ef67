import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// A field that first holds small integers and later a double (an IOVA above 2^30, a byte total, 1/4096)
// changes representation, and V8 then gives a new hidden class to the object that stored it and marks
// the old one deprecated for every object still carrying it. Objects made before that moment (a second
// kernel set up before the first one ran, which is what `dmasim compare` and every benchmark file do)
// make code optimised on the first kernel deoptimise ("wrong map") and end up checking for both classes:
// the first kernel is then slower too, for the rest of the process. The hot objects therefore start
// with double fields. This runs two kernels' worth of objects in a child Node (natives syntax on), works
// the first kernel's two-step and classic paths, and asks V8 whether each object of the second kernel
// still has the same hidden class as its counterpart of the first.
const root = fileURLToPath(new URL("../../../", import.meta.url));
const script = `
import { GiB } from "@dmasim/memory";
import { domainPageTable } from "@dmasim/iommu/internal";
import { createPlatform } from "@dmasim/pcie-p2p";
import * as dma from "@dmasim/dma";
function setup() {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = dma.createDmaKernel(platform, { iommuMode: "strict", debug: "off" });
  const dev = kernel.device("0000:01:00.0");
  dma.dmaSetMaskAndCoherent(dev, dma.DMA_BIT_MASK(64));
  const pages = Array.from({ length: 64 }, () => platform.memory.allocator.allocPages(1) + 0);
  return { dev, pages, state: new dma.DmaIovaState() };
}
const a = setup();
const b = setup();
for (let r = 0; r < 200; r++) {
  dma.dmaIovaTryAlloc(a.dev, a.state, a.pages[0], 64 * 4096);
  for (let i = 0; i < 64; i++) dma.dmaIovaLink(a.dev, a.state, a.pages[i], i * 4096, 4096, dma.DmaDirection.TO_DEVICE, 0);
  dma.dmaIovaDestroy(a.dev, a.state, 64 * 4096, dma.DmaDirection.TO_DEVICE, 0);
  const addr = dma.dmaMapPhys(a.dev, a.pages[1], 4096, dma.DmaDirection.TO_DEVICE, 0);
  dma.dmaUnmapPhys(a.dev, addr, 4096, dma.DmaDirection.TO_DEVICE, 0);
}
const same = (x, y) => %HaveSameMap(x, y);
console.log(JSON.stringify({
  state: same(a.state, b.state),
  domain: same(a.dev.domain, b.dev.domain),
  pageTable: same(a.dev.domain[domainPageTable], b.dev.domain[domainPageTable]),
}));
`;

describe("hidden classes of the hot objects", () => {
  it("do not change when a kernel first works with IOVAs, so a kernel made earlier shares them", () => {
    const out = execFileSync(
      process.execPath,
      ["--allow-natives-syntax", "--import", "./scripts/bench-loader/register.mjs", "--input-type=module", "-e", script],
      { cwd: root, encoding: "utf8" },
    );
    expect(JSON.parse(out)).toEqual({ state: true, domain: true, pageTable: true });
  });
});
