import { bench, describe } from "vitest";
import { createDmaKernel } from "@dmasim/dma";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { switchTopology, TestBdf } from "@dmasim/pcie-p2p/testing";
import { GpuVramExporter } from "./exporters/gpu-vram.js";
import { DmaBufImporter } from "./importer.js";
import { DmaBufSystem } from "./system.js";

// Target (dma-buf rules and dma-debug off): map + migrate (copying every byte) + remap of a fully
// populated 1 GiB buffer takes <= 2x one Uint8Array.prototype.set of 1 GiB measured in the same run.
// The importer sits under the GPU's switch: VRAM is reached by bus address, RAM through its IOMMU.
// Each iteration maps the buffer where it is, migrates it (VRAM→RAM, then back), and maps it again.

const SIZE = 1 * GiB;

describe("1 GiB: map + migrate + remap against one 1 GiB Uint8Array.set", () => {
  const src = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i += 4096) src[i] = i >>> 12;
  const dst = new Uint8Array(SIZE);
  dst.set(src); // touched once, so no page faults are measured
  bench(
    "Uint8Array.prototype.set, 1 GiB",
    () => {
      dst.set(src);
    },
    { iterations: 4, warmupIterations: 1, time: 0 },
  );

  const spec = switchTopology({ ramBytes: 4 * GiB, switchPeer: { bars: [{ size: 1 * GiB }] } });
  const platform = createPlatform(spec);
  const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false, devices: { [TestBdf.CLIENT]: { dmaMaskBits: 48 } } });
  const sys = new DmaBufSystem(kernel, { debug: "off" });
  const gpu = new GpuVramExporter(sys, { bdf: TestBdf.SWITCH_PEER, blockBytes: 2 * MiB });
  const buf = gpu.allocate(SIZE);
  const chunk = new Uint8Array(64 * MiB);
  for (let off = 0; off < SIZE; off += chunk.length) {
    chunk.fill((off >>> 26) + 1);
    gpu.cpuWrite(buf, off, chunk);
  }
  let toRam = true;
  for (const mapping of ["sgt", "phys"] as const) {
    const imp = DmaBufImporter.attach(buf, kernel.device(TestBdf.CLIENT), { mapping });
    if (typeof imp === "number") throw new Error(`attach: ${imp}`);
    bench(
      `map + migrate (copy 1 GiB) + remap, ${mapping === "sgt" ? "sg_table" : "physical-range list"} importer`,
      () => {
        imp.ensureMapped();
        gpu.migrate(buf, toRam ? "ram" : "vram");
        toRam = !toRam;
        imp.ensureMapped();
        imp.unmap();
      },
      { iterations: 4, warmupIterations: 1, time: 0 },
    );
  }
});
