import type { PhysAddr } from "@dmasim/memory";
import { checkDevice } from "./api-trace.js";
import type { DmaAddr } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { dmaCapable as capable, dmaToPhys as toPhys, physToDma as toDma } from "./direct.js";
import { DmaInputError } from "./errors.js";
import { checkAddr, checkRange, checkSize, isBoundDevice, isRange } from "./validate.js";

// The public phys_to_dma / dma_to_phys / dma_capable (include/linux/dma-direct.h). The model's own paths
// call the unchecked versions in direct.ts with values they have validated; these check the caller's
// arguments first, with one combined test for the valid call, as every entry point does.

/** phys_to_dma: the address `dev` puts on the bus for physical address `phys` (the dma-ranges offset added). */
export function physToDma(dev: DmaDevice, phys: PhysAddr): DmaAddr {
  if (!(isBoundDevice(dev) && isRange(phys, dev.busOffset))) {
    const fn = "phys_to_dma";
    checkDevice(fn, dev);
    checkAddr(fn, "paddr", phys);
    throw new DmaInputError(fn, "paddr", phys, `an address that stays below 2^53 with the device's bus offset (${dev.busOffset}) added`);
  }
  return toDma(dev, phys);
}

/** dma_to_phys: the physical address behind bus address `addr` of `dev`. */
export function dmaToPhys(dev: DmaDevice, addr: DmaAddr): PhysAddr {
  if (!(isBoundDevice(dev) && isRange(addr, 0) && addr >= dev.busOffset)) {
    const fn = "dma_to_phys";
    checkDevice(fn, dev);
    checkAddr(fn, "dma_addr", addr);
    // Below the offset there is no physical address: the kernel's subtraction would wrap.
    throw new DmaInputError(fn, "dma_addr", addr, `a bus address at or above the device's bus offset (${dev.busOffset})`);
  }
  return toPhys(dev, addr) as PhysAddr;
}

/** dma_capable: the device can address all of [addr, addr + size) under its DMA mask and bus limit. */
export function dmaCapable(dev: DmaDevice, addr: DmaAddr, size: number): boolean {
  if (!(isBoundDevice(dev) && isRange(addr, size))) {
    const fn = "dma_capable";
    checkDevice(fn, dev);
    checkAddr(fn, "addr", addr);
    checkSize(fn, "size", size);
    checkRange(fn, "addr", addr, size);
  }
  return capable(dev, addr, size);
}
