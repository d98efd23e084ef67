import { unsafeIova } from "@dmasim/iommu";
import { dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IbWcStatus } from "./constants.js";
import type { IbMr } from "./mr.js";
import { ACCESS_ALL, cpuRead, cpuWrite, dmabufRig, leftovers, mustMr, vfioBuf } from "./test-dmabuf.js";
import type { DmabufRig } from "./test-dmabuf.js";
import { pattern, rdmaRead, rdmaWrite } from "./test-fixtures.js";
import type { UmemDmabufKind, UmemDmabufMapping } from "./umem-dmabuf.js";
import { IbQpState } from "./verbs.js";

/** One dmabuf MR of the property's set-up and where its bytes live. */
interface Target {
  readonly name: string;
  readonly buf: DmaBuf;
  readonly mr: IbMr;
  readonly kind: UmemDmabufKind;
  /** Buffer offset of the MR's first byte. */
  readonly offset: number;
  readonly pages: number;
  readonly exporter: "gpu" | "farGpu" | "vfio";
  /** VFIO only: the physical address of buffer offset 0 (one range). */
  readonly barPhys: number;
}

interface World {
  readonly rig: DmabufRig;
  readonly targets: readonly Target[];
  readonly staging: IbMr;
  readonly stagingBuf: DmaBuf;
}

const KB = 1024;

function setup(copyBytesPerNs: number): World {
  // 512 KiB of VRAM per GPU (8 blocks): another allocation evicts the least recently used unpinned buffer.
  const rig = dmabufRig({ copyBytesPerNs, vramBytes: 512 * KB });
  const bar = rig.platform.endpoint(rig.vfio.bdf).bars[0]?.phys ?? 0;
  const make = (name: string, buf: DmaBuf, exporter: Target["exporter"], kind: UmemDmabufKind, mapping: UmemDmabufMapping, offset: number, length: number, iova: number, barPhys = 0): Target => {
    const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, offset, length, iova, ACCESS_ALL, { kind, mapping }));
    return { name, buf, mr, kind, offset, pages: length / PAGE_SIZE, exporter, barPhys };
  };
  const targets = [
    make("dynamic sgt, GPU behind the switch", rig.gpu.allocate(256 * KB, "vram"), "gpu", "dynamic", "sgt", 0, 256 * KB, 0x10_0000),
    make("dynamic phys, GPU through the host bridge", rig.farGpu.allocate(256 * KB, "vram"), "farGpu", "dynamic", "phys", 64 * KB, 128 * KB, 0x20_0000 + 64 * KB),
    make("pinned sgt, GPU behind the switch", rig.gpu.allocate(128 * KB, "vram"), "gpu", "pinned", "sgt", 0, 128 * KB, 0x30_0000),
    make("revocable phys, VFIO BAR", vfioBuf(rig, 0, 64 * KB), "vfio", "revocable", "phys", 0, 64 * KB, 0x40_0000, bar),
    make("dynamic sgt, VFIO BAR", vfioBuf(rig, 256 * KB, 64 * KB), "vfio", "dynamic", "sgt", 0, 64 * KB, 0x50_0000, bar + 256 * KB),
    make("dynamic phys, GPU behind the switch", rig.gpu.allocate(128 * KB, "vram"), "gpu", "dynamic", "phys", 0, 128 * KB, 0x60_0000),
  ];
  const stagingBuf = rig.heap.allocate(256 * KB);
  const staging = mustMr(rig.nicA.regDmabufMr(rig.pdA, stagingBuf, 0, 256 * KB, 0x7000_0000, ACCESS_ALL, { kind: "pinned" }));
  return { rig, targets, staging, stagingBuf };
}

function readTarget(w: World, t: Target, off: number, len: number): Uint8Array {
  if (t.exporter === "vfio") return w.rig.kernel.memory.read(physAddr(t.barPhys + off), len);
  return cpuRead(w.rig, t.buf, off, len);
}

function writeTarget(w: World, t: Target, off: number, bytes: Uint8Array): void {
  if (t.exporter === "vfio") w.rig.kernel.memory.write(physAddr(t.barPhys + off), bytes);
  else cpuWrite(w.rig, t.buf, off, bytes);
}

/**
 * Every live MTT entry of every MR leads to the memory backing that offset of the buffer NOW: the bus
 * address of a VRAM block reached through the switch, or an IOVA the NIC's IOMMU domain translates to the
 * block (RAM, or VRAM through the host bridge).
 */
function expectMttFollowsBuffers(w: World): void {
  const { rig } = w;
  for (const t of w.targets) {
    const mtt = t.mr.mtt;
    for (let i = 0; i < mtt.length; i++) {
      const e = mtt[i] ?? 0;
      if (e === 0) continue;
      const dma = e - (e % 4);
      const off = t.offset + i * PAGE_SIZE;
      let phys: number;
      let p2p: boolean;
      if (t.exporter === "vfio") {
        phys = t.barPhys + off;
        p2p = true;
      } else {
        const exp = t.exporter === "gpu" ? rig.gpu : rig.farGpu;
        const list = exp.currentList(t.buf);
        let cur = 0;
        let r = 0;
        while (r < list.nrRanges && cur + (list.len[r] ?? 0) <= off) cur += list.len[r++] ?? 0;
        phys = (list.phys[r] ?? 0) + (off - cur);
        p2p = list.isP2p(r);
      }
      const provider = rig.kernel.platform.providers.find((p) => phys >= p.phys && phys < p.phys + p.size);
      const bus = p2p && provider !== undefined && rig.kernel.platform.pciP2pdmaMapType(provider, rig.nicB.bdf) === PciP2pdmaMapType.BUS_ADDR;
      const got = bus ? dma - provider.busOffset : rig.nicB.dev.domain?.iovaToPhys(unsafeIova(dma));
      expect({ mr: t.name, page: i, phys: got }).toEqual({ mr: t.name, page: i, phys });
    }
  }
}

type OpKind = "nicWrite" | "nicRead" | "cpuWrite" | "migrate" | "pressure" | "vfioOff" | "vfioOn";
interface Op {
  readonly kind: OpKind;
  readonly target: number;
  readonly page: number;
  readonly value: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<OpKind>("nicWrite", "nicWrite", "nicWrite", "nicRead", "nicRead", "cpuWrite", "migrate", "migrate", "pressure", "vfioOff", "vfioOn"),
  target: fc.nat({ max: 5 }),
  page: fc.nat({ max: 63 }),
  value: fc.integer({ min: 1, max: 1_000_000 }),
});

function run(copyBytesPerNs: number, ops: readonly Op[]): void {
  const w = setup(copyBytesPerNs);
  const { rig, targets, staging } = w;
  const oracle = new Map<string, Uint8Array>();
  let vfioOn = true;
  let revoked = false;
  const expectOk = (t: Target): boolean => (t.exporter !== "vfio" ? true : t.kind === "revocable" ? !revoked : vfioOn);
  for (const op of ops) {
    const t = targets[op.target];
    if (t === undefined) continue;
    const page = op.page % t.pages;
    const key = `${op.target}:${page}`;
    const va = t.mr.addr + page * PAGE_SIZE;
    switch (op.kind) {
      case "nicWrite": {
        const bytes = pattern(op.value);
        cpuWrite(rig, w.stagingBuf, 0, bytes);
        const st = rdmaWrite(rig.qpA, staging, staging.addr, t.mr, va, 64).status;
        rig.qpA.state = IbQpState.RTS;
        expect({ op: op.kind, mr: t.name, ok: st === IbWcStatus.SUCCESS }).toEqual({ op: op.kind, mr: t.name, ok: expectOk(t) });
        if (st === IbWcStatus.SUCCESS) oracle.set(key, bytes);
        break;
      }
      case "nicRead": {
        const st = rdmaRead(rig.qpA, staging, staging.addr + 64 * KB, t.mr, va, 64).status;
        rig.qpA.state = IbQpState.RTS;
        expect({ op: op.kind, mr: t.name, ok: st === IbWcStatus.SUCCESS }).toEqual({ op: op.kind, mr: t.name, ok: expectOk(t) });
        if (st === IbWcStatus.SUCCESS) expect({ mr: t.name, page, got: cpuRead(rig, w.stagingBuf, 64 * KB, 64) }).toEqual({ mr: t.name, page, got: oracle.get(key) ?? new Uint8Array(64) });
        break;
      }
      case "cpuWrite":
        // A disabled BAR is not accessible to the CPU either (VFIO zapped its mmaps).
        if (t.exporter !== "vfio" || vfioOn) {
          const bytes = pattern(op.value + 7);
          writeTarget(w, t, t.offset + page * PAGE_SIZE, bytes);
          oracle.set(key, bytes);
        }
        break;
      case "migrate": {
        if (t.exporter === "vfio") break;
        const exp = t.exporter === "gpu" ? rig.gpu : rig.farGpu;
        const blocks = [...Array(t.buf.size / exp.blockBytes).keys()].filter((b) => ((op.value >> b) & 1) === 1);
        const to = (op.value & 0x100) !== 0 ? "vram" : "ram";
        const ret = exp.migrate(t.buf, to, blocks);
        if (t.kind === "pinned") expect(ret === 0 || ret === -16).toBe(true);
        else expect(ret).toBeGreaterThanOrEqual(0);
        break;
      }
      case "pressure": {
        // Another buffer wants VRAM: TTM-style eviction of unpinned buffers to RAM, then it is freed.
        const exp = op.value % 2 === 0 ? rig.gpu : rig.farGpu;
        dmaBufPut(exp.allocate(((op.value % 4) + 3) * exp.blockBytes, "vram"));
        break;
      }
      case "vfioOff":
        if (vfioOn) {
          expect(rig.vfio.setMemoryEnable(false).done).toBe(true);
          vfioOn = false;
          revoked = true;
        }
        break;
      case "vfioOn":
        if (!vfioOn) {
          expect(rig.vfio.setMemoryEnable(true).done).toBe(true);
          vfioOn = true;
        }
        break;
    }
    expectMttFollowsBuffers(w);
  }
  // No write lost: every page the oracle knows holds its bytes.
  if (!vfioOn) rig.vfio.setMemoryEnable(true);
  for (const [key, want] of oracle) {
    const [ti, page] = key.split(":").map(Number);
    const t = targets[ti ?? 0];
    if (t === undefined) continue;
    expect({ key, got: readTarget(w, t, t.offset + (page ?? 0) * PAGE_SIZE, 64) }).toEqual({ key, got: want });
  }
  // Nothing leaks: every MR deregistered and buffer put leaves no attachment, mapping, IOVA or VRAM block.
  for (const t of targets) {
    expect(rig.nicB.deregMr(t.mr)).toBe(0);
    dmaBufPut(t.buf);
  }
  expect(rig.nicA.deregMr(staging)).toBe(0);
  dmaBufPut(w.stagingBuf);
  rig.gpu.reap();
  rig.farGpu.reap();
  expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  expect(rig.gpu.vramFreeBlocks).toBe(rig.gpu.nBlocks);
  expect(rig.farGpu.vramFreeBlocks).toBe(rig.farGpu.nBlocks);
  expect(rig.sys.debug.reports()).toEqual([]);
}

describe("dmabuf MRs under any interleaving of traffic, migrations, revokes and CPU writes (fast-check)", () => {
  it("no device access reaches memory that no longer backs the MR, no write is lost, nothing leaks", () => {
    fc.assert(
      fc.property(fc.constantFrom(0.2, 25), fc.array(opArb, { minLength: 1, maxLength: 40 }), (rate, ops) => {
        run(rate, ops);
      }),
      { numRuns: 40 },
    );
  });
});
