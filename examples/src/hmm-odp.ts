// @dmasim/hmm-odp: a device that mirrors a process's address space (lib/test_hmm.c's dmirror). The
// device faults pages in with hmm_range_fault and maps them with hmm_dma_map; when the CPU side changes
// (madvise, munmap, migration) an mmu_interval_notifier invalidates the device's translations first.
import { createDmaKernel } from "@dmasim/dma";
import { DmirrorDevice, MADV_DONTNEED, Mm, MmSystem, PTE_KIND_NAMES, hmmDmirrorCmd } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";

const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
const kernel = createDmaKernel(platform, { iommuMode: "strict" });
const sys = new MmSystem(kernel);
const mm = new Mm(sys); // a process
const mdev = new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: physAddr(64 * GiB), devmemSize: 16 * MiB, ownerId: 0x10000 });

const buf = mm.mmap(16 * PAGE_SIZE); // private anonymous memory, nothing faulted in yet
mm.write(buf, new TextEncoder().encode("hello from the CPU"));

const mirror = mdev.open(mm, { dev: kernel.device("0000:01:00.0"), start: buf, size: 16 * PAGE_SIZE });
const seen = new Uint8Array(18);
mirror.deviceRead(buf, seen); // a device fault: hmm_range_fault, then hmm_dma_map links the page
console.log(`the device reads "${new TextDecoder().decode(seen)}"; live translations ${mirror.liveTranslations(buf, buf + PAGE_SIZE)}`);

mm.madvise(buf, PAGE_SIZE, MADV_DONTNEED); // the notifier zaps the device's copy before the page goes
console.log(`after MADV_DONTNEED: live translations ${mirror.liveTranslations(buf, buf + PAGE_SIZE)}`);

const cmd = hmmDmirrorCmd(buf + PAGE_SIZE, 4);
mirror.migrateToDev(cmd); // pages 1-4 move to device-private memory
const pteOf = (addr: number): string => PTE_KIND_NAMES[mm.pteAt(addr)?.kind ?? 0] ?? "?";
console.log(`migrated ${cmd.cpages} pages; page 2's PTE is ${pteOf(buf + 2 * PAGE_SIZE)}`);
mm.read(buf + 2 * PAGE_SIZE, 1); // a CPU access faults the page back to system memory
console.log(`after a CPU read, page 2's PTE is ${pteOf(buf + 2 * PAGE_SIZE)}`);

mirror.close();
mm.exit();
console.log(`pages still in use after exit: ${sys.pagesInUse}`);
// Output:
// the device reads "hello from the CPU"; live translations 1
// after MADV_DONTNEED: live translations 0
// migrated 4 pages; page 2's PTE is device-private
// after a CPU read, page 2's PTE is present
// pages still in use after exit: 0
