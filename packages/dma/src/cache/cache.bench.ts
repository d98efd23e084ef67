import { MiB, PhysicalMemory, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { bench, describe } from "vitest";
import { DmaDirection } from "../constants.js";
import { CpuCache } from "./cpu-cache.js";

const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * MiB }] });
const cache = new CpuCache(mem);
const page = new Uint8Array(4096).fill(0x3c);
const buf = 1 * MiB;

describe("CPU cache (64-byte lines, unbounded)", () => {
  bench("cpuWrite 4 KiB + archSyncDmaForDevice (64 lines written back)", () => {
    cache.cpuWrite(unsafePhysAddr(buf), page);
    cache.archSyncDmaForDevice(unsafePhysAddr(buf), 4096, DmaDirection.TO_DEVICE);
  });
  bench("archSyncDmaForCpu 4 KiB + cpuRead 4 KiB (64 lines invalidated, refilled)", () => {
    cache.archSyncDmaForCpu(unsafePhysAddr(buf), 4096, DmaDirection.FROM_DEVICE);
    cache.cpuRead(unsafePhysAddr(buf), 4096);
  });
});
