import { PAGE_SIZE, PageFlag, type PhysAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { dmaKmallocNeedsBounce, isSwiotlbActive } from "./bounce.js";
import type { DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { dmaCapable, physToDma } from "./direct.js";
import { DmaInputError } from "./errors.js";
import { checkDir, checkRange } from "./validate.js";
import { checkDevice } from "./api-trace.js";

/**
 * What a physical range is, for one device — the memory types the seed discussion asked to make
 * explicit, so a caller can cut a buffer into uniform runs and map each run the right way:
 * - "normal": RAM the device reaches as is (through its IOMMU or directly);
 * - "bounce": RAM this device can only reach through swiotlb (beyond its mask on dma-direct,
 *   swiotlb=force, the partial granules of an untrusted device, the kmalloc rule);
 * - "private": private (encrypted) memory of a confidential guest, which no device can reach: it must
 *   bounce through the shared pool;
 * - "p2p-bus-addr": a peer's P2P memory reached by bus address through a switch (no IOMMU mapping);
 * - "p2p-host-bridge": a peer's P2P memory reached through the host bridge, mapped as MMIO;
 * - "p2p-not-supported": a peer's P2P memory this device cannot reach at all;
 * - "mmio": MMIO without struct pages (dma_map_resource territory).
 */
export type DmaMemoryKind = "normal" | "bounce" | "private" | "p2p-bus-addr" | "p2p-host-bridge" | "p2p-not-supported" | "mmio";

/** A maximal piece of a physical range that one device must map one way (see `DmaMemoryKind`). */
export interface DmaMemoryRun {
  /** How the device reaches this run. */
  readonly kind: DmaMemoryKind;
  /** Physical address of the run's first byte. */
  readonly phys: PhysAddr;
  /** Bytes in the run. */
  readonly len: number;
  /** The P2P provider, for the p2p kinds. */
  readonly provider: P2pdmaProvider | undefined;
}

/**
 * Cuts [phys, phys+len) into maximal runs of one kind (and one provider) for `dev` and `dir`. Pure:
 * maps nothing; the page descriptors count the lookups it makes (one per granule, two for P2P pages).
 */
export function dmaClassifyRange(dev: DmaDevice, phys: PhysAddr, len: number, dir: DmaDirection): DmaMemoryRun[] {
  const fn = "dmaClassifyRange";
  checkDevice(fn, dev);
  checkRange(fn, "phys", phys, len);
  checkDir(fn, dir);
  const kernel = dev.kernel;
  const memory = kernel.memory;
  const pages = memory.pages;
  const runs: DmaMemoryRun[] = [];
  const granule = dev.ops === "iommu" ? dev.granule : PAGE_SIZE;
  // Without a pool these granules cannot be mapped at all; they are still the ones that need a bounce.
  const untrustedBounce = dev.ops === "iommu" && dev.untrusted;
  const kmalloc = dmaKmallocNeedsBounce(dev, len, dir) && isSwiotlbActive(dev);
  const end = phys + len;
  // Holes first, so a refused range leaves the counters untouched.
  for (let q: number = phys; q < end; ) {
    const region = memory.regionAt(q as PhysAddr);
    if (region === undefined) throw new DmaInputError(fn, "phys", q, "an address inside RAM or an MMIO region (this one is in a hole)");
    q = region.base + region.size;
  }
  let p: number = phys;
  while (p < end) {
    const next = Math.min(end, (Math.floor(p / granule) + 1) * granule);
    const pfn = Math.floor(p / PAGE_SIZE);
    let kind: DmaMemoryKind;
    let provider: P2pdmaProvider | undefined;
    if (!pages.hasPage(pfn)) {
      kind = "mmio";
    } else {
      const flags = pages.flags(pfn);
      if ((flags & PageFlag.P2PDMA) !== 0) {
        provider = kernel.platform.providerById(pages.owner(pfn));
        const type = provider === undefined ? PciP2pdmaMapType.NOT_SUPPORTED : kernel.platform.pciP2pdmaMapType(provider, dev.bdf);
        kind = type === PciP2pdmaMapType.BUS_ADDR ? "p2p-bus-addr" : type === PciP2pdmaMapType.THRU_HOST_BRIDGE ? "p2p-host-bridge" : "p2p-not-supported";
      } else if ((flags & PageFlag.ENCRYPTED) !== 0) {
        kind = "private";
      } else if (kmalloc) {
        kind = "bounce";
      } else if (dev.ops === "direct") {
        const reachable = dmaCapable(dev, physToDma(dev, p), next - p) && !kernel.swiotlbForce;
        kind = reachable ? "normal" : "bounce";
      } else {
        // iommu-dma bounces only the granules an untrusted device would share with other data.
        const partial = (p === phys && phys % granule !== 0) || (next === end && end % granule !== 0);
        kind = untrustedBounce && partial ? "bounce" : "normal";
      }
    }
    const last = runs[runs.length - 1];
    if (last?.kind === kind && last.provider === provider && last.phys + last.len === p) {
      runs[runs.length - 1] = { kind, phys: last.phys, len: last.len + (next - p), provider };
    } else {
      runs.push({ kind, phys: p as PhysAddr, len: next - p, provider });
    }
    p = next;
  }
  return runs;
}
