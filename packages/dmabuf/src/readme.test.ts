import { expect, it } from "vitest";
// The README example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel } from "@dmasim/dma";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { switchTopology, TestBdf } from "@dmasim/pcie-p2p/testing";
import { DmaBufImporter, DmaBufSystem, GpuVramExporter } from "./index.js";

it("README example", () => {
  // A GPU (64 MiB BAR of VRAM) and a NIC under one PCIe switch.
  const platform = createPlatform(switchTopology({ ramBytes: 1 * GiB, switchPeer: { bars: [{ size: 64 * MiB }] } }));
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const sys = new DmaBufSystem(kernel); // rule checks on ("throw")
  const gpu = new GpuVramExporter(sys, { bdf: TestBdf.SWITCH_PEER });
  const buf = gpu.allocate(4 * MiB); // in VRAM
  gpu.cpuWrite(buf, 0, new TextEncoder().encode("hello from VRAM"));

  // A dynamic importer (mlx5's dmabuf MR in shape): maps on access, unmaps when invalidated.
  const nic = DmaBufImporter.attach(buf, kernel.device(TestBdf.CLIENT), { mapping: "phys" });
  if (typeof nic === "number") throw new Error(`attach: ${nic}`);
  const before = nic.read(0, 15); // P2P by bus address through the switch

  gpu.migrate(buf, "ram"); // copy, KERNEL fence, invalidate_mappings
  const t = sys.trace.clock.now;
  const after = nic.read(0, 15); // maps again (IOVA), waits for the copy's fence
  nic.close();

  expect(new TextDecoder().decode(before as Uint8Array)).toBe("hello from VRAM");
  expect(new TextDecoder().decode(after as Uint8Array)).toBe("hello from VRAM");
  expect(sys.trace.clock.now).toBeGreaterThan(t);
  expect(sys.leaks()).toEqual({ buffers: 1, attachments: 0, mappings: 0 });
  expect(sys.debug.reports()).toEqual([]);
});
