import { FAIL_IO_PGTABLE } from "@dmasim/iommu";
import { numberWhere as num, strictRecord as record } from "@dmasim/pcie-p2p";
import { FAULT_ATTR_RULES, schemaIssues } from "@dmasim/trace";
import type { InputIssue } from "@dmasim/trace";
import { COST_PROFILE_NAMES } from "./cost-profiles.js";
import { counterNames } from "./counters.js";
import type { CounterName } from "./counters.js";
import { z } from "zod";
import { DmaOptionsError } from "./errors.js";
import { FAIL_IOVA } from "./iova/index.js";
import { FAIL_SWIOTLB } from "./swiotlb/index.js";
import { isPowerOfTwoMinusOne } from "./validate.js";

// createDmaKernel options and device options: zod 4 schemas, from which their types come. They run once
// per kernel and once per device probe; the DMA API's per-call checks stay plain code (validate.ts).

const bool = z.boolean({ error: "true or false" });
const mask = num((v) => isPowerOfTwoMinusOne(v), "2^n - 1");

/** Per-device DMA properties a driver or firmware sets (the `struct device` fields dmasim models). */
export const dmaDeviceOptionsSchema = record(
  {
    /** dev_is_dma_coherent: false for devices whose DMA does not snoop CPU caches. Default true. */
    coherent: bool.optional(),
    /** Initial streaming DMA mask in bits; PCI devices start at 32 (pci_setup_device). */
    dmaMaskBits: num((v) => Number.isInteger(v) && v >= 0 && v <= 64, "an integer number of bits from 0 to 64").optional(),
    /** dma_set_max_seg_size; PCI default 64 KiB. */
    maxSegmentSize: num((v) => Number.isSafeInteger(v) && v >= 1 && v <= 0xffffffff, "a positive number of bytes that fits in 32 bits").optional(),
    /** dma_set_seg_boundary; PCI default 0xffffffff. */
    segBoundaryMask: mask.optional(),
    /** dma_set_min_align_mask (NVMe sets its controller page size - 1). */
    minAlignMask: mask.optional(),
    /** Offset added by phys_to_dma (a dma-ranges translation); default 0. */
    busOffset: num((v) => Number.isSafeInteger(v) && v >= 0, "a safe integer >= 0").optional(),
  },
  "an object of device options",
);

/**
 * How the kernel sets up the IOMMU for DMA (iommu.passthrough= / iommu.strict= / no IOMMU):
 * - "strict": IOMMU_DOMAIN_DMA, every unmap invalidates the IOTLB before returning;
 * - "lazy": IOMMU_DOMAIN_DMA_FQ, invalidations are batched by the flush queue (untrusted devices stay strict);
 * - "passthrough": identity domains and dma-direct (untrusted devices still get a strict DMA domain);
 * - "off": the IOMMU is not used at all: dma-direct, devices reach memory by physical address.
 */
export const iommuModeSchema = z.enum(["strict", "lazy", "passthrough", "off"], { error: `"strict", "lazy", "passthrough" or "off"` });

/** A named cost profile (cost-profiles.ts). */
export const costProfileNameSchema = z.enum(COST_PROFILE_NAMES, { error: `a cost profile name: ${COST_PROFILE_NAMES.map((n) => `"${n}"`).join(", ")}` });

/** Per-event cost overrides on top of a profile, in ns, by counter name. */
export const costOverridesSchema = z
  .partialRecord(z.enum(counterNames as [CounterName, ...CounterName[]]), num((v) => Number.isFinite(v) && v >= 0, "nanoseconds >= 0"), {
    error: (iss) => (iss.code === "invalid_type" ? "an object of nanoseconds by Counter name" : "a Counter name such as IotlbSyncMap"),
  })
  .readonly();

/**
 * The fault-injection sites a DMA kernel has: IOVA allocation (iommu_dma_alloc_iova), swiotlb slot
 * allocation (swiotlb_tbl_map_single) and IO page-table page allocation (under iommu_map).
 */
export const DMA_FAULT_SITES: readonly string[] = Object.freeze([FAIL_IOVA, FAIL_SWIOTLB, FAIL_IO_PGTABLE]);

/** One site's attributes, as the kernel's fail_* debugfs files (lib/fault-inject.c). */
const faultAttrSchema = record(
  {
    probability: num(FAULT_ATTR_RULES.probability.ok, FAULT_ATTR_RULES.probability.expected).optional(),
    interval: num(FAULT_ATTR_RULES.interval.ok, FAULT_ATTR_RULES.interval.expected).optional(),
    times: num(FAULT_ATTR_RULES.times.ok, FAULT_ATTR_RULES.times.expected).optional(),
    space: num(FAULT_ATTR_RULES.space.ok, FAULT_ATTR_RULES.space.expected).optional(),
  },
  "an object { probability?, interval?, times?, space? }",
);

/** Fault injection: a seed and attributes per site of DMA_FAULT_SITES. */
export const faultInjectSchema = record(
  {
    seed: num((v) => Number.isSafeInteger(v), "a safe integer").optional(),
    sites: z
      .partialRecord(z.enum(DMA_FAULT_SITES as [string, ...string[]]), faultAttrSchema, {
        error: (iss) => (iss.code === "invalid_type" ? "an object of site attributes by site name" : `a site name: ${DMA_FAULT_SITES.join(", ")}`),
      })
      .readonly()
      .optional(),
  },
  "an object { seed?, sites? }",
);

/**
 * Schema of `createDmaKernel`'s options (IOMMU mode, swiotlb, CPUs, dma-debug, costs, devices, fault injection);
 * every field optional.
 */
export const dmaKernelOptionsSchema = record(
  {
    iommuMode: iommuModeSchema.optional(),
    /** swiotlb pool: `false` for none; `bytes` (default 64 MiB); `force` bounces every dma-direct mapping (swiotlb=force). */
    swiotlb: z
      .union(
        [
          z.literal(false),
          record({ bytes: num((v) => Number.isSafeInteger(v) && v > 0, "a positive number of bytes").optional(), force: bool.optional() }, "false or { bytes?, force? }"),
        ],
        { error: "false or { bytes?, force? }" },
      )
      .optional(),
    /** CPUs for per-CPU IOVA caches, flush queues and swiotlb areas. Default 4. */
    cpus: num((v) => Number.isInteger(v) && v >= 1 && v <= 1024, "an integer from 1 to 1024").optional(),
    /** dma-debug: throw on misuse (default), collect reports, or check nothing. */
    debug: z.enum(["throw", "collect", "off"], { error: `"throw", "collect" or "off"` }).optional(),
    /**
     * The cost profile: a name ("vtd", "smmuv3", … see COST_PROFILE_NAMES; default "default"), or per-event
     * overrides on top of the default profile (the older form, kept).
     */
    costProfile: z.union([costProfileNameSchema, costOverridesSchema], { error: "a cost profile name or an object of nanoseconds by Counter name" }).optional(),
    /** Per-event cost overrides on top of the profile `costProfile` names, in ns, by counter name. */
    costOverrides: costOverridesSchema.optional(),
    /** Per-device properties, by BDF, applied when the device is first looked up. */
    devices: z.record(z.string(), dmaDeviceOptionsSchema, { error: "an object of device options by BDF" }).readonly().optional(),
    /** CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC: small kmalloc buffers of non-coherent devices bounce. Default false. */
    kmallocBounce: bool.optional(),
    /**
     * ARCH_DMA_MINALIGN in bytes: what dma_get_cache_alignment() answers and what the kmalloc bounce rule
     * aligns to. A power of two from 8 to 4096; default 64 (the CPU cache model's line). arm64 uses 128.
     */
    archDmaMinalign: num((v) => Number.isInteger(v) && v >= 8 && v <= 4096 && (v & (v - 1)) === 0, "a power of two from 8 to 4096 bytes").optional(),
    /** CPU cache: line capacity before deterministic eviction; default unbounded (a missing sync is always caught). */
    cacheLines: num((v) => Number.isSafeInteger(v) && v >= 1, "a positive number of cache lines").optional(),
    /**
     * Fault injection (the kernel's fail_* debugfs attributes): a seed and, per site of DMA_FAULT_SITES,
     * `{ probability, interval, times, space }`. Arm or change it later through `kernel.faultInjection`.
     */
    faultInject: faultInjectSchema.optional(),
  },
  "an object of kernel options",
);

/** Per-device DMA properties (coherence, mask bits, segment limits, min-align mask, bus offset), all optional. */
export type DmaDeviceOptions = z.input<typeof dmaDeviceOptionsSchema>;
/** Options of `createDmaKernel`; checked by `dmaKernelOptionsSchema`, every field optional. */
export type DmaKernelOptions = z.input<typeof dmaKernelOptionsSchema>;
/**
 * How the kernel uses the IOMMU for DMA: `strict`, `lazy`, `passthrough` or `off` (iommu.strict= /
 * iommu.passthrough=).
 */
export type IommuMode = z.input<typeof iommuModeSchema>;

/**
 * createDmaKernel's options, every field checked and every device option naming an endpoint of the
 * platform (`bdfs`); DmaOptionsError listing every issue otherwise, before anything is allocated.
 */
export function parseKernelOptions(options: unknown, bdfs: readonly string[]): DmaKernelOptions {
  const parsed = dmaKernelOptionsSchema.safeParse(options);
  const issues: InputIssue[] = parsed.success ? [] : schemaIssues(parsed.error.issues, options);
  const devices = (options as { devices?: unknown } | undefined)?.devices;
  if (typeof devices === "object" && devices !== null) {
    for (const bdf of Object.keys(devices)) {
      if (!bdfs.includes(bdf)) issues.push({ path: `devices[${JSON.stringify(bdf)}]`, value: bdf, expected: `the BDF of an endpoint of the platform (${bdfs.join(", ") || "none"})` });
    }
  }
  if (!parsed.success || issues.length > 0) throw new DmaOptionsError("createDmaKernel", "options", issues);
  return parsed.data;
}

/** Cost overrides given to `costProfile`, checked (DmaOptionsError listing every issue). */
export function parseCostOverrides(overrides: unknown): z.output<typeof costOverridesSchema> {
  const parsed = costOverridesSchema.safeParse(overrides);
  if (!parsed.success) throw new DmaOptionsError("costProfile", "costProfile", schemaIssues(parsed.error.issues, overrides));
  return parsed.data;
}

/** Options given to `kernel.device(bdf, options)`, checked before the device is probed. */
export function parseDeviceOptions(bdf: string, options: unknown): DmaDeviceOptions {
  const parsed = dmaDeviceOptionsSchema.safeParse(options);
  if (!parsed.success) throw new DmaOptionsError("device", `devices[${JSON.stringify(bdf)}]`, schemaIssues(parsed.error.issues, options));
  return parsed.data;
}
