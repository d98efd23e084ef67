import { describe, expect, it } from "vitest";
import { GiB, MiB, physAddr, type PhysAddr } from "@dmasim/memory";
import type { Access } from "@dmasim/iommu";
import { createPlatform } from "./platform.js";
import type { DmaAccessObserver } from "./fabric.js";
import { unsafeDmaAddr, type BusAddr, type DmaAddr } from "./index.js";

const SPEC = {
  memory: { ramBytes: 1 * GiB },
  switches: [{ id: "sw0", downstreamPorts: 2 }],
  endpoints: [
    { bdf: "0000:03:00.0", parent: "sw0.dp0" },
    { bdf: "0000:04:00.0", parent: "sw0.dp1", bars: [{ size: 1 * MiB }] },
  ],
};

describe("DMA access observer", () => {
  it("sees every TLP with its bus address, and RAM accesses with their physical address, before the bytes move", () => {
    const p = createPlatform(SPEC);
    const seen: string[] = [];
    const observer: DmaAccessObserver = {
      onTlp: (bdf: string, addr: DmaAddr | BusAddr, len: number, access: Access) => seen.push(`tlp ${bdf} ${access} ${addr} ${len}`),
      onMemoryAccess: (bdf: string, phys: PhysAddr, len: number, access: Access) => {
        // Before the write lands, memory still holds the old bytes.
        if (access === "write") seen.push(`mem-before ${p.memory.read(phys, 1)[0]}`);
        seen.push(`mem ${bdf} ${access} ${phys} ${len}`);
      },
    };
    p.setDmaObserver(observer);
    p.memory.write(physAddr(8192), new Uint8Array([7]));
    p.endpoint("0000:03:00.0").dmaWrite(unsafeDmaAddr(8192 - 16), new Uint8Array(32).fill(9));
    p.endpoint("0000:03:00.0").dmaRead(unsafeDmaAddr(4096 * 3), 10);
    expect(seen).toEqual([
      "tlp 0000:03:00.0 write 8176 16",
      "mem-before 0",
      "mem 0000:03:00.0 write 8176 16",
      "tlp 0000:03:00.0 write 8192 16",
      "mem-before 7",
      "mem 0000:03:00.0 write 8192 16",
      "tlp 0000:03:00.0 read 12288 10",
      "mem 0000:03:00.0 read 12288 10",
    ]);
  });

  it("a peer-to-peer TLP is seen as a TLP but never as a memory access", () => {
    const p = createPlatform(SPEC);
    const kinds: string[] = [];
    p.setDmaObserver({ onTlp: () => kinds.push("tlp"), onMemoryAccess: () => kinds.push("mem") });
    const bar = p.endpoint("0000:04:00.0").bars[0]!;
    p.endpoint("0000:03:00.0").dmaWrite(bar.bus, new Uint8Array(8));
    expect(kinds).toEqual(["tlp"]);
  });

  it("can be removed, and a replaced observer no longer hears anything", () => {
    const p = createPlatform(SPEC);
    const a: number[] = [];
    const b: number[] = [];
    p.setDmaObserver({ onTlp: () => a.push(1) });
    p.endpoint("0000:03:00.0").dmaRead(unsafeDmaAddr(0), 4);
    p.setDmaObserver({ onTlp: () => b.push(1) });
    p.endpoint("0000:03:00.0").dmaRead(unsafeDmaAddr(0), 4);
    p.setDmaObserver(undefined);
    p.endpoint("0000:03:00.0").dmaRead(unsafeDmaAddr(0), 4);
    expect([a.length, b.length]).toEqual([1, 1]);
  });
});
