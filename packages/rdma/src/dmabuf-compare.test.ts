import { Counter, priceCounters } from "@dmasim/dma";
import { dmaBufPut } from "@dmasim/dmabuf";
import { MiB } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { IbWcStatus } from "./constants.js";
import { ACCESS_ALL, dmabufRig, mustMr } from "./test-dmabuf.js";
import { rdmaWrite } from "./test-fixtures.js";
import type { UmemDmabufMapping } from "./umem-dmabuf.js";

/**
 * The README's table: a dynamic dmabuf MR over a 4 MiB buffer of a GPU on another root port (VRAM reached
 * through the host bridge, IOVA with DMA_ATTR_MMIO), blocks of 1 MiB with every other one in RAM. Register,
 * then the GPU moves one block to RAM and the next WRITE faults: what the registration and the remap cost.
 */
function run(mapping: UmemDmabufMapping): Record<string, number> {
  const rig = dmabufRig({ blockBytes: 1 * MiB });
  const buf = rig.farGpu.allocate(4 * MiB, "vram");
  rig.farGpu.migrate(buf, "ram", [1, 3]);
  const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, rig.heap.allocate(64 * 1024), 0, 64 * 1024, 0, ACCESS_ALL, { kind: "pinned" }));
  const c = rig.kernel.trace.counters;
  const iova = (d: ReturnType<typeof c.snapshot>): number => d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree);
  const t0 = c.snapshot();
  const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, 4 * MiB, 0x1000_0000, ACCESS_ALL, { mapping }));
  const reg = c.snapshot().diff(t0);
  rig.farGpu.migrate(buf, "ram", [0]);
  const t1 = c.snapshot();
  const clock0 = rig.kernel.trace.clock.now;
  expect(rdmaWrite(rig.qpA, local, 0, mr, 0x1000_0000 + 3 * MiB, 4096).status).toBe(IbWcStatus.SUCCESS);
  const remap = c.snapshot().diff(t1);
  const out = {
    regIovaAllocs: iova(reg),
    regPteWrites: reg.get(Counter.PteWrites),
    regIotlbSyncs: reg.get(Counter.IotlbSyncMap),
    remapIovaAllocs: iova(remap),
    remapPteWrites: remap.get(Counter.PteWrites),
    remapIotlbSyncs: remap.get(Counter.IotlbSyncMap),
    faultNs: Math.round(rig.kernel.trace.clock.now - clock0),
    remapDmaNs: Math.round(priceCounters(remap, rig.kernel.profile).totalNs),
  };
  rig.nicB.deregMr(mr);
  dmaBufPut(buf);
  return out;
}

describe("dmabuf MR remap: the exporter's sg_table vs the range list the umem maps itself", () => {
  it("one IOVA either way at registration; after a move the range list relinks into its kept IOVA", () => {
    const sgt = run("sgt");
    const phys = run("phys");
    expect(sgt).toMatchObject({ regIovaAllocs: 1, regIotlbSyncs: 1, remapIovaAllocs: 1, remapIotlbSyncs: 1 });
    expect(phys).toMatchObject({ regIovaAllocs: 1, regIotlbSyncs: 1, remapIovaAllocs: 0, remapIotlbSyncs: 1 });
    expect(phys.remapPteWrites).toBe(sgt.remapPteWrites);
    expect({ sgt, phys }).toMatchInlineSnapshot(`
      {
        "phys": {
          "faultNs": 87183,
          "regIotlbSyncs": 1,
          "regIovaAllocs": 1,
          "regPteWrites": 1024,
          "remapDmaNs": 1854,
          "remapIotlbSyncs": 1,
          "remapIovaAllocs": 0,
          "remapPteWrites": 1024,
        },
        "sgt": {
          "faultNs": 87183,
          "regIotlbSyncs": 1,
          "regIovaAllocs": 1,
          "regPteWrites": 1024,
          "remapDmaNs": 2121,
          "remapIotlbSyncs": 1,
          "remapIovaAllocs": 1,
          "remapPteWrites": 1024,
        },
      }
    `);
  });
});
