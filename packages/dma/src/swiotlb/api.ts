import { DMA_MAPPING_ERROR, type DmaDirection } from "../constants.js";
import { SwiotlbError } from "./errors.js";
import type { SwiotlbDevice, SwiotlbPool } from "./pool.js";
import type { PhysAddr } from "@dmasim/memory";

/**
 * Device-first entry points to the pool (include/linux/swiotlb.h shape): the pool is found through the
 * device (dev->dma_io_tlb_mem). The map, unmap and sync functions here move bytes memory to memory only;
 * the DMA layer's `swiotlbTblMapSingle` & co (bounce.ts) wrap them with what the kernel's functions of
 * those names also do (the bounce copy through the CPU cache, the "buffer is full" log, clearing
 * dma_skip_sync), which is why these carry the `swiotlbPool` prefix instead of the kernel name.
 */
export interface SwiotlbDeviceWithPool extends SwiotlbDevice {
  /** dev->dma_io_tlb_mem: the pool this device bounces through, or undefined when swiotlb is off. */
  readonly dmaIoTlbMem: SwiotlbPool | undefined;
}

/**
 * swiotlb_tbl_map_single() on the pool alone. Returns the bounce address or DMA_MAPPING_ERROR (no pool, or the pool is
 * full). `cpu` picks the area the search starts in (raw_smp_processor_id() upstream).
 */
export function swiotlbPoolMapSingle(
  dev: SwiotlbDeviceWithPool,
  origAddr: number,
  mappingSize: number,
  allocAlignMask: number,
  dir: DmaDirection,
  attrs: number,
  cpu = 0,
): number {
  const pool = dev.dmaIoTlbMem;
  // "Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer".
  if (pool === undefined) return DMA_MAPPING_ERROR;
  return pool.tblMapSingle(dev, origAddr as PhysAddr, mappingSize, allocAlignMask, dir, attrs, cpu);
}

/** swiotlb_tbl_unmap_single() on the pool alone. */
export function swiotlbPoolUnmapSingle(dev: SwiotlbDeviceWithPool, tlbAddr: number, mappingSize: number, dir: DmaDirection, attrs: number): void {
  poolOf("swiotlbPoolUnmapSingle", dev).tblUnmapSingle(dev, tlbAddr as PhysAddr, mappingSize, dir, attrs);
}

/** swiotlb_sync_single_for_device() on the pool alone. */
export function swiotlbPoolSyncForDevice(dev: SwiotlbDeviceWithPool, tlbAddr: number, size: number, dir: DmaDirection): void {
  poolOf("swiotlbPoolSyncForDevice", dev).syncSingleForDevice(dev, tlbAddr as PhysAddr, size, dir);
}

/** swiotlb_sync_single_for_cpu() on the pool alone. */
export function swiotlbPoolSyncForCpu(dev: SwiotlbDeviceWithPool, tlbAddr: number, size: number, dir: DmaDirection): void {
  poolOf("swiotlbPoolSyncForCpu", dev).syncSingleForCpu(dev, tlbAddr as PhysAddr, size, dir);
}

/** is_swiotlb_buffer(dev, phys). */
export function isSwiotlbBuffer(dev: SwiotlbDeviceWithPool, phys: number): boolean {
  return dev.dmaIoTlbMem?.isSwiotlbBuffer(phys as PhysAddr) ?? false;
}

/** is_swiotlb_active(dev). */
export function isSwiotlbActive(dev: SwiotlbDeviceWithPool): boolean {
  return dev.dmaIoTlbMem !== undefined;
}

/**
 * swiotlb_max_mapping_size(dev). Without a pool upstream reports SIZE_MAX (no limit from swiotlb);
 * the model returns Infinity.
 */
export function swiotlbMaxMappingSize(dev: SwiotlbDeviceWithPool): number {
  return dev.dmaIoTlbMem?.maxMappingSize(dev) ?? Infinity;
}

function poolOf(fn: string, dev: SwiotlbDeviceWithPool): SwiotlbPool {
  const pool = dev.dmaIoTlbMem;
  if (pool === undefined) throw new SwiotlbError("ENOENT", `${fn}: device ${dev.name} has no swiotlb pool, so it has no bounce buffers`);
  return pool;
}
