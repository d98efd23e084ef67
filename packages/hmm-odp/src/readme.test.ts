import { expect, it } from "vitest";
// The README example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { DmirrorDevice, hmmDmirrorCmd, MADV_DONTNEED, Mm, MmSystem } from "./index.js";

it("README example", () => {
  const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const dev = kernel.device("0000:01:00.0");
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys); // a process
  const mdev = new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: 64 * GiB, devmemSize: 16 * MiB, ownerId: 0x10000 });

  const buf = mm.mmap(16 * PAGE_SIZE); // private anonymous memory, not faulted in yet
  mm.write(buf, new TextEncoder().encode("hello from the CPU"));

  // The device mirrors the process; in DMA mode its translations are hmm_dma_map IOVAs.
  const mirror = mdev.open(mm, { dev, start: buf, size: 16 * PAGE_SIZE });
  const seen = new Uint8Array(18);
  mirror.deviceRead(buf, seen); // faults: read_begin, hmm_range_fault, lock, read_retry, link + sync

  mm.madvise(buf, PAGE_SIZE, MADV_DONTNEED); // CLEAR: the mirror zaps, the IOVA link is undone
  const after = mirror.liveTranslations(buf, buf + PAGE_SIZE);

  const cmd = hmmDmirrorCmd(buf + PAGE_SIZE, 4);
  mirror.migrateToDev(cmd); // pages 1-4 move to device-private memory

  expect(new TextDecoder().decode(seen)).toBe("hello from the CPU");
  expect(after).toBe(0);
  expect(cmd.cpages).toBe(4);
  expect(mm.pteAt(buf + PAGE_SIZE)?.kind).toBe(5); // PteKind.DEVICE_PRIVATE
  expect(mm.read(buf + 2 * PAGE_SIZE, 1)).toEqual(new Uint8Array(1)); // a CPU access migrates it back
  mirror.close();
  mm.exit();
  expect(sys.pagesInUse).toBe(0);
});
