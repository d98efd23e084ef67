import { describe, expect, it } from "vitest";
import { Counter, Trace } from "@dmasim/trace";
import { GiB, MiB, PageFlag, PhysicalMemory, SparseStore, pfnOf, UnmappedAddressError } from "./index.js";

// The example of README.md, kept here verbatim so it cannot rot.
describe("README example", () => {
  it("runs as documented", () => {
    const trace = new Trace();
    const mem = new PhysicalMemory(trace, {
      ram: [{ base: 0, size: 2 * GiB }, { base: 4 * GiB, size: 1020 * GiB }], // 1 TiB in all, instant
      confidential: true,                                                    // every RAM page starts private
    });

    // A peer device's BAR with 256 MiB of device memory, exposed as P2P pages owned by provider 1.
    const bar = 64 * 1024 * GiB;
    mem.addMmio(bar, 256 * MiB, { name: "0000:03:00.0 BAR2", owner: "0000:03:00.0", backing: new SparseStore(256 * MiB) });
    mem.pages.addZoneDevice(bar, 256 * MiB, { owner: 1, kind: "p2pdma" });

    // A 64 MiB bounce pool below 4 GiB, shared with the host like swiotlb in a confidential guest.
    const pool = mem.allocator.allocPages(16384, { below: 4 * GiB });
    mem.setMemoryDecrypted(pool, 16384);

    mem.write(pool + 4090, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])); // crosses a page boundary
    const back = mem.read(pool + 4090, 8);                             // [1, 2, ..., 8]

    const flags = mem.pages.flags(pfnOf(pool));                        // Allocated (no longer Encrypted)
    const p2p = mem.pages.flags(pfnOf(bar)) & PageFlag.P2pdma;        // set: a P2P page
    let fault = "";
    try {
      mem.read(2 * GiB, 4);                                            // the hole between 2 and 4 GiB
    } catch (e) {
      if (e instanceof UnmappedAddressError) fault = e.message;
    }
    const counters = trace.counters.snapshot().nonZero();

    expect([...back]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(flags).toBe(PageFlag.Allocated);
    expect(p2p).toBe(PageFlag.P2pdma);
    expect(fault).toBe("read: physical address 0x80000000 is in a hole (no RAM or MMIO region covers it)");
    expect(counters).toEqual({ MemReadBytes: 8, MemWriteBytes: 8, MemPagesMaterialised: 2, PageAllocs: 16384, PageDescLookups: 2 });
    expect(mem.materialisedPages).toBe(2);
    expect(trace.counters.get(Counter.PageFrees)).toBe(0);
  });
});
