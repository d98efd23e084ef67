import { describe, expect, it } from "vitest";
import { MiB, PAGE_SIZE } from "@dmasim/memory";
import { DmaBufErrno, DmaBufImporter, GpuVramExporter, VfioPciCoreDevice, dmaBufDynamicAttach } from "./index.js";
import type { DmaBuf } from "./index.js";
import { GPU, dmaBufRig } from "./test-fixtures.js";

describe("6.19 against 7.1", () => {
  for (const version of ["6.19", "7.1"] as const) {
    it(`${version}: a dynamic importer's map ${version === "6.19" ? "pins (MOVE_NOTIFY off), so the buffer cannot move" : "does not pin, so the buffer moves"}`, () => {
      const { sys, importer } = dmaBufRig({ version });
      const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: MiB });
      const buf = gpu.allocate(2 * MiB);
      const imp = DmaBufImporter.attach(buf, importer) as DmaBufImporter;
      expect(imp.ensureMapped()).toBe(0);
      expect(gpu.migrate(buf, "ram")).toBe(version === "6.19" ? -DmaBufErrno.EBUSY : 2);
      imp.close();
      expect(gpu.migrate(buf, "ram")).toBe(version === "6.19" ? 2 : 0);
    });

    it(`${version}: importer ops without a callback are ${version === "6.19" ? "refused (-EINVAL)" : "allowed (not revocable)"}`, () => {
      const { sys, importer } = dmaBufRig({ version, debug: "collect" });
      const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: MiB });
      const a = dmaBufDynamicAttach(gpu.allocate(MiB), importer, { allowPeer2peer: true });
      if (version === "6.19") expect(a).toBe(-DmaBufErrno.EINVAL);
      else expect(typeof a).not.toBe("number");
    });

    it(`${version}: VFIO ${version === "6.19" ? "refuses pinned importers" : "takes revocable pinned importers"}`, () => {
      const { sys, importer } = dmaBufRig({ version });
      const vdev = new VfioPciCoreDevice(sys, GPU);
      const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: PAGE_SIZE }] }) as DmaBuf;
      const pinned = DmaBufImporter.attach(buf, importer, { pinned: true }) as DmaBufImporter;
      expect(pinned.ensureMapped()).toBe(version === "6.19" ? -DmaBufErrno.EOPNOTSUPP : 0);
      pinned.close();
    });
  }
});
