import { DMA_ATTR_MMIO, DmaDirection, dmaIovaLink, dmaIovaSync, dmaIovaUnlink, priceCounters } from "@dmasim/dma";
import { DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT, dmaBufDetach, dmaBufMapPhysList, dmaBufUnmapPhysList } from "@dmasim/dmabuf";
import type { DmaBufPhysList } from "@dmasim/dmabuf";
import { HMM_PFN_P2PDMA_BUS } from "@dmasim/hmm-odp";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE, RdmaErrno } from "./constants.js";
import { RdmaCounter } from "./counters.js";
import type { IbUmemMixed, MixedDmabufSegment } from "./mixed-mr.js";
import type { IbMr } from "./mr.js";
import { kLogEvent, kSegAttach, kSegList, kSegRuns } from "./internal.js";

// The dma-buf segments of a mixed MR: ib_umem_dmabuf_map_pages + mlx5's pagefault_dmabuf_mr and
// mlx5_ib_dmabuf_invalidate_cb, except that the pages are linked into the MR's one IOVA (the segment's
// slice of it) instead of an sg_table the exporter mapped: the segment maps dmasim's physical-range list
// itself with the two-step API.

const BIDIR = DmaDirection.BIDIRECTIONAL;

/**
 * pagefault_dmabuf_mr for segment `s`: under the buffer's reservation lock, map it (the physical-range
 * list) when it is not mapped, link each RAM or host-bridge P2P piece of the segment's window into the
 * segment's IOVA slice (DMA_ATTR_MMIO for P2P), give switch-P2P pieces their bus address, one IOTLB sync,
 * write the MTT slice (one UMR); then — mapped now or before — wait for the KERNEL fences (the exporter's
 * move copy) as ib_umem_dmabuf_map_pages does. Pages of the segment, or -errno: the exporter's (-ENODEV
 * while VFIO has it revoked), -EINVAL (a P2P route the NIC cannot take), -ENOMEM (a link), -ETIMEDOUT,
 * -EDEADLK (the lock is held).
 */
export function mixedDmabufFault(umem: IbUmemMixed, mr: IbMr, s: MixedDmabufSegment): number {
  const resv = s.buf.resv;
  const err = resv.lock();
  if (err !== 0) return err;
  try {
    if (s[kSegList] === undefined) {
      const ret = mapSegment(umem, mr, s);
      if (ret < 0) return ret;
    }
    if (resv.waitTimeout(DmaResvUsage.KERNEL, true, MAX_SCHEDULE_TIMEOUT) === 0) return -DmaBufErrno.ETIMEDOUT;
    return s.pages;
  } finally {
    resv.unlock();
  }
}

function mapSegment(umem: IbUmemMixed, mr: IbMr, s: MixedDmabufSegment): number {
  const attach = s[kSegAttach];
  if (attach === undefined) return -RdmaErrno.EFAULT;
  const list = dmaBufMapPhysList(attach);
  if (typeof list === "number") return list;
  const dev = umem.dev;
  const state = umem.map.state;
  const provider = list.provider;
  // One pci_p2pdma_map_type decision for the buffer's P2P ranges (they share one provider).
  const p2pType = provider === undefined ? PciP2pdmaMapType.NOT_SUPPORTED : dev.kernel.platform.pciP2pdmaMapType(provider, dev.bdf);
  const perm = MLX5_IB_MTT_READ + (umem.writable ? MLX5_IB_MTT_WRITE : 0);
  const mtt = mr.mtt;
  const flags = umem.map.flags;
  const winEnd = s.offset + s.pages * PAGE_SIZE;
  const runs: number[] = [];
  let lo = -1;
  let hi = -1;
  let pos = 0;
  let fail = 0;
  for (let r = 0; r < list.nrRanges && pos < winEnd && fail === 0; r++) {
    const len = list.len[r] ?? 0;
    const a = Math.max(pos, s.offset);
    const b = Math.min(pos + len, winEnd);
    if (a < b) {
      const phys = (list.phys[r] ?? 0) + (a - pos);
      const p2p = list.isP2p(r);
      const idx = s.first + (a - s.offset) / PAGE_SIZE;
      const n = (b - a) / PAGE_SIZE;
      if (p2p && p2pType === PciP2pdmaMapType.BUS_ADDR) {
        const bus = phys + (provider?.busOffset ?? 0);
        for (let j = 0; j < n; j++) {
          mtt[idx + j] = bus + j * PAGE_SIZE + perm;
          flags[idx + j] = HMM_PFN_P2PDMA_BUS;
        }
      } else if (!p2p || p2pType === PciP2pdmaMapType.THRU_HOST_BRIDGE) {
        const off = idx * PAGE_SIZE;
        const attrs = p2p ? DMA_ATTR_MMIO : 0;
        if (dmaIovaLink(dev, state, unsafePhysAddr(phys), off, b - a, BIDIR, attrs) !== 0) {
          fail = -RdmaErrno.ENOMEM;
          break;
        }
        addRun(runs, off, b - a, attrs);
        if (lo < 0) lo = off;
        hi = Math.max(hi, off + (b - a));
        for (let j = 0; j < n; j++) mtt[idx + j] = state.addr + off + j * PAGE_SIZE + perm;
      } else {
        fail = -RdmaErrno.EINVAL;
      }
    }
    pos += len;
  }
  if (fail !== 0) {
    s[kSegRuns] = runs;
    undo(umem, mr, s, list);
    return fail;
  }
  if (lo >= 0) dmaIovaSync(dev, state, lo, hi - lo);
  s[kSegList] = list;
  s[kSegRuns] = runs;
  const nic = umem.nic;
  nic.counters.add(RdmaCounter.UmrPosts);
  nic.counters.add(RdmaCounter.MttWrites, s.pages);
  nic.counters.add(RdmaCounter.OdpPagesFaulted, s.pages);
  const c = nic.costs;
  nic.clock.advance(c.umrPostNs + s.pages * c.umrPerEntryNs + c.umrCompletionNs);
  return 0;
}

/** Appends an IOVA run, merged with the last one when it continues it with the same attributes. */
function addRun(runs: number[], off: number, len: number, attrs: number): void {
  const k = runs.length;
  if (k >= 3 && runs[k - 1] === attrs && (runs[k - 3] ?? 0) + (runs[k - 2] ?? 0) === off) {
    runs[k - 2] = (runs[k - 2] ?? 0) + len;
    return;
  }
  runs.push(off, len, attrs);
}

/** Zaps the segment's MTT slice, unlinks its IOVA runs and gives the list back (lock held): entries zapped. */
function undo(umem: IbUmemMixed, mr: IbMr, s: MixedDmabufSegment, list: DmaBufPhysList): number {
  const mtt = mr.mtt;
  const flags = umem.map.flags;
  let zapped = 0;
  for (let i = s.first; i < s.first + s.pages; i++) {
    if (mtt[i] !== 0) {
      mtt[i] = 0;
      zapped++;
    }
    flags[i] = 0;
  }
  const nic = umem.nic;
  if (zapped > 0) {
    nic.counters.add(RdmaCounter.OdpMttZapped, zapped);
    nic.counters.add(RdmaCounter.UmrPosts);
    const c = nic.costs;
    nic.clock.advance(c.umrPostNs + zapped * c.umrPerEntryNs + c.umrCompletionNs);
  }
  const runs = s[kSegRuns];
  for (let k = 0; k + 2 < runs.length; k += 3) dmaIovaUnlink(umem.dev, umem.map.state, runs[k] ?? 0, runs[k + 1] ?? 0, BIDIR, runs[k + 2] ?? 0);
  s[kSegRuns] = [];
  if (s[kSegAttach] !== undefined) dmaBufUnmapPhysList(s[kSegAttach], list);
  s[kSegList] = undefined;
  return zapped;
}

/**
 * The segment's invalidate_mappings callback (mlx5_ib_dmabuf_invalidate_cb's shape), reservation lock
 * held by the exporter: zap the segment's MTT slice (one UMR), unlink its IOVA slice, unmap. The next
 * access faults and maps again (a revoked VFIO buffer refuses with -ENODEV: that slice gets access
 * errors while the rest of the MR keeps working). Logged with the dma-buf core's start time.
 */
export function mixedDmabufInvalidate(umem: IbUmemMixed, mr: IbMr, s: MixedDmabufSegment): void {
  const list = s[kSegList];
  if (list === undefined || umem.released) return;
  const counters = umem.nic.counters;
  counters.add(RdmaCounter.OdpInvalidations);
  const before = counters.snapshot();
  undo(umem, mr, s, list);
  const recs = s.buf.system.invalidations.records;
  const rec = recs[recs.length - 1];
  const dmaNs = priceCounters(counters.snapshot().diff(before), umem.nic.kernel.profile).totalNs;
  umem[kLogEvent](s, rec?.reason ?? "invalidate", rec?.tStart ?? umem.nic.clock.now, dmaNs);
}

/** Release of a dma-buf segment (ib_umem_dmabuf_release): unmap under the lock, detach. */
export function mixedDmabufRelease(umem: IbUmemMixed, s: MixedDmabufSegment): void {
  const mr = umem.mr;
  const list = s[kSegList];
  if (mr !== undefined && list !== undefined && s.buf.resv.lock() === 0) {
    try {
      undo(umem, mr, s, list);
    } finally {
      s.buf.resv.unlock();
    }
  }
  if (s[kSegAttach] !== undefined) dmaBufDetach(s.buf, s[kSegAttach]);
  s[kSegAttach] = undefined;
}
