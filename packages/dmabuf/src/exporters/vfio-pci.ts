import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { DmaDirection } from "@dmasim/dma";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import type { SgTable } from "@dmasim/scatterlist";
import { DMA_IOVA_USE_SWIOTLB_BIT, DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT } from "../constants.js";
import { DmaBufCounter } from "../counters.js";
import { DmaBuf, dmaBufAttachRevocable, dmaBufExport, dmaBufInvalidateMappings } from "../dma-buf.js";
import { emitDmaBuf } from "../events.js";
import type { DmaBufAttachment, DmaBufOps } from "../dma-buf.js";
import { DmaBufInputError } from "../errors.js";
import { dmaBufFreeSgt, dmaBufPhysVecToSgt } from "../mapping-helpers.js";
import type { DmaBufPhysVec } from "../mapping-helpers.js";
import { dmaBufPhysListAlloc, dmaBufPhysListSet } from "../phys-list.js";
import type { DmaBufSystem } from "../system.js";

/** VFIO_PCI_ROM_REGION_INDEX: region indices below it are the six BARs. */
export const VFIO_PCI_ROM_REGION_INDEX = 6;

/** struct vfio_region_dma_range. */
export interface VfioRegionDmaRange {
  /** Offset of the range in the region (BAR). */
  readonly offset: number;
  /** Bytes in the range. */
  readonly length: number;
}

/** struct vfio_device_feature_dma_buf (VFIO_DEVICE_FEATURE_DMA_BUF, GET). */
export interface VfioDeviceFeatureDmaBuf {
  /** The region to export from: a BAR index (below VFIO_PCI_ROM_REGION_INDEX). */
  readonly regionIndex: number;
  /** File flags of the new dma-buf (`open_flags`, e.g. O_CLOEXEC). */
  readonly openFlags: number;
  /** The request's `flags` field of the uAPI struct. */
  readonly flags: number;
  /** The slices of the region the dma-buf covers, in order. */
  readonly dmaRanges: readonly VfioRegionDmaRange[];
}

/** struct vfio_pci_dma_buf: one exported BAR slice. */
interface VfioPciDmaBuf {
  readonly vdev: VfioPciCoreDevice;
  dmabuf: DmaBuf | undefined;
  readonly physVec: DmaBufPhysVec[];
  readonly provider: P2pdmaProvider;
  readonly size: number;
  revoked: boolean;
  /** The v7.1 kref: mappings handed out and not yet unmapped. */
  mapped: number;
  /** A revoke waits for `mapped` to reach 0 (the completion). */
  waiting: boolean;
}

/** The state of a revoke: done, or waiting for importers that have not unmapped. */
export interface VfioRevokeResult {
  /** True when every importer has unmapped: the BAR is no longer reachable through the dma-bufs. */
  readonly done: boolean;
  /** Mappings still held by importers (what the exporter is waiting for). */
  readonly waitingFor: number;
}

/**
 * The VFIO PCI BAR exporter (drivers/vfio/pci/vfio_pci_dmabuf.c, 7.1 shape): userspace asks for a
 * dma-buf over ranges of a BAR (VFIO_DEVICE_FEATURE_DMA_BUF); importers must be P2P-capable and
 * revocable; the buffers are revoked when the device's memory is disabled, on reset and on close, and a
 * revoke waits until every importer has unmapped. The merged code waits without a timeout: dmasim does
 * not proceed either — the revoke stays pending, `memoryEnabled` stays true, the finding
 * "revoke-never-unmapped" names the importer, and the revoke completes when the last mapping goes.
 */
export class VfioPciCoreDevice {
  /** The dma-buf subsystem the device's buffers belong to. */
  readonly system: DmaBufSystem;
  /** The device's BDF. */
  readonly bdf: string;
  #memoryEnabled = true;
  #closed = false;
  /** A memory disable waiting for importers to unmap. */
  #pendingDisable = false;
  /** The dma-bufs exported from the device's BARs (vdev->dmabufs). */
  readonly dmabufs: VfioPciDmaBuf[] = [];
  readonly #providers = new Map<number, P2pdmaProvider>();

  constructor(system: DmaBufSystem, bdf: string) {
    this.system = system;
    this.bdf = bdf;
    system.kernel.platform.endpoint(bdf);
  }

  /** PCI_COMMAND_MEMORY: false while the BARs are disabled (the dma-bufs are revoked then). */
  get memoryEnabled(): boolean {
    return this.#memoryEnabled;
  }

  /** pcim_p2pdma_provider: one provider per BAR, made on first use. */
  #provider(bar: number): P2pdmaProvider | undefined {
    let p = this.#providers.get(bar);
    if (p === undefined) {
      const ep = this.system.kernel.platform.endpoint(this.bdf);
      if (!ep.bars.some((b) => b.index === bar)) return undefined;
      p = this.system.kernel.platform.addP2pdmaProvider(this.bdf, bar);
      this.#providers.set(bar, p);
    }
    return p;
  }

  /**
   * vfio_pci_core_feature_dma_buf: validates as upstream (flags → -EINVAL; no ranges → -EINVAL; a
   * region that is not a BAR → -ENODEV; a zero, unaligned or overflowing range, a total with bit 63
   * (DMA_IOVA_USE_SWIOTLB) → -EINVAL; a range past the BAR → -EINVAL; a closed device → -ENODEV) and
   * exports the buffer, revoked from the start when memory is disabled.
   */
  featureDmaBuf(req: VfioDeviceFeatureDmaBuf): DmaBuf | number {
    const fn = "vfio_pci_core_feature_dma_buf";
    const r0 = req as unknown;
    if (r0 === null || typeof r0 !== "object" || !Array.isArray((r0 as { dmaRanges?: unknown }).dmaRanges)) {
      throw new DmaBufInputError(fn, "req", req, "{ regionIndex, openFlags, flags, dmaRanges: [{ offset, length }] }");
    }
    for (const [k, v] of [["regionIndex", req.regionIndex], ["openFlags", req.openFlags], ["flags", req.flags]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new DmaBufInputError(fn, `req.${k}`, v, "an unsigned integer");
    }
    for (const r of req.dmaRanges) {
      if (!Number.isSafeInteger(r.offset) || r.offset < 0 || !Number.isSafeInteger(r.length) || r.length < 0) {
        throw new DmaBufInputError(fn, "req.dmaRanges", r, "{ offset, length } as unsigned safe integers");
      }
    }
    if (this.#closed) return -DmaBufErrno.ENODEV;
    if (req.flags !== 0) return -DmaBufErrno.EINVAL;
    if (req.dmaRanges.length === 0) return -DmaBufErrno.EINVAL;
    if (req.regionIndex >= VFIO_PCI_ROM_REGION_INDEX) return -DmaBufErrno.ENODEV;
    const bar = this.system.kernel.platform.endpoint(this.bdf).bars.find((b) => b.index === req.regionIndex);
    if (bar === undefined) return -DmaBufErrno.EINVAL;
    let total = 0;
    for (const r of req.dmaRanges) {
      if (r.length === 0 || r.offset % PAGE_SIZE !== 0 || r.length % PAGE_SIZE !== 0) return -DmaBufErrno.EINVAL;
      total += r.length;
      if (!Number.isSafeInteger(total) || total >= DMA_IOVA_USE_SWIOTLB_BIT) return -DmaBufErrno.EINVAL;
      if (r.offset + r.length > bar.size) return -DmaBufErrno.EINVAL;
    }
    const provider = this.#provider(req.regionIndex);
    if (provider === undefined) return -DmaBufErrno.EINVAL;
    const priv: VfioPciDmaBuf = {
      vdev: this,
      dmabuf: undefined,
      physVec: req.dmaRanges.map((r) => ({ paddr: unsafePhysAddr(bar.phys + r.offset), len: r.length })),
      provider,
      size: total,
      revoked: !this.#memoryEnabled,
      mapped: 0,
      waiting: false,
    };
    const v619 = this.system.version === "6.19";
    const ops: DmaBufOps = {
      // 6.19: pin returned -EOPNOTSUPP, refusing every pinned importer; 7.1 removed pin and unpin.
      ...(v619 ? { pin: () => -DmaBufErrno.EOPNOTSUPP, unpin: () => undefined } : {}),
      attach: (_b, a) => {
        if (!a.peer2peer) return -DmaBufErrno.EOPNOTSUPP;
        if (priv.revoked) return -DmaBufErrno.ENODEV;
        if (!v619 && !dmaBufAttachRevocable(a)) return -DmaBufErrno.EOPNOTSUPP;
        return 0;
      },
      mapDmaBuf: (a: DmaBufAttachment, dir: DmaDirection) => {
        if (priv.revoked) return -DmaBufErrno.ENODEV;
        const sgt = dmaBufPhysVecToSgt(a, priv.provider, priv.physVec, priv.physVec.length, priv.size, dir);
        if (typeof sgt !== "number") priv.mapped++;
        return sgt;
      },
      unmapDmaBuf: (a: DmaBufAttachment, sgt: SgTable, dir: DmaDirection) => {
        dmaBufFreeSgt(a, sgt, dir);
        this.#put(priv);
      },
      mapPhysList: () => {
        if (priv.revoked) return -DmaBufErrno.ENODEV;
        const list = dmaBufPhysListAlloc(priv.physVec.length, priv.provider);
        priv.physVec.forEach((v, i) => {
          dmaBufPhysListSet(list, i, v.paddr, v.len, true);
        });
        priv.mapped++;
        return list;
      },
      unmapPhysList: () => {
        this.#put(priv);
      },
      release: () => {
        const i = this.dmabufs.indexOf(priv);
        if (i >= 0) this.dmabufs.splice(i, 1);
      },
    };
    const buf = dmaBufExport(this.system, { expName: `vfio:${this.bdf}`, size: total, ops, priv });
    if (typeof buf === "number") return buf;
    priv.dmabuf = buf;
    this.dmabufs.push(priv);
    return buf;
  }

  /** kref_put: the last unmap of a revoked buffer completes the revoke's wait. */
  #put(priv: VfioPciDmaBuf): void {
    priv.mapped--;
    if (priv.mapped === 0 && priv.waiting) {
      priv.waiting = false;
      if (this.#pendingDisable && this.dmabufs.every((d) => !d.waiting)) {
        this.#pendingDisable = false;
        this.#memoryEnabled = false;
      }
    }
  }

  /**
   * vfio_pci_dma_buf_move(vdev, revoked): for each buffer whose state changes, under its reservation
   * lock: set the flag, invalidate_mappings, and (revoking) wait for every fence (BOOKKEEP); then wait
   * for the unmap completion. An importer that does not unmap is the finding "revoke-never-unmapped"
   * ("collect" mode goes on and leaves the revoke pending).
   */
  #move(revoked: boolean, reason: string): VfioRevokeResult {
    let waitingFor = 0;
    for (const priv of this.dmabufs.slice()) {
      const buf = priv.dmabuf;
      if (buf === undefined || priv.revoked === revoked) continue;
      const resv = buf.resv;
      if (resv.lock() !== 0) continue;
      try {
        priv.revoked = revoked;
        dmaBufInvalidateMappings(buf, reason);
        if (revoked) resv.waitTimeout(DmaResvUsage.BOOKKEEP, false, MAX_SCHEDULE_TIMEOUT);
      } finally {
        resv.unlock();
      }
      const trace = this.system.trace;
      if (trace.events.active) {
        const waiting = revoked && this.system.version === "7.1" ? priv.mapped : 0;
        emitDmaBuf(trace, { type: "dmabuf.revoke", t: trace.clock.now, buf: buf.inode, exporter: buf.expName, revoked, reason, waitingFor: waiting });
      }
      if (revoked) {
        this.system.trace.counters.add(DmaBufCounter.DmaBufRevokes);
        // 6.19 did not wait for importers to unmap.
        if (priv.mapped > 0 && this.system.version === "7.1") {
          priv.waiting = true;
          waitingFor += priv.mapped;
          const holders = buf.attachments.filter((a) => a.liveMappings > 0).map((a) => a.dev.bdf);
          this.system.debug.report("revoke-never-unmapped", holders.join(","), `revoke of "${buf.expName}" (${reason}) waits for ${priv.mapped} mapping(s) the importer(s) did not unmap in invalidate_mappings; the exporter cannot proceed until they do`);
        }
      }
    }
    return { done: waitingFor === 0, waitingFor };
  }

  /**
   * A config write of PCI_COMMAND: clearing MEMORY revokes every buffer first (the BAR may only be
   * disabled once no importer can reach it); setting it lets importers map again. Disabling completes
   * (memoryEnabled false) only when every importer has unmapped.
   */
  setMemoryEnable(enable: boolean): VfioRevokeResult {
    if (typeof enable !== "boolean") throw new DmaBufInputError("vfio_pci_set_memory_enable", "enable", enable, "a boolean");
    if (this.#closed) return { done: true, waitingFor: 0 };
    if (enable) {
      this.#pendingDisable = false;
      this.#memoryEnabled = true;
      return this.#move(false, "memory-enable");
    }
    const r = this.#move(true, "memory-disable");
    if (r.done) this.#memoryEnabled = false;
    else this.#pendingDisable = true;
    return r;
  }

  /** VFIO_DEVICE_RESET: revoke, reset, and restore memory as it was (buffers usable again after). */
  reset(): VfioRevokeResult {
    if (this.#closed) return { done: true, waitingFor: 0 };
    const r = this.#move(true, "reset");
    if (r.done && this.#memoryEnabled) this.#move(false, "reset-done");
    return r;
  }

  /**
   * vfio_pci_dma_buf_cleanup (device close): every buffer is revoked for good and leaves the device;
   * importers' later maps get -ENODEV.
   */
  close(): VfioRevokeResult {
    const r = this.#move(true, "close");
    this.#closed = true;
    // The buffers leave the device (priv->vdev = NULL): nothing un-revokes them; their wait goes on.
    return r;
  }
}
