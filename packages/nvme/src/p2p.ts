import { BLK_STS_OK, Bio, ReqOp, Request, blkStatusName, bvecAt } from "@dmasim/bio";
import type { BlkStatus } from "@dmasim/bio";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { hex } from "@dmasim/trace";
import { Counter } from "@dmasim/dma";
import type { NvmeCompletion } from "./driver.js";
import { patternInto } from "./pattern.js";
import type { NvmeHost } from "./system.js";
import { WorkloadError } from "./errors.js";
import { unsafePhysAddr } from "@dmasim/memory";

/** What `runP2pCase` found: how the peer was reached and what that cost on the fabric and in the IOMMU. */
export interface P2pCaseResult {
  /** How the DMA layer reaches the peer's memory (pci_p2pdma_state). */
  readonly mapType: PciP2pdmaMapType;
  /** Bytes checked: peer → namespace (a write) and namespace → peer (a read). */
  readonly verifiedBytes: number;
  /** TLPs routed peer to peer below the switch during the case. */
  readonly tlpsPeerViaSwitch: number;
  /** TLPs routed peer to peer through the host bridge during the case. */
  readonly tlpsPeerViaHostBridge: number;
  /** IOMMU page-table entries written during the case (0 when the bus address is used directly). */
  readonly pteWrites: number;
}

function runOne(sys: NvmeHost, rq: Request): NvmeCompletion {
  const st: BlkStatus = sys.driver.queueRq(rq);
  if (st !== BLK_STS_OK) throw new WorkloadError(`P2P request refused: ${blkStatusName(st)}`);
  sys.controller.service(1);
  let done: NvmeCompletion | undefined;
  sys.driver.poll((c) => (done = c));
  if (done === undefined) throw new WorkloadError("P2P request did not complete");
  return done;
}

/**
 * Peer-to-peer block I/O: `bytes` from a peer device's BAR (P2P memory of `provider`) are written to the
 * namespace at `block`, then read back into another part of the BAR. The drive reaches the BAR by bus
 * address through the switch (BUS_ADDR) or through the IOMMU and host bridge (THRU_HOST_BRIDGE).
 */
export function runP2pCase(sys: NvmeHost, provider: P2pdmaProvider, options: { bytes?: number; block?: number } = {}): P2pCaseResult {
  const { platform, driver } = sys;
  const bytes = options.bytes ?? 64 * 1024;
  const block = options.block ?? 16;
  const mem = platform.memory;
  const counters = platform.trace.counters;
  const before = counters.snapshot();
  const src = provider.phys;
  const dst = provider.phys + Math.ceil(bytes / 4096) * 4096;
  const words = new Uint32Array(bytes / 4);
  patternInto(words, block, 0x5050);
  const data = new Uint8Array(words.buffer);
  mem.write(src, data); // the peer's own data in its BAR
  mem.fill(unsafePhysAddr(dst), bytes, 0);

  const sector = (block * 4096) / 512;
  const w = runOne(sys, Request.fromBio(driver.limits, new Bio(mem, { op: ReqOp.WRITE, sector, vecs: [bvecAt(src, bytes)] })));
  if (w.status !== BLK_STS_OK) throw new WorkloadError(`P2P write failed: NVMe status ${hex(w.nvmeStatus)}`);
  const onDisk = sys.controller.namespace.read(block * 4096, bytes);
  const r = runOne(sys, Request.fromBio(driver.limits, new Bio(mem, { op: ReqOp.READ, sector, vecs: [bvecAt(unsafePhysAddr(dst), bytes)] })));
  if (r.status !== BLK_STS_OK) throw new WorkloadError(`P2P read failed: NVMe status ${hex(r.nvmeStatus)}`);
  const back = mem.read(unsafePhysAddr(dst), bytes);
  for (let i = 0; i < bytes; i++) {
    if (onDisk[i] !== data[i] || back[i] !== data[i]) throw new WorkloadError(`P2P data mismatch at byte ${i}`);
  }
  const moved = counters.snapshot().diff(before);
  return {
    mapType: platform.pciP2pdmaMapType(provider, driver.dev.bdf),
    verifiedBytes: 2 * bytes,
    tlpsPeerViaSwitch: moved.get(Counter.TlpsPeerViaSwitch),
    tlpsPeerViaHostBridge: moved.get(Counter.TlpsPeerViaHostBridge),
    pteWrites: moved.get(Counter.PteWrites),
  };
}

export { PciP2pdmaMapType };
