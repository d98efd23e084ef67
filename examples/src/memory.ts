// @dmasim/memory: the machine's physical address space. RAM and MMIO regions with holes between them,
// a struct page descriptor per page frame, and sparse bytes, so a terabyte of RAM costs nothing until
// it is written.
import { GiB, MiB, PageFlag, PhysicalMemory, SparseStore, UnmappedAddressError, pfnOf, physAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";

const trace = new Trace();
const mem = new PhysicalMemory(trace, {
  ram: [
    { base: 0, size: 2 * GiB }, // low memory, then the PCI hole, then the rest above 4 GiB
    { base: 4 * GiB, size: 1020 * GiB },
  ],
});

// A peer device's BAR, exposed as ZONE_DEVICE P2P pages (what pci_p2pdma_add_resource does).
const bar = physAddr(64 * 1024 * GiB);
mem.addMmio(bar, 256 * MiB, { name: "0000:03:00.0 BAR2", owner: "0000:03:00.0", backing: new SparseStore(256 * MiB) });
mem.pages.addZoneDevice(bar, 256 * MiB, { owner: 1, kind: "p2pdma" });

// Two pages from the page allocator; a write across their boundary.
const buf = mem.allocator.allocPages(2);
mem.write(physAddr(buf + 4090), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
console.log(`read back across the page boundary: ${mem.read(physAddr(buf + 4090), 8).join(",")}`);
console.log(`the BAR's first page is a P2P page: ${(mem.pages.flags(pfnOf(bar)) & PageFlag.P2PDMA) !== 0}`);

// The hole between 2 and 4 GiB is no memory at all: an access there is refused.
try {
  mem.read(physAddr(2 * GiB), 4);
} catch (e) {
  if (!(e instanceof UnmappedAddressError)) throw e;
  console.log(`${e.code}: ${e.message}`);
}
console.log(`counters: ${JSON.stringify(trace.counters.snapshot().nonZero())}`);
// Output:
// read back across the page boundary: 1,2,3,4,5,6,7,8
// the BAR's first page is a P2P page: true
// EFAULT: read: physical address 0x80000000 is in a hole (no RAM or MMIO region covers it)
// counters: {"MemReadBytes":8,"MemWriteBytes":8,"MemPagesMaterialised":2,"PageAllocs":2,"PageDescLookups":1}
