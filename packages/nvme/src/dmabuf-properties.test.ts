import { BLK_STS_DEV_RESOURCE, BLK_STS_OK, BLK_STS_RESOURCE } from "@dmasim/bio";
import { Counter } from "@dmasim/dma";
import { dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { MiB } from "@dmasim/memory";
import type { TraceEvent } from "@dmasim/pcie-p2p";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NvmeDmabufToken } from "./dmabuf-token.js";
import { Bdf, ReqOp, bytesOf, dmabufRig, firstDiff } from "./test-fixtures.js";

const KiB = 1024;
const GPU_BYTES = 4 * MiB;
const VFIO_BYTES = 1 * MiB;
/** The part of the namespace the steps use. */
const DISK_BYTES = 4 * MiB;

type Step =
  | { readonly kind: "io"; readonly vfio: boolean; readonly write: boolean; readonly diskPage: number; readonly bufPage: number; readonly pages: number }
  | { readonly kind: "service"; readonly max: number }
  | { readonly kind: "poll" }
  | { readonly kind: "migrate"; readonly to: "ram" | "vram"; readonly block: number | undefined }
  | { readonly kind: "pressure" }
  | { readonly kind: "revoke" }
  | { readonly kind: "enable" }
  | { readonly kind: "reap" };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("io" as const), vfio: fc.boolean(), write: fc.boolean(), diskPage: fc.nat(1023), bufPage: fc.nat(1023), pages: fc.integer({ min: 1, max: 32 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("service" as const), max: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 2, arbitrary: fc.constant({ kind: "poll" as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("migrate" as const), to: fc.constantFrom("ram" as const, "vram" as const), block: fc.option(fc.nat(3), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "pressure" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "revoke" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "enable" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "reap" as const }) },
);

describe("NVMe on dma-bufs, random interleavings of I/O, migrations, VRAM pressure and revokes", () => {
  it("no write is lost, the drive reaches only memory that backs the buffer then, nothing leaks", () => {
    fc.assert(
      fc.property(fc.constantFrom("sgt" as const, "phys" as const), fc.boolean(), fc.array(step, { minLength: 1, maxLength: 30 }), (mapping, far, steps) => {
        const rig = dmabufRig();
        const { driver, controller, vfio, platform } = rig;
        // The GPU below the drive's switch (bus addresses) or on the other root port (IOVA through the host bridge).
        const gpu = far ? rig.farGpu : rig.gpu;
        const iovas0 = rig.kernel.iovaTracker.liveCount(Bdf.NVME);
        const gbuf = gpu.allocate(GPU_BYTES);
        const gpuWant = bytesOf(GPU_BYTES, 7);
        gpu.cpuWrite(gbuf, 0, gpuWant);
        const bar = platform.endpoint(Bdf.VFIO).bars[0];
        if (bar === undefined) throw new Error("no VFIO BAR");
        const vfioWant = bytesOf(VFIO_BYTES, 8);
        platform.memory.write(bar.phys, vfioWant);
        const vbuf = vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: VFIO_BYTES }] });
        if (typeof vbuf === "number") throw new Error(`VFIO export: ${vbuf}`);
        const gtok = NvmeDmabufToken.create(driver, gbuf, { mapping });
        const vtok = NvmeDmabufToken.create(driver, vbuf, { mapping });
        if (typeof gtok === "number" || typeof vtok === "number") throw new Error("token refused");
        const diskWant = bytesOf(DISK_BYTES, 9);
        controller.namespace.write(0, diskWant);

        // Every TLP the drive sends to a peer by bus address must land in memory that backs its buffer at
        // that moment. Through the host bridge the address is an IOVA: the IOMMU faults on one no longer
        // mapped (no fault, no failed command, checked below).
        const strays: string[] = [];
        const backs = (addr: number, len: number): boolean => {
          if (addr >= bar.bus && addr + len <= bar.bus + bar.size) return vfio.memoryEnabled && addr + len <= bar.bus + VFIO_BYTES;
          const list = gpu.currentList(gbuf);
          for (let i = 0; i < list.nrRanges; i++) {
            const p = list.phys[i] ?? 0;
            if (list.p2pBits[i] !== 0 && addr >= p && addr + len <= p + (list.len[i] ?? 0)) return true;
          }
          return false;
        };
        const off = platform.trace.events.subscribe((e: TraceEvent) => {
          if (e.type === "tlp" && e.device === Bdf.NVME && e.path === "peer-via-switch" && !backs(e.addr, e.len)) strays.push(`${e.access} ${e.addr.toString(16)}+${e.len}`);
        });
        const errors: number[] = [];
        const onDone = (c: { nvmeStatus: number }): void => {
          if (c.nvmeStatus !== 0) errors.push(c.nvmeStatus);
        };
        let other: DmaBuf | undefined;
        for (const s of steps) {
          switch (s.kind) {
            case "io": {
              const size = s.vfio ? VFIO_BYTES : GPU_BYTES;
              const len = Math.min(s.pages * 4 * KiB, size - (s.bufPage * 4 * KiB) % size, DISK_BYTES - s.diskPage * 4 * KiB);
              const offset = (s.bufPage * 4 * KiB) % size;
              const disk = s.diskPage * 4 * KiB;
              const st = driver.queueDmabufRq(s.vfio ? vtok : gtok, { op: s.write ? ReqOp.WRITE : ReqOp.READ, sector: disk / 512, offset, len });
              if (st === BLK_STS_OK) {
                // Commands execute in submission order and nothing else changes these bytes, so the
                // model applies each at submission.
                const want = s.vfio ? vfioWant : gpuWant;
                if (s.write) diskWant.set(want.subarray(offset, offset + len), disk);
                else want.set(diskWant.subarray(disk, disk + len), offset);
              } else if (st === BLK_STS_RESOURCE) {
                expect(s.vfio && !vfio.memoryEnabled).toBe(true); // only a revoked buffer refuses
              } else {
                expect(st).toBe(BLK_STS_DEV_RESOURCE);
              }
              break;
            }
            case "service":
              controller.service(1, s.max);
              break;
            case "poll":
              driver.poll(onDone, onDone);
              break;
            case "migrate":
              gpu.migrate(gbuf, s.to, s.block === undefined ? undefined : [s.block]);
              break;
            case "pressure":
              if (other !== undefined) {
                dmaBufPut(other);
                other = undefined;
              } else {
                other = gpu.allocate(14 * MiB);
              }
              break;
            case "revoke":
              expect(vfio.setMemoryEnable(false).done).toBe(true);
              break;
            case "enable":
              vfio.setMemoryEnable(true);
              break;
            case "reap":
              gpu.reap();
              break;
          }
        }
        controller.service(1);
        driver.poll(onDone, onDone);
        off();
        expect(strays).toEqual([]);
        expect(errors).toEqual([]);
        expect(platform.trace.counters.get(Counter.IommuFaults)).toBe(0);
        // First differing byte, or -1 (a diff of megabytes would take the reporter minutes).
        expect({ gpu: firstDiff(gpu.cpuRead(gbuf, 0, GPU_BYTES), gpuWant), vfio: firstDiff(platform.memory.read(bar.phys, VFIO_BYTES), vfioWant), disk: firstDiff(controller.namespace.read(0, DISK_BYTES), diskWant) }).toEqual({ gpu: -1, vfio: -1, disk: -1 });
        expect(driver.inFlight).toBe(0);
        expect(gtok.release()).toBe(0);
        expect(vtok.release()).toBe(0);
        expect(vfio.close().done).toBe(true);
        if (other !== undefined) dmaBufPut(other);
        dmaBufPut(gbuf);
        dmaBufPut(vbuf);
        gpu.reap();
        expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
        expect(gpu.vramFreeBlocks).toBe(gpu.nBlocks);
        expect(rig.kernel.iovaTracker.liveCount(Bdf.NVME)).toBe(iovas0);
        expect(rig.sys.debug.reports()).toEqual([]);
      }),
      { numRuns: 25, seed: 15 },
    );
  });
});
