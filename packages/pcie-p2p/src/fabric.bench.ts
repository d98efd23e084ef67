import { MiB, type PhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import { bench, describe } from "vitest";
import { A, B, RW, bytes, switchSpec, withDomains } from "./test-fixtures.js";
import type { Iova } from "@dmasim/iommu";
import { unsafeDmaAddr } from "./index.js";

// 1 GiB per iteration: a 1 MiB buffer (256 pages) read 1024 times, so every TLP after the first pass
// hits the IOTLB (2048 entries) and copies real, materialised bytes.
const CHUNK = 1 * MiB;
const ROUNDS = 1024;
const IOVA = 0x10000000;

function setup() {
  const p = withDomains(switchSpec({ memory: { ramBytes: 64 * MiB } }));
  p.memory.write(0x100000 as PhysAddr, bytes(CHUNK, 1));
  p.endpoint(A).iommu!.domainOf(A)!.map(IOVA as Iova, 0x100000 as PhysAddr, CHUNK, RW);
  const bar = p.endpoint(B).bars[0]!;
  p.memory.write(bar.phys, bytes(CHUNK, 2));
  return { p, ep: p.endpoint(A), bar, dst: new Uint8Array(CHUNK) };
}

describe("device reads of 1 GiB in 4 KiB TLPs", () => {
  const s = setup();
  bench("memory path through the IOMMU (paging domain, 4 KiB pages, IOTLB hits), dmaReadInto", () => {
    for (let i = 0; i < ROUNDS; i++) s.ep.dmaReadInto(unsafeDmaAddr(IOVA), s.dst);
  }, { iterations: 5, warmupIterations: 1 });
  bench("peer-to-peer through the switch (bus address of the peer's BAR), dmaReadInto", () => {
    for (let i = 0; i < ROUNDS; i++) s.ep.dmaReadInto(s.bar.bus, s.dst);
  }, { iterations: 5, warmupIterations: 1 });
  bench("memory path through the IOMMU, dmaRead (allocates the result)", () => {
    for (let i = 0; i < ROUNDS; i++) s.ep.dmaRead(unsafeDmaAddr(IOVA), CHUNK);
  }, { iterations: 5, warmupIterations: 1 });
});

describe("device writes of 1 GiB in 4 KiB TLPs", () => {
  const s = setup();
  const src = bytes(CHUNK, 3);
  bench("memory path through the IOMMU", () => {
    for (let i = 0; i < ROUNDS; i++) s.ep.dmaWrite(unsafeDmaAddr(IOVA), src);
  }, { iterations: 5, warmupIterations: 1 });
  bench("peer-to-peer through the switch", () => {
    for (let i = 0; i < ROUNDS; i++) s.ep.dmaWrite(s.bar.bus, src);
  }, { iterations: 5, warmupIterations: 1 });
});

describe("with a trace listener (events built for every TLP)", () => {
  const s = setup();
  let n = 0;
  s.p.trace.events.subscribe(() => n++);
  bench("memory path through the IOMMU, 64 MiB", () => {
    for (let i = 0; i < 64; i++) s.ep.dmaReadInto(unsafeDmaAddr(IOVA), s.dst);
    if (n === 0 || s.p.trace.counters.get(Counter.IotlbMisses) > 256) throw new Error("expected events and IOTLB hits");
  }, { iterations: 5, warmupIterations: 1 });
});
