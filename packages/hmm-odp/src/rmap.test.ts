import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { hmmDmirrorCmd } from "./dmirror.js";
import { migrateDeviceFinalize, migrateDevicePages, migrateDeviceRange } from "./migrate.js";
import { PteKind } from "./pte.js";
import { cpuFillInts, cpuInts, firstMismatch, hmmRig } from "./test-fixtures.js";

// Eviction of device pages shared by a parent and a child after fork: migrate_device_range finds every
// mapping (try_to_migrate through the anon_vma's reverse map) and migrate_device_finalize restores every
// one (remove_migration_ptes), each onto the new system page.

const N = 8;

for (const coherent of [false, true]) {
  describe(`eviction of ${coherent ? "coherent" : "device-private"} pages mapped in two processes after fork`, () => {
    function forkedOnDevice() {
      const rig = hmmRig({ coherent });
      const { mm, mdev0 } = rig;
      const d = rig.open();
      const ptr = mm.mmap(N * PAGE_SIZE);
      cpuFillInts(mm, ptr, N * PAGE_SIZE, (i) => i);
      const cmd = hmmDmirrorCmd(ptr, N);
      expect(d.migrateToDev(cmd)).toBe(0);
      expect(cmd.cpages).toBe(N);
      expect(mdev0.pagemap.allocatedPages).toBe(N);
      const child = mm.fork();
      const kind = coherent ? PteKind.PRESENT : PteKind.DEVICE_PRIVATE;
      for (let p = 0; p < N; p++) {
        const at = ptr + p * PAGE_SIZE;
        expect(mm.pteAt(at)?.kind).toBe(kind);
        expect(child.pteAt(at)?.pfn).toBe(mm.pteAt(at)?.pfn);
      }
      return { ...rig, d, ptr, child };
    }

    it("restores both mappings onto one system page with a reference each, and frees the device pages", () => {
      const { mm, child, ptr, sys, mdev0 } = forkedOnDevice();
      mdev0.release();
      expect(mdev0.pagemap.allocatedPages).toBe(0);
      const p = mdev0.pagemap;
      for (let i = 0; i < N; i++) {
        const at = ptr + i * PAGE_SIZE;
        const parent = mm.pteAt(at);
        const kid = child.pteAt(at);
        expect(parent?.kind).toBe(PteKind.PRESENT);
        expect(kid?.kind).toBe(PteKind.PRESENT);
        expect(kid?.pfn).toBe(parent?.pfn);
        const pfn = parent?.pfn ?? 0;
        expect(pfn >= p.startPfn && pfn < p.startPfn + p.nrPages).toBe(false);
        expect(sys.refCount(pfn)).toBe(2);
        // Still copy-on-write: neither may write the shared page in place.
        expect(parent?.write).toBe(false);
        expect(kid?.write).toBe(false);
      }
      // Both read the bytes the device page held, from the present entries.
      expect(firstMismatch(cpuInts(mm, ptr, N * PAGE_SIZE), (i) => i)).toBe(-1);
      expect(firstMismatch(cpuInts(child, ptr, N * PAGE_SIZE), (i) => i)).toBe(-1);
      // A write by the child copies; the parent keeps its bytes, and then owns its page alone.
      const shared = mm.pteAt(ptr)?.pfn ?? 0;
      cpuFillInts(child, ptr, PAGE_SIZE, () => -1);
      expect(child.pteAt(ptr)?.pfn).not.toBe(shared);
      expect(sys.refCount(shared)).toBe(1);
      expect(cpuInts(mm, ptr, 8)[1]).toBe(1);
      child.exit();
      expect(mm.munmap(ptr, N * PAGE_SIZE)).toBe(0);
      expect(sys.refCount(shared)).toBe(0);
    });

    it("puts both device entries back when the destination could not be allocated", () => {
      const { mm, child, ptr, sys, mdev0 } = forkedOnDevice();
      const p = mdev0.pagemap;
      const md = migrateDeviceRange(sys, p.startPfn, p.nrPages);
      const first = (mm.pteAt(ptr)?.pfn ?? 0) - p.startPfn;
      expect(md.mapCount(first)).toBe(2);
      expect(mm.pteAt(ptr)?.kind).toBe(PteKind.MIGRATION);
      expect(child.pteAt(ptr)?.kind).toBe(PteKind.MIGRATION);
      // No destination pages (dst all 0): nothing migrates.
      migrateDevicePages(md);
      migrateDeviceFinalize(sys, md);
      const kind = coherent ? PteKind.PRESENT : PteKind.DEVICE_PRIVATE;
      for (const who of [mm, child]) {
        expect(who.pteAt(ptr)?.kind).toBe(kind);
        expect(who.pteAt(ptr)?.pfn).toBe(p.startPfn + first);
      }
      expect(mdev0.pagemap.allocatedPages).toBe(N);
      expect(firstMismatch(cpuInts(child, ptr, N * PAGE_SIZE), (i) => i)).toBe(-1);
    });
  });
}
