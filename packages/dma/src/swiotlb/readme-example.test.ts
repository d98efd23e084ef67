import { GiB, PhysicalMemory } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { expect, it } from "vitest";
import { DmaDirection } from "../constants.js";
import { swiotlbPoolMapSingle, swiotlbPoolUnmapSingle } from "./api.js";
import { SwiotlbPool } from "./pool.js";

it("the README example works as written", () => {
  const memory = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 1 * GiB }] });
  const pool = new SwiotlbPool(memory);
  const dev = { name: "0000:01:00.0", minAlignMask: 0xfff, dmaIoTlbMem: pool };

  memory.write(0x2000_0234, new TextEncoder().encode("hello"));
  const tlb = swiotlbPoolMapSingle(dev, 0x2000_0234, 5, 0, DmaDirection.BIDIRECTIONAL, 0);
  expect(tlb & 0xfff).toBe(0x234);
  expect(new TextDecoder().decode(memory.read(tlb, 5))).toBe("hello");
  memory.write(tlb, new TextEncoder().encode("HELLO"));
  swiotlbPoolUnmapSingle(dev, tlb, 5, DmaDirection.BIDIRECTIONAL, 0);
  expect(new TextDecoder().decode(memory.read(0x2000_0234, 5))).toBe("HELLO");
});
