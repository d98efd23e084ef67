import { mapGranuleNoPhysProtCheck } from "@dmasim/iommu/internal";
import { counterValues } from "@dmasim/trace/internal";
import { Counter } from "./counters.js";
import { DMA_ATTR_ALL, DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_ATTR_REQUIRE_COHERENT, DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { dmaInfoToProt, iommuMapNosync } from "./iommu-dma.js";
import type { DmaIovaState } from "./iova-state.js";

// The two-step API's fast path, behind one seam: two-step.ts calls it first and runs the checked
// dma_iova_link (the kernel's flow, every check) for whatever it declines. What it does is exactly what
// the checked path would do for the calls it admits; two-step-fast.test.ts holds the two to that.

/**
 * dma_info_to_prot of a coherent device by direction (BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE), computed by
 * dmaInfoToProt itself so the two cannot disagree.
 */
const COHERENT_PROT = [DmaDirection.BIDIRECTIONAL, DmaDirection.TO_DEVICE, DmaDirection.FROM_DEVICE].map((d) => dmaInfoToProt(d, true, 0));

// Engine tuning, each kept for a measured figure (the batch benchmark of dma.bench.ts, base and variant
// interleaved in one process, 16 rounds, ratio of medians): reading the counter index from this local
// instead of `Counter.DmaIovaLinks` at each link saves 10 % of the batch; `=== true` / `=== false` on
// the boolean fields below instead of bare truthiness tests (V8 otherwise compiles each as a full
// ToBoolean) saves 4 %.
const C_LINKS = Counter.DmaIovaLinks;
// The internal keys of the two per-link accesses, as module-local copies. Kept for a figure: reading the
// imported symbols instead made the two-step 256-page batch 9 % slower (median of 10 per-process ratios,
// a local script timing the dma.bench.ts batch in CPU time, base and branch processes interleaved; 0.94
// and 0.99 with the copies, two series of 8). An imported binding is a load through the module's cell on
// every use; a module-local const is folded by TurboFan.
const MAP_GRANULE_NO_PHYS_PROT_CHECK: typeof mapGranuleNoPhysProtCheck = mapGranuleNoPhysProtCheck;
const COUNTER_VALUES: typeof counterValues = counterValues;

/** Attributes that change nothing a one-granule link of a coherent device does (no MMIO, REQUIRE_COHERENT, PRIVILEGED). */
const GRANULE_LINK_ATTRS = DMA_ATTR_ALL & ~(DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT | DMA_ATTR_PRIVILEGED);

/**
 * dma_iova_link of one granule from a granule-aligned buffer by a coherent device, untraced and with
 * dma-debug off: what a block or network driver does for every page. Skips the argument checks, the
 * kernel's WARNs, dev_use_swiotlb, the cache maintenance and dma-debug, because none can matter: the
 * range is aligned (iova_unaligned is false even for an untrusted device, so nothing bounces), the device
 * is coherent (no maintenance), no WARN can fire and nothing is tracked. A link is then the page-table
 * write (IommuDomain.mapGranuleNoPhysProtCheck, which checks the IOVA and the slot itself) and a counter.
 *
 * Returns true when it linked; false, with nothing changed, for any call it does not admit or the IOMMU
 * entry declines (an occupied slot, an IOVA outside the aperture or off a granule, a phys past the 52-bit
 * space): the caller then runs the checked dma_iova_link, which gives the precise answer. A `dev` or
 * `state` that is not an object throws a TypeError, also before anything changed; the caller catches it
 * and runs the checked path too.
 *
 * Kept small on purpose: V8 inlines a function into a caller's loop only while it, with what it inlines
 * itself, fits a bytecode budget, and this one inlines the IOMMU entry and its page-table write. Over the
 * budget every link of a batch becomes a call (see the README's benchmark notes).
 */
/* eslint-disable @typescript-eslint/no-unnecessary-boolean-literal-compare -- measured, see C_LINKS */
export function dmaIovaLinkGranuleNoChecks(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): boolean {
  // No test of dev or state here: a missing one (or a BigInt where `+` or `&` meets it) throws a TypeError
  // before anything changed, and dmaIovaLink sends that call to the checked path, which names the
  // argument. Testing them here (`dev?.`, `typeof state?.addr`) cost 10-15 % of the batch benchmark
  // whenever V8 cannot treat the benchmark's device and state as constants (another configuration's
  // closure exists, as in any real caller). An object made by hand to look like a DmaDevice is refused
  // only by the checked path.
  const domain = dev.domain;
  // Numbers only (a string such as "length" must not index the table, a BigInt would find 1n's entry);
  // 0 for DMA_NONE, fractions and the rest.
  const prot = typeof dir === "number" ? (COHERENT_PROT[dir] ?? 0) : 0;
  if (
    prot !== 0 &&
    domain !== undefined &&
    size === dev.granule &&
    dev.bound === true &&
    dev.coherent === true &&
    Number.isInteger(phys) &&
    phys >= 0 &&
    // Alignment by mask (the granule is a power of two): exact for any integer, as `&` keeps the low 32 bits.
    (phys & (size - 1)) === 0 &&
    // A BigInt offset or attrs throws at `+` or `&` below (see dev above).
    offset >= 0 &&
    (attrs & GRANULE_LINK_ATTRS) === attrs
  ) {
    const kernel = dev.kernel;
    const trace = kernel.trace;
    if (
      trace.events.active === false &&
      kernel.iovaTracker.tracking === false &&
      // Any state whose addr is not an integer IOVA is declined by the IOMMU entry.
      domain[MAP_GRANULE_NO_PHYS_PROT_CHECK](state.addr + offset, phys, prot) >= 0
    ) {
      const v = trace.counters[COUNTER_VALUES];
      v[C_LINKS] = (v[C_LINKS] ?? 0) + 1;
      return true;
    }
  }
  return false;
}
/* eslint-enable @typescript-eslint/no-unnecessary-boolean-literal-compare */

/**
 * __dma_iova_link of one granule-aligned granule by a coherent device, for the checked dma_iova_link
 * once its checks have passed (dma-debug's included): skips dev_use_swiotlb (an aligned range never
 * bounces), the cache maintenance (coherent) and iommu_map's argument checks (phys is an aligned integer,
 * prot comes from dma_info_to_prot), writing the PTE through mapGranuleNoPhysProtCheck; whatever that
 * declines goes through iommu_map, which reports the error. Returns 0 or iommu_map's -errno; 1 (nothing
 * changed) when the call is not that case, and the caller takes the kernel's path. Without it the
 * checked link (every link with dma-debug on) is about 15 % slower (batch benchmark, interleaved A/B).
 */
export function dmaIovaLinkAlignedGranuleNoBounceCheck(dev: DmaDevice, iova: number, phys: number, size: number, dir: DmaDirection, attrs: number): number {
  const domain = dev.domain;
  // Called after every check passed: dir, attrs and phys are numbers here.
  if (domain === undefined || size !== dev.granule || !dev.coherent || (attrs & GRANULE_LINK_ATTRS) !== attrs || (phys & (size - 1)) !== 0) return 1;
  const prot = COHERENT_PROT[dir] ?? 0;
  if (prot === 0) return 1;
  if (domain[MAP_GRANULE_NO_PHYS_PROT_CHECK](iova, phys, prot) >= 0) return 0;
  return iommuMapNosync(dev, iova, phys, size, prot);
}
