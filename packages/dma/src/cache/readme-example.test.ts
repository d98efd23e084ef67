import { MiB, PhysicalMemory } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { expect, it } from "vitest";
import { DmaDirection } from "../constants.js";
import { CpuCache } from "./cpu-cache.js";

it("the README example works as written", () => {
  const memory = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * MiB }] });
  const cache = new CpuCache(memory);
  cache.cpuWrite(0x10000, new Uint8Array(64).fill(0xab));
  expect(memory.read(0x10000, 1)[0]).toBe(0);
  cache.archSyncDmaForDevice(0x10000, 64, DmaDirection.TO_DEVICE);
  expect(memory.read(0x10000, 1)[0]).toBe(0xab);
});
