// @dmasim/dmabuf: sharing a buffer between drivers with dma-buf. An exporter (here the system heap, in
// 16 KiB chunks) owns the memory; an importer device attaches and maps the buffer for its own DMA, and
// the exporter's map_dma_buf maps the chunks into one IOVA range for that device.
import { Counter, DmaBufSystem, SystemHeap, dmaBufAttach, dmaBufDetach, dmaBufDeviceRead, dmaBufMapAttachmentUnlocked, dmaBufPut, dmaBufUnmapAttachmentUnlocked } from "@dmasim/dmabuf";
import { DmaDirection, createDmaKernel } from "@dmasim/dma";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";

const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
const kernel = createDmaKernel(platform, { iommuMode: "strict" });
const sys = new DmaBufSystem(kernel, { debug: "throw" });

// The exporter: a 64 KiB buffer from the system heap, filled by the CPU.
const heap = new SystemHeap(sys, { chunkBytes: 4 * PAGE_SIZE });
const buf = heap.allocate(16 * PAGE_SIZE);
heap.cpuWrite(buf, 5 * PAGE_SIZE, new TextEncoder().encode("shared with dma-buf"));

// The importer: attach, map for DMA, let the device read, unmap, detach.
const attach = dmaBufAttach(buf, kernel.device("0000:01:00.0"));
if (typeof attach === "number") throw new Error(`dma_buf_attach: ${attach}`);
const before = platform.trace.counters.snapshot();
const sgt = dmaBufMapAttachmentUnlocked(attach, DmaDirection.BIDIRECTIONAL);
if (typeof sgt === "number") throw new Error(`dma_buf_map_attachment: ${sgt}`);
console.log(`mapped ${buf.size} bytes as ${sgt.nents} DMA segment(s)`);
const seen = new Uint8Array(19);
dmaBufDeviceRead(attach, sgt, 5 * PAGE_SIZE, seen);
console.log(`the importer's device reads "${new TextDecoder().decode(seen)}"`);
const d = platform.trace.counters.snapshot().diff(before);
console.log(`DmaIovaTryAllocs ${d.get(Counter.DmaIovaTryAllocs)}, PteWrites ${d.get(Counter.PteWrites)}, DmaIovaSyncs ${d.get(Counter.DmaIovaSyncs)}`);
dmaBufUnmapAttachmentUnlocked(attach, sgt, DmaDirection.BIDIRECTIONAL);
dmaBufDetach(buf, attach);
dmaBufPut(buf); // the last reference: the heap frees its pages
console.log(`buffers left: ${sys.buffers.size}`);
// Output:
// mapped 65536 bytes as 1 DMA segment(s)
// the importer's device reads "shared with dma-buf"
// DmaIovaTryAllocs 1, PteWrites 16, DmaIovaSyncs 1
// buffers left: 0
