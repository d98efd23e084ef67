import { DMA_MAPPING_ERROR, type DmaDirection } from "../constants.js";
import { SwiotlbError } from "./errors.js";
import type { SwiotlbDevice, SwiotlbPool } from "./pool.js";

/**
 * The kernel-shaped entry points (include/linux/swiotlb.h): device first, the pool found through the
 * device (dev->dma_io_tlb_mem), so a caller writes `swiotlbTblMapSingle(dev, ...)` as in the kernel.
 */
export interface SwiotlbDeviceWithPool extends SwiotlbDevice {
  /** dev->dma_io_tlb_mem: the pool this device bounces through, or undefined when swiotlb is off. */
  readonly dmaIoTlbMem: SwiotlbPool | undefined;
}

/**
 * swiotlb_tbl_map_single(). Returns the bounce address or DMA_MAPPING_ERROR (no pool, or the pool is
 * full). `cpu` picks the area the search starts in (raw_smp_processor_id() upstream).
 */
export function swiotlbTblMapSingle(
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
  return pool.tblMapSingle(dev, origAddr, mappingSize, allocAlignMask, dir, attrs, cpu);
}

/** swiotlb_tbl_unmap_single(). */
export function swiotlbTblUnmapSingle(dev: SwiotlbDeviceWithPool, tlbAddr: number, mappingSize: number, dir: DmaDirection, attrs: number): void {
  poolOf("swiotlbTblUnmapSingle", dev).tblUnmapSingle(dev, tlbAddr, mappingSize, dir, attrs);
}

/** swiotlb_sync_single_for_device(). */
export function swiotlbSyncSingleForDevice(dev: SwiotlbDeviceWithPool, tlbAddr: number, size: number, dir: DmaDirection): void {
  poolOf("swiotlbSyncSingleForDevice", dev).syncSingleForDevice(dev, tlbAddr, size, dir);
}

/** swiotlb_sync_single_for_cpu(). */
export function swiotlbSyncSingleForCpu(dev: SwiotlbDeviceWithPool, tlbAddr: number, size: number, dir: DmaDirection): void {
  poolOf("swiotlbSyncSingleForCpu", dev).syncSingleForCpu(dev, tlbAddr, size, dir);
}

/** is_swiotlb_buffer(dev, phys). */
export function isSwiotlbBuffer(dev: SwiotlbDeviceWithPool, phys: number): boolean {
  return dev.dmaIoTlbMem?.isSwiotlbBuffer(phys) ?? false;
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
