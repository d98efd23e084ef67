import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HmmErrno, PROT_NONE, PROT_READ, PROT_WRITE, VM_MIXEDMAP } from "./constants.js";
import {
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HmmDmirrorIoctl,
  hmmDmirrorCmd,
} from "./dmirror.js";
import type { Dmirror, DmirrorDevice, DmirrorFaultStep, HmmDmirrorCmd } from "./dmirror.js";
import { FOLL_LONGTERM, FOLL_WRITE, getUserPages, putUserPages } from "./gup.js";
import { MADV_FREE, MADV_HUGEPAGE, MREMAP_DONTUNMAP } from "./mm.js";
import { PteKind } from "./pte.js";
import type { Mm } from "./mm.js";
import { HMM_BUFFER_SIZE, cpuFillInts, cpuInts, firstMismatch, hmmRig as hmmRigOf, ints } from "./test-fixtures.js";
import type { RigOptions } from "./test-fixtures.js";

// A port of tools/testing/selftests/mm/hmm-tests.c: fixture `hmm` with its variants hmm_device_private and
// hmm_device_coherent, and `hmm2` (two devices) with hmm2_device_private and hmm2_device_coherent. Every
// test runs against both memory types, as upstream does, with upstream's per-type expectations.

const npages = HMM_BUFFER_SIZE / PAGE_SIZE;
const size = HMM_BUFFER_SIZE;
const NTIMES = 10;
const TWOMEG = 2 * 1024 * 1024;
const { EFAULT, EPERM, ENOENT, EINVAL } = HmmErrno;

/** The opening of many upstream tests: one mirror, a private anonymous buffer holding 0, 1, 2, ... and a command over it. */
function filledBufferOf(coherent: boolean) {
  const { mm, open } = hmmRigOf({ coherent });
  const d = open();
  const ptr = mm.mmap(size);
  cpuFillInts(mm, ptr, size, (i) => i);
  return { mm, d, ptr, cmd: hmmDmirrorCmd(ptr, npages) };
}

/** What upstream checks after a migrate or exclusive ioctl: every page was reported and reads 0, 1, 2, ... */
function expectAllPagesRead(cmd: HmmDmirrorCmd): void {
  expect(cmd.cpages).toBe(npages);
  expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
}

/** The device writes 0, 1, 2, ... over `pages` pages at ptr in one fault, and the CPU reads them back. */
function expectDeviceWriteLands(d: Dmirror, mm: Mm, ptr: number, pages: number): void {
  const cmd = hmmDmirrorCmd(ptr, pages);
  const m = ints(cmd.ptr);
  for (let i = 0; i < m.length; i++) m[i] = i;
  expect(d.write(cmd)).toBe(0);
  expect(cmd.cpages).toBe(pages);
  expect(cmd.faults).toBe(1);
  expect(firstMismatch(cpuInts(mm, ptr, pages * PAGE_SIZE), (i) => i)).toBe(-1);
}

/** A forked child's own mirror writes cmd (0, -1, -2, ...) over the buffer in one fault and the child reads it; then both go. */
function childDeviceWrite(cd: Dmirror, child: Mm, ptr: number, cmd: HmmDmirrorCmd): void {
  expect(cd.write(cmd)).toBe(0);
  expect(cmd.cpages).toBe(npages);
  expect(cmd.faults).toBe(1);
  expect(firstMismatch(cpuInts(child, ptr, size), (i) => -i)).toBe(-1);
  cd.close();
  child.exit();
}

const VARIANTS = [
  { name: "hmm_device_private, hmm2_device_private", coherent: false },
  { name: "hmm_device_coherent, hmm2_device_coherent", coherent: true },
] as const;

// Generous timeouts: the whole port runs in a few seconds alone, more on a loaded machine.
describe.each(VARIANTS)("hmm-tests.c ($name)", { timeout: 60_000 }, ({ coherent }) => {
  /** hmm_is_coherent_type(variant->device_number). */
  const isCoherent = coherent;
  const hmmRig = (options: RigOptions = {}) => hmmRigOf({ ...options, coherent });
  const filledBuffer = () => filledBufferOf(coherent);

  it("open_close", () => {
    const { mm, open } = hmmRig();
    const d = open();
    expect(mm.subscriptions.itree).toContain(d.notifier);
    d.close();
    expect(mm.subscriptions.itree).toHaveLength(0);
  });

  it("anon_read", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size, { prot: PROT_READ | PROT_WRITE });
    // The first two pages stay pte_none / zero page; the rest is initialised.
    const init = new Uint8Array(size - 2 * PAGE_SIZE);
    const iv = ints(init);
    for (let i = 0; i < iv.length; i++) iv[i] = i + (2 * PAGE_SIZE) / 4;
    mm.write(ptr + 2 * PAGE_SIZE, init);
    expect(mm.mprotect(ptr, size, PROT_READ)).toBe(0);
    expect(cpuInts(mm, ptr + PAGE_SIZE, 4)[0]).toBe(0);
    const cmd = hmmDmirrorCmd(ptr, npages);
    expect(d.read(cmd)).toBe(0);
    expect(cmd.cpages).toBe(npages);
    expect(cmd.faults).toBe(1);
    const m = ints(cmd.ptr);
    expect(firstMismatch(m, () => 0, 0, (2 * PAGE_SIZE) / 4)).toBe(-1);
    expect(firstMismatch(m, (i) => i, (2 * PAGE_SIZE) / 4)).toBe(-1);
  });

  it("anon_read_prot", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    const m = ints(cmd.ptr);
    for (let i = 0; i < m.length; i++) m[i] = -i;
    expect(mm.mprotect(ptr, size, PROT_NONE)).toBe(0);
    expect(d.read(cmd)).toBe(-EFAULT);
    expect(mm.mprotect(ptr, size, PROT_READ)).toBe(0);
    expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i)).toBe(-1);
    expect(firstMismatch(m, (i) => -i)).toBe(-1);
  });

  it("anon_write", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size);
    expectDeviceWriteLands(d, mm, ptr, npages);
  });

  it("anon_write_prot", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size, { prot: PROT_READ });
    const one = hmmDmirrorCmd(ptr, 1);
    expect(d.read(one)).toBe(0);
    expect(one.cpages).toBe(1);
    expect(one.faults).toBe(1);
    const cmd = hmmDmirrorCmd(ptr, npages);
    const m = ints(cmd.ptr);
    for (let i = 0; i < m.length; i++) m[i] = i;
    expect(d.write(cmd)).toBe(-EPERM);
    expect(firstMismatch(cpuInts(mm, ptr, size), () => 0)).toBe(-1);
    expect(mm.mprotect(ptr, size, PROT_READ | PROT_WRITE)).toBe(0);
    expect(d.write(cmd)).toBe(0);
    expect(cmd.cpages).toBe(npages);
    expect(cmd.faults).toBe(1);
    expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i)).toBe(-1);
  });

  it("anon_write_child", () => {
    for (const migrate of [false, true]) {
      const { mm, open } = hmmRig();
      const d = open();
      const ptr = mm.mmap(size);
      cpuFillInts(mm, ptr, size, (i) => i);
      const cmd = hmmDmirrorCmd(ptr, npages);
      const m = ints(cmd.ptr);
      for (let i = 0; i < m.length; i++) m[i] = -i;
      if (migrate) {
        const mig = hmmDmirrorCmd(ptr, npages);
        expect(d.migrateToDev(mig)).toBe(0);
        expect(mig.cpages).toBe(npages);
      }
      const child = mm.fork();
      // The child sees the parent's values, and its own mirror writes its own copy.
      expect(firstMismatch(cpuInts(child, ptr, size), (i) => i)).toBe(-1);
      childDeviceWrite(open(0, child), child, ptr, cmd);
      // The parent's buffer did not change.
      expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i)).toBe(-1);
    }
  });

  it("anon_write_child_shared", () => {
    const { mm, open } = hmmRig();
    const ptr = mm.mmap(size, { shared: true });
    cpuFillInts(mm, ptr, size, (i) => i);
    const cmd = hmmDmirrorCmd(ptr, npages);
    const m = ints(cmd.ptr);
    for (let i = 0; i < m.length; i++) m[i] = -i;
    const child = mm.fork();
    expect(firstMismatch(cpuInts(child, ptr, size), (i) => i)).toBe(-1);
    childDeviceWrite(open(0, child), child, ptr, cmd);
    // MAP_SHARED: the parent sees what the child's device wrote.
    expect(firstMismatch(cpuInts(mm, ptr, size), (i) => -i)).toBe(-1);
  });

  it("anon_write_huge", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const base = mm.mmap(2 * TWOMEG);
    const map = Math.ceil(base / TWOMEG) * TWOMEG;
    expect(mm.madvise(map, TWOMEG, MADV_HUGEPAGE)).toBe(0);
    const n = TWOMEG / PAGE_SIZE;
    expectDeviceWriteLands(d, mm, map, n);
    expect(mm.pteAt(map)?.pmd).toBe(true);
  });

  it("anon_write_hugetlbfs", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(TWOMEG, { hugetlb: true });
    const n = TWOMEG / PAGE_SIZE;
    expectDeviceWriteLands(d, mm, ptr, n);
  });

  it("file_read", () => {
    const { mm, sys, open } = hmmRig();
    const d = open();
    const content = new Uint8Array(size);
    const cv = ints(content);
    for (let i = 0; i < cv.length; i++) cv[i] = i;
    const file = sys.createFile("hmm-test-file", size, content);
    const ptr = mm.mmap(size, { prot: PROT_READ, shared: true, file });
    const cmd = hmmDmirrorCmd(ptr, npages);
    expect(d.read(cmd)).toBe(0);
    expect(cmd.cpages).toBe(npages);
    expect(cmd.faults).toBe(1);
    expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
  });

  it("file_write", () => {
    const { mm, sys, open } = hmmRig();
    const d = open();
    const file = sys.createFile("hmm-test-file", size);
    const ptr = mm.mmap(size, { shared: true, file });
    expectDeviceWriteLands(d, mm, ptr, npages);
    // pread: the device's writes reached the file.
    expect(firstMismatch(ints(sys.fileRead(file, 0, size)), (i) => i)).toBe(-1);
  });

  it("migrate", () => {
    const { d, cmd } = filledBuffer();
    expect(d.migrateToDev(cmd)).toBe(0);
    expectAllPagesRead(cmd);
  });

  it("migrate_fault", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    expect(d.migrateToDev(cmd)).toBe(0);
    expectAllPagesRead(cmd);
    // Fault half the pages back to system memory and check them.
    expect(firstMismatch(cpuInts(mm, ptr, size / 2), (i) => i)).toBe(-1);
    const again = hmmDmirrorCmd(ptr, npages);
    expect(d.migrateToDev(again)).toBe(0);
    expectAllPagesRead(again);
  });

  it("migrate_release", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    expect(d.migrateToDev(cmd)).toBe(0);
    expectAllPagesRead(cmd);
    expect(d.ioctl(7, cmd)).toBe(0);
    expect(d.mdevice.pagemap.allocatedPages).toBe(0);
    expect(firstMismatch(cpuInts(mm, ptr, size / 2), (i) => i)).toBe(-1);
  });

  it("migrate_shared", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size, { shared: true });
    const cmd = hmmDmirrorCmd(ptr, npages);
    expect(d.migrateToDev(cmd)).toBe(-ENOENT);
  });

  it("migrate_mixed", () => {
    const { mm, open } = hmmRig();
    const d0 = open(0);
    const d1 = open(1);
    const n = 6;
    const p = mm.mmap(n * PAGE_SIZE, { prot: PROT_NONE });
    expect(d1.migrateToDev(hmmDmirrorCmd(p, n))).toBe(-EINVAL);
    expect(mm.munmap(p + PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(d1.migrateToDev(hmmDmirrorCmd(p, 3))).toBe(-EINVAL);
    // Page 2: read-only zero page; page 3: read-only data; pages 4-5: read-write data.
    expect(mm.mprotect(p + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ)).toBe(0);
    const val = cpuInts(mm, p + 2 * PAGE_SIZE, 4)[0] ?? -1;
    expect(val + 3).toBe(3);
    expect(mm.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
    cpuFillInts(mm, p + 3 * PAGE_SIZE, 4, () => val + 3);
    expect(mm.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ)).toBe(0);
    expect(mm.mprotect(p + 4 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
    cpuFillInts(mm, p + 4 * PAGE_SIZE, 4, () => val + 3);
    cpuFillInts(mm, p + 5 * PAGE_SIZE, 4, () => val + 3);
    const four = hmmDmirrorCmd(p + 2 * PAGE_SIZE, 4);
    expect(d1.migrateToDev(four)).toBe(0);
    expect(four.cpages).toBe(4);
    // Page 5 is on device 1: device 0 does not collect it.
    expect(d0.migrateToDev(hmmDmirrorCmd(p + 5 * PAGE_SIZE, 1))).toBe(-ENOENT);
  });

  it("migrate_multiple", () => {
    const { mm, open } = hmmRig();
    const d = open();
    for (let k = 0; k < NTIMES; k++) {
      const ptr = mm.mmap(size);
      cpuFillInts(mm, ptr, size, (i) => i);
      const cmd = hmmDmirrorCmd(ptr, npages);
      expect(d.migrateToDev(cmd)).toBe(0);
      expectAllPagesRead(cmd);
      // Coherent memory has no CPU fault to bring it back: it is migrated back explicitly.
      if (isCoherent) {
        expect(d.migrateToSys(cmd)).toBe(0);
        expect(cmd.cpages).toBe(npages);
      }
      expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i)).toBe(-1);
      expect(mm.munmap(ptr, size)).toBe(0);
    }
    expect(d.mdevice.pagemap.allocatedPages).toBe(0);
  });

  it("migrate_dirty_page", () => {
    // Upstream moves itself into a fresh cgroup and writes 1 GiB to its memory.reclaim: reclaim of every
    // page of the process. Here that is mm.swapOut of each page (try_to_unmap + pageout).
    const reclaim = (mm: Mm, ptr: number): void => {
      for (let i = 0; i < npages; i++) mm.swapOut(ptr + i * PAGE_SIZE);
    };
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size);
    cpuFillInts(mm, ptr, size, () => 0);
    reclaim(mm, ptr);
    // Make sure at least some pages got paged to disk (upstream SKIPs otherwise, reading /proc/self/pagemap).
    let swapped = 0;
    for (let i = 0; i < npages; i++) if (mm.pteAt(ptr + i * PAGE_SIZE)?.kind === PteKind.SWAP) swapped++;
    expect(swapped).toBe(npages);
    // Fault pages back in from swap as clean pages.
    expect(firstMismatch(cpuInts(mm, ptr, size), () => 0)).toBe(-1);
    // Dirty the pte.
    cpuFillInts(mm, ptr, size, (i) => i);
    // Attempt to migrate memory to device. This might fail if some pages are/were backed by swap but
    // that's ok. (In the model the swap cache's reference keeps every page from migrating.)
    d.migrateToDev(hmmDmirrorCmd(ptr, npages));
    reclaim(mm, ptr);
    // Check we still see the updated data after restoring from swap.
    expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i)).toBe(-1);
  });

  it("anon_read_multiple", () => {
    const { mm, open } = hmmRig();
    const d = open();
    for (let k = 0; k < NTIMES; k++) {
      const ptr = mm.mmap(size);
      cpuFillInts(mm, ptr, size, (i) => i + k);
      const cmd = hmmDmirrorCmd(ptr, npages);
      expect(d.read(cmd)).toBe(0);
      expect(cmd.cpages).toBe(npages);
      expect(cmd.faults).toBe(1);
      expect(firstMismatch(ints(cmd.ptr), (i) => i + k)).toBe(-1);
      expect(mm.munmap(ptr, size)).toBe(0);
    }
  });

  it("anon_teardown", () => {
    // Upstream races a thread's munmap of the second half against the device READ at a random delay;
    // here the munmap is injected at each step of the fault loop in turn (and not at all).
    const steps: (DmirrorFaultStep | undefined)[] = [undefined, "after-read-begin", "in-hmm-range-fault", "before-driver-lock", "before-read-retry"];
    let succeeded = 0;
    let failed = 0;
    for (const [k, step] of steps.entries()) {
      const { mm, open } = hmmRig();
      const d = open();
      const ptr = mm.mmap(size);
      cpuFillInts(mm, ptr, size, (i) => i + k);
      let fired = false;
      if (step !== undefined) {
        d.inject[step] = () => {
          if (fired) return;
          fired = true;
          mm.munmap(ptr + size / 2, size / 2);
        };
      }
      const cmd = hmmDmirrorCmd(ptr, npages);
      const rc = d.read(cmd);
      if (rc === 0) {
        succeeded++;
        expect(cmd.cpages).toBe(npages);
        expect(cmd.faults).toBe(1);
        expect(firstMismatch(ints(cmd.ptr), (i) => i + k)).toBe(-1);
      } else {
        failed++;
        expect(rc).toBe(-EFAULT);
        // A clean failure: the mirror holds nothing of the unmapped half.
        expect(d.liveTranslations(ptr + size / 2, ptr + size)).toBe(0);
      }
    }
    expect(succeeded).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
  });

  it("mixedmap", () => {
    // mmap of the dmirror fd (MAP_PRIVATE, read/write): the driver inserts its own pages (VM_MIXEDMAP).
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = d.mmap(PAGE_SIZE);
    expect(mm.findVma(ptr)?.flags ?? 0).toSatisfy((f: number) => (f & VM_MIXEDMAP) !== 0);
    const cmd = hmmDmirrorCmd(ptr, 1);
    expect(d.snapshot(cmd)).toBe(0);
    expect(cmd.cpages).toBe(1);
    expect(cmd.ptr[0]).toBe(HMM_DMIRROR_PROT_READ);
  });

  it("snapshot", () => {
    const { mm, open } = hmmRig();
    const d0 = open(0);
    const d1 = open(1);
    const n = 7;
    const p = mm.mmap(n * PAGE_SIZE, { prot: PROT_NONE });
    expect(mm.munmap(p + PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(mm.mprotect(p + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ)).toBe(0);
    expect((cpuInts(mm, p + 2 * PAGE_SIZE, 4)[0] ?? -1) + 3).toBe(3);
    expect(mm.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
    cpuFillInts(mm, p + 3 * PAGE_SIZE, 4, () => 3);
    expect(mm.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ)).toBe(0);
    expect(mm.mprotect(p + 4 * PAGE_SIZE, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
    cpuFillInts(mm, p + 4 * PAGE_SIZE, 4, () => 3);
    cpuFillInts(mm, p + 5 * PAGE_SIZE, 4, () => 3);
    const m5 = hmmDmirrorCmd(p + 5 * PAGE_SIZE, 1);
    expect(d0.migrateToDev(m5)).toBe(0);
    expect(m5.cpages).toBe(1);
    const m6 = hmmDmirrorCmd(p + 6 * PAGE_SIZE, 1);
    expect(d1.migrateToDev(m6)).toBe(0);
    expect(m6.cpages).toBe(1);
    const cmd = hmmDmirrorCmd(p, n);
    expect(d0.snapshot(cmd)).toBe(0);
    expect(cmd.cpages).toBe(n);
    const m = cmd.ptr;
    expect(m[0]).toBe(HMM_DMIRROR_PROT_ERROR);
    expect(m[1]).toBe(HMM_DMIRROR_PROT_ERROR);
    expect(m[2]).toBe(HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ);
    expect(m[3]).toBe(HMM_DMIRROR_PROT_READ);
    expect(m[4]).toBe(HMM_DMIRROR_PROT_WRITE);
    if (!isCoherent) {
      expect(m[5]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
      expect(m[6]).toBe(HMM_DMIRROR_PROT_NONE);
    } else {
      // Coherent device pages are normal pfns to hmm_range_fault, whichever device owns them.
      expect(m[5]).toBe(HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE);
      expect(m[6]).toBe(HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE);
    }
  });

  it("compound", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(TWOMEG, { hugetlb: true });
    const n = TWOMEG / PAGE_SIZE;
    cpuFillInts(mm, ptr, TWOMEG, (i) => i);
    const cmd = hmmDmirrorCmd(ptr, n);
    expect(d.snapshot(cmd)).toBe(0);
    expect(cmd.cpages).toBe(n);
    expect(cmd.ptr.subarray(0, n).every((b) => b === (HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD))).toBe(true);
    expect(mm.mprotect(ptr, TWOMEG, PROT_READ)).toBe(0);
    expect(d.snapshot(cmd)).toBe(0);
    expect(cmd.ptr.subarray(0, n).every((b) => b === (HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD))).toBe(true);
  });

  it("double_map", () => {
    const { mm, open } = hmmRig();
    const d0 = open(0);
    const d1 = open(1);
    const n = 6;
    const sz = n * PAGE_SIZE;
    const ptr = mm.mmap(sz);
    cpuFillInts(mm, ptr, sz, (i) => i);
    expect(mm.mprotect(ptr, sz, PROT_READ)).toBe(0);
    for (const d of [d0, d1]) {
      const cmd = hmmDmirrorCmd(ptr, n);
      expect(d.read(cmd)).toBe(0);
      expect(cmd.cpages).toBe(n);
      expect(cmd.faults).toBe(1);
      expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
    }
    const mig = hmmDmirrorCmd(ptr, n);
    expect(d1.migrateToDev(mig)).toBe(0);
    expect(mig.cpages).toBe(n);
    const cmd = hmmDmirrorCmd(ptr, n);
    expect(d0.read(cmd)).toBe(0);
    expect(cmd.cpages).toBe(n);
    expect(cmd.faults).toBe(1);
    expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
  });

  it("exclusive", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    expect(d.exclusive(cmd)).toBe(0);
    expectAllPagesRead(cmd);
    expect(d.checkExclusive(cmd)).toBe(-EPERM);
    // CPU writes fault the pages back from the device.
    const v = cpuInts(mm, ptr, size);
    for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) + 1;
    mm.write(ptr, new Uint8Array(v.buffer));
    expect(firstMismatch(cpuInts(mm, ptr, size), (i) => i + 1)).toBe(-1);
    expect(d.checkExclusive(cmd)).toBe(0);
  });

  it("exclusive_mprotect", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    expect(d.exclusive(cmd)).toBe(0);
    expectAllPagesRead(cmd);
    expect(mm.mprotect(ptr, size, PROT_READ)).toBe(0);
    expect(d.write(cmd)).toBe(-EPERM);
  });

  it("exclusive_cow", () => {
    const { mm, d, ptr, cmd } = filledBuffer();
    expect(d.exclusive(cmd)).toBe(0);
    expect(cmd.cpages).toBe(npages);
    const child = mm.fork();
    for (const who of [mm, child]) {
      const v = cpuInts(who, ptr, size);
      for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) + 1;
      who.write(ptr, new Uint8Array(v.buffer));
      expect(firstMismatch(cpuInts(who, ptr, size), (i) => i + 1)).toBe(-1);
    }
    child.exit();
  });

  it("hmm_gup_test", () => {
    // gup_test's ioctls on one page each, always with FOLL_WRITE: GUP_BASIC_TEST (get_user_pages),
    // GUP_FAST_BENCHMARK (get_user_pages_fast), PIN_FAST_BENCHMARK with FOLL_LONGTERM and
    // PIN_LONGTERM_BENCHMARK (pin_user_pages, FOLL_LONGTERM): each gets the page and drops it again.
    const gupTestExec = (mm: Mm, addr: number, flags: number): number => {
      const pages = new Uint32Array(1);
      const got = getUserPages(mm, addr, 1, FOLL_WRITE | flags, pages);
      if (got < 0) return -got;
      putUserPages(mm, pages, got);
      return got === 1 ? 0 : EFAULT;
    };
    const { mm, open } = hmmRig();
    const d = open();
    const n = 4;
    const ptr = mm.mmap(n * PAGE_SIZE);
    cpuFillInts(mm, ptr, n * PAGE_SIZE, (i) => i);
    const mig = hmmDmirrorCmd(ptr, n);
    expect(d.migrateToDev(mig)).toBe(0);
    expect(mig.cpages).toBe(n);
    expect(firstMismatch(ints(mig.ptr), (i) => i)).toBe(-1);
    expect(gupTestExec(mm, ptr, 0)).toBe(0);
    expect(gupTestExec(mm, ptr + 1 * PAGE_SIZE, 0)).toBe(0);
    expect(gupTestExec(mm, ptr + 2 * PAGE_SIZE, FOLL_LONGTERM)).toBe(0);
    expect(gupTestExec(mm, ptr + 3 * PAGE_SIZE, FOLL_LONGTERM)).toBe(0);
    // GUP faulted every device-private page back to system memory: the CPU page table maps them writable.
    // Coherent pages are followed where they are; only FOLL_LONGTERM migrates them out.
    const cmd = hmmDmirrorCmd(ptr, n);
    expect(d.snapshot(cmd)).toBe(0);
    expect(cmd.cpages).toBe(n);
    const m = cmd.ptr;
    if (isCoherent) {
      expect(m[0]).toBe(HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE);
      expect(m[1]).toBe(HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE);
    } else {
      expect(m[0]).toBe(HMM_DMIRROR_PROT_WRITE);
      expect(m[1]).toBe(HMM_DMIRROR_PROT_WRITE);
    }
    expect(m[2]).toBe(HMM_DMIRROR_PROT_WRITE);
    expect(m[3]).toBe(HMM_DMIRROR_PROT_WRITE);
    expect(firstMismatch(cpuInts(mm, ptr, n * PAGE_SIZE), (i) => i)).toBe(-1);
  });

  it("hmm_cow_in_device", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const ptr = mm.mmap(size);
    cpuFillInts(mm, ptr, size, (i) => i);
    const mig = hmmDmirrorCmd(ptr, npages);
    expect(d.migrateToDev(mig)).toBe(0);
    expect(mig.cpages).toBe(npages);
    const child = mm.fork();
    // The parent writes the COW pages: each migrates back to system memory first, then is copied.
    cpuFillInts(mm, ptr, size, (i) => i);
    child.exit();
    const cmd = hmmDmirrorCmd(ptr, npages);
    expect(d.snapshot(cmd)).toBe(0);
    expect(cmd.cpages).toBe(npages);
    expect(cmd.ptr.subarray(0, npages).every((b) => b === HMM_DMIRROR_PROT_WRITE)).toBe(true);
  });

  // ---- v6.19 device THP migration (MIGRATE_VMA_SELECT_COMPOUND, MIGRATE_PFN_COMPOUND) ----

  /** The opening of the THP tests: 2 * TWOMEG mapped, the aligned TWOMEG inside it (MADV_HUGEPAGE unless told). */
  function thpBuffer(prot: number, huge = true) {
    const rig = hmmRig();
    const d = rig.open();
    const old = rig.mm.mmap(2 * TWOMEG, { prot });
    const map = Math.ceil(old / TWOMEG) * TWOMEG;
    if (huge) expect(rig.mm.madvise(map, TWOMEG, MADV_HUGEPAGE)).toBe(0);
    return { ...rig, d, old, map, cmd: hmmDmirrorCmd(map, TWOMEG / PAGE_SIZE) };
  }
  const thpPages = TWOMEG / PAGE_SIZE;
  /** The entry kind a page on the device has: a device-private entry, or a present pte to a coherent page. */
  const onDeviceKind = isCoherent ? PteKind.PRESENT : PteKind.DEVICE_PRIVATE;
  /** The model's view of a whole 2 MiB on the device as one compound folio: every entry PMD-mapped, frames consecutive. */
  function expectDeviceThp(mm: Mm, map: number, pagemapOwner: DmirrorDevice): void {
    const head = mm.pteAt(map);
    expect(head?.kind).toBe(onDeviceKind);
    expect(head?.pmd).toBe(true);
    expect(mm.sys.pagemapOf(head?.pfn ?? 0)?.owner).toBe(pagemapOwner);
    expect((head?.pfn ?? 1) % thpPages).toBe(0);
    const tail = mm.pteAt(map + TWOMEG - PAGE_SIZE);
    expect(tail?.pmd).toBe(true);
    expect(tail?.pfn).toBe((head?.pfn ?? 0) + thpPages - 1);
  }

  it("migrate_anon_huge_empty", () => {
    const { mm, d, map, cmd, mdev0, sys } = thpBuffer(PROT_READ);
    const splits = sys.stats.thpSplits;
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), () => 0)).toBe(-1);
    // One compound device folio filled the empty PMD.
    expectDeviceThp(mm, map, mdev0);
    expect(sys.stats.thpSplits).toBe(splits);
  });

  it("migrate_anon_huge_zero", () => {
    const { mm, d, map, cmd, mdev0 } = thpBuffer(PROT_READ);
    // Initialize a read-only zero huge page.
    expect(cpuInts(mm, map, 4)[0]).toBe(0);
    expect(mm.pteAt(map)?.pmd).toBe(true);
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), () => 0)).toBe(-1);
    expectDeviceThp(mm, map, mdev0);
    // Fault pages back to system memory and check them.
    expect(firstMismatch(cpuInts(mm, map, TWOMEG), () => 0)).toBe(-1);
  });

  it("migrate_anon_huge_free", () => {
    const { mm, d, map, cmd, mdev0 } = thpBuffer(PROT_READ | PROT_WRITE);
    cpuFillInts(mm, map, TWOMEG, (i) => i);
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
    // Try freeing it (the kernel once tripped over a device-private PMD here).
    expect(mm.madvise(map, TWOMEG, MADV_FREE)).toBe(0);
    // Device entries are not lazily freed: the folio stays, with its data.
    expectDeviceThp(mm, map, mdev0);
    expect(firstMismatch(cpuInts(mm, map, TWOMEG), (i) => i)).toBe(-1);
  });

  it("migrate_anon_huge_fault", () => {
    const { mm, d, map, cmd, mdev0, sys } = thpBuffer(PROT_READ | PROT_WRITE);
    cpuFillInts(mm, map, TWOMEG, (i) => i);
    expect(mm.pteAt(map)?.pmd).toBe(true);
    const splits = sys.stats.thpSplits;
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
    expectDeviceThp(mm, map, mdev0);
    expect(mdev0.pagemap.allocatedPages).toBe(thpPages);
    // Fault pages back to system memory and check them: the first CPU fault brings the folio back whole.
    expect(firstMismatch(cpuInts(mm, map, TWOMEG), (i) => i)).toBe(-1);
    const pte = mm.pteAt(map + 7 * PAGE_SIZE);
    expect(pte?.pmd).toBe(true);
    expect(sys.stats.thpSplits).toBe(splits);
    if (!isCoherent) {
      expect(pte?.kind).toBe(PteKind.PRESENT);
      expect(mdev0.pagemap.allocatedPages).toBe(0);
    }
  });

  it("migrate_anon_huge_err", () => {
    const { mm, d, map, old, cmd, mdev0, sys } = thpBuffer(PROT_READ | PROT_WRITE);
    cpuFillInts(mm, map, TWOMEG, (i) => i);
    // Migrate memory to device but force a THP allocation error: 4 KiB device pages, the THP split.
    const splits = sys.stats.thpSplits;
    expect(d.ioctl(HmmDmirrorIoctl.FLAGS, hmmDmirrorCmd(map, HMM_DMIRROR_FLAG_FAIL_ALLOC))).toBe(0);
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
    expect(mm.pteAt(map)?.kind).toBe(onDeviceKind);
    expect(mm.pteAt(map)?.pmd).toBe(false);
    expect(sys.stats.thpSplits).toBe(splits + 1);
    expect(d.flags).toBe(0);
    // Try faulting back a single (PAGE_SIZE) page.
    expect(cpuInts(mm, map + 2 * PAGE_SIZE, 4)[0]).toBe(2048);
    // Unmap and remap the region to reset things.
    expect(mm.munmap(old, 2 * TWOMEG)).toBe(0);
    const old2 = mm.mmap(2 * TWOMEG);
    const map2 = Math.ceil(old2 / TWOMEG) * TWOMEG;
    expect(mm.madvise(map2, TWOMEG, MADV_HUGEPAGE)).toBe(0);
    cpuFillInts(mm, map2, TWOMEG, (i) => i);
    // Migrate THP to device.
    const cmd2 = hmmDmirrorCmd(map2, thpPages);
    expect(d.migrateToDev(cmd2)).toBe(0);
    expect(cmd2.cpages).toBe(thpPages);
    expectDeviceThp(mm, map2, mdev0);
    // Force an allocation error when faulting back a THP resident in the device.
    expect(d.ioctl(HmmDmirrorIoctl.FLAGS, hmmDmirrorCmd(map2, HMM_DMIRROR_FLAG_FAIL_ALLOC))).toBe(0);
    expect(d.migrateToSys(cmd2)).toBe(0);
    expect(cpuInts(mm, map2 + 2 * PAGE_SIZE, 4)[0]).toBe(2048);
    // The folio came back as 4 KiB system pages.
    expect(mm.pteAt(map2)?.kind).toBe(PteKind.PRESENT);
    expect(mm.pteAt(map2)?.pmd).toBe(false);
    expect(mdev0.pagemap.allocatedPages).toBe(0);
  });

  it("migrate_anon_huge_zero_err", () => {
    const { mm, d, map, old, cmd } = thpBuffer(PROT_READ);
    // Migrate memory to device but force a THP allocation error.
    expect(d.ioctl(HmmDmirrorIoctl.FLAGS, hmmDmirrorCmd(map, HMM_DMIRROR_FLAG_FAIL_ALLOC))).toBe(0);
    expect(d.migrateToDev(cmd)).toBe(0);
    expect(cmd.cpages).toBe(thpPages);
    expect(firstMismatch(ints(cmd.ptr), () => 0)).toBe(-1);
    expect(mm.pteAt(map)?.pmd).toBe(false);
    // Try faulting back a single (PAGE_SIZE) page.
    expect(cpuInts(mm, map + 2 * PAGE_SIZE, 4)[0]).toBe(0);
    // Unmap and remap the region to reset things.
    expect(mm.munmap(old, 2 * TWOMEG)).toBe(0);
    const old2 = mm.mmap(2 * TWOMEG, { prot: PROT_READ });
    const map2 = Math.ceil(old2 / TWOMEG) * TWOMEG;
    expect(mm.madvise(map2, TWOMEG, MADV_HUGEPAGE)).toBe(0);
    // Initialize buffer in system memory (zero THP page).
    expect(cpuInts(mm, map2, 4)[0]).toBe(0);
    expect(d.ioctl(HmmDmirrorIoctl.FLAGS, hmmDmirrorCmd(map2, HMM_DMIRROR_FLAG_FAIL_ALLOC))).toBe(0);
    const cmd2 = hmmDmirrorCmd(map2, thpPages);
    expect(d.migrateToDev(cmd2)).toBe(0);
    expect(cmd2.cpages).toBe(thpPages);
    // Fault the device memory back and check it.
    expect(firstMismatch(cpuInts(mm, map2, TWOMEG), () => 0)).toBe(-1);
  });

  it("migrate_partial_unmap_fault", () => {
    const ONEMEG = 1 << 20;
    for (const useThp of [false, true]) {
      for (const offset of [0, 512 * 1024, ONEMEG]) {
        const { mm, d, map, cmd, mdev0, sys } = thpBuffer(PROT_READ | PROT_WRITE, useThp);
        cpuFillInts(mm, map, TWOMEG, (i) => i);
        expect(d.migrateToDev(cmd)).toBe(0);
        expect(cmd.cpages).toBe(thpPages);
        expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
        if (useThp) expectDeviceThp(mm, map, mdev0);
        const splits = sys.stats.thpSplits;
        expect(mm.munmap(map + offset, ONEMEG)).toBe(0);
        // The device folio lost the unmapped half; the rest is mapped by 4 KiB device entries.
        if (useThp) {
          expect(sys.stats.thpSplits).toBe(splits + 1);
          expect(mdev0.pagemap.allocatedPages).toBe(thpPages / 2);
          expect(mm.pteAt(offset === 0 ? map + ONEMEG : map)?.pmd).toBe(false);
        }
        // Fault pages back to system memory and check them.
        const got = ints(new Uint8Array(TWOMEG));
        for (let off = 0; off < TWOMEG; off += PAGE_SIZE) {
          if (off >= offset && off < offset + ONEMEG) continue;
          got.set(cpuInts(mm, map + off, PAGE_SIZE), off / 4);
        }
        const skip = (i: number) => i * 4 >= offset && i * 4 < offset + ONEMEG;
        expect(firstMismatch(got, (i) => (skip(i) ? 0 : i))).toBe(-1);
        if (!isCoherent) expect(mdev0.pagemap.allocatedPages).toBe(0);
      }
    }
  });

  it("migrate_remap_fault", () => {
    // Each case also with MREMAP_DONTUNMAP: the pages (on the device or not yet) move, the old range stays
    // mapped and empty.
    for (const before of [false, true]) {
      for (const dontUnmap of [false, true]) {
        for (const useThp of [false, true]) {
          for (const offset of [0, 512 * 1024, 1 << 20]) {
            const rig = hmmRig();
            const { mm, mdev0 } = rig;
            const d = rig.open();
            const old = mm.mmap(8 * TWOMEG);
            const map = Math.ceil(old / TWOMEG) * TWOMEG;
            if (useThp) expect(mm.madvise(map, TWOMEG, MADV_HUGEPAGE)).toBe(0);
            expect(mm.munmap(map + TWOMEG, 2 * TWOMEG)).toBe(0);
            cpuFillInts(mm, map, TWOMEG, (i) => i);
            let ptr = map;
            const remap = (): void => {
              ptr = mm.mremap(map, TWOMEG, TWOMEG, map + TWOMEG + offset, dontUnmap ? MREMAP_DONTUNMAP : 0);
              expect(ptr).toBe(map + TWOMEG + offset);
              // The old range: gone, or (MREMAP_DONTUNMAP) still mapped with nothing in it.
              expect(mm.findVma(map) !== undefined).toBe(dontUnmap);
              if (dontUnmap) expect(mm.pteAt(map)?.kind).toBe(PteKind.NONE);
            };
            if (before) remap();
            const cmd = hmmDmirrorCmd(ptr, thpPages);
            expect(d.migrateToDev(cmd)).toBe(0);
            expect(cmd.cpages).toBe(thpPages);
            expect(firstMismatch(ints(cmd.ptr), (i) => i)).toBe(-1);
            // A THP migrates whole when it stays 2 MiB aligned (offset 0 after the move, or not moved yet).
            if (useThp && (!before || offset === 0)) expectDeviceThp(mm, ptr, mdev0);
            if (!before) remap();
            if (offset !== 0) expect(mm.pteAt(ptr)?.pmd).toBe(false);
            // Fault pages back to system memory and check them.
            expect(firstMismatch(cpuInts(mm, ptr, TWOMEG), (i) => i)).toBe(-1);
            expect(mm.munmap(ptr, TWOMEG)).toBe(0);
            expect(mdev0.pagemap.allocatedPages).toBe(0);
            if (dontUnmap) {
              // The range left behind faults in fresh zeros, and its memory is an ordinary mapping.
              expect(firstMismatch(cpuInts(mm, map, 4 * PAGE_SIZE), () => 0)).toBe(-1);
              cpuFillInts(mm, map, PAGE_SIZE, (i) => i + 7);
              expect(firstMismatch(cpuInts(mm, map, PAGE_SIZE), (i) => i + 7)).toBe(-1);
              expect(mm.munmap(map, TWOMEG)).toBe(0);
            }
          }
        }
      }
    }
  });

});
