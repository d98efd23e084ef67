import { createDmaKernel } from "@dmasim/dma";
import type { CostOverrides, CostProfileName, DebugMode, DmaKernel, DmaKernelOptions, IommuMode } from "@dmasim/dma";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider, Platform, PlatformSpec } from "@dmasim/pcie-p2p";
import { NvmeController } from "./controller.js";
import { NvmeDriver } from "./driver.js";
import type { NvmeDriverOptions } from "./driver.js";

/** The NVMe drive, a peer (a GPU, say) on the same switch, and a peer on another root port. */
export const NVME_BDF = "0000:02:00.0";
/** The peer on the drive's switch: P2P to it stays below the switch (PCI_P2PDMA_MAP_BUS_ADDR). */
export const PEER_SWITCH_BDF = "0000:03:00.0";
/** The peer on another root port: P2P to it goes through the host bridge (PCI_P2PDMA_MAP_THRU_HOST_BRIDGE). */
export const PEER_HOST_BRIDGE_BDF = "0000:05:00.0";

/** How `createNvmeSystem` builds the host: IOMMU mode, dma-debug, the drive's namespace and limits, RAM, costs. */
export interface NvmeSystemOptions extends NvmeDriverOptions {
  /** How the kernel's IOMMU translates the drive's DMA (off, passthrough, lazy, strict). */
  readonly iommuMode?: IommuMode;
  /** The dma-debug checker's mode (CONFIG_DMA_API_DEBUG). */
  readonly debug?: DebugMode;
  /** Namespace 1 capacity in bytes (a multiple of lbaSize). */
  readonly namespaceBytes?: number;
  /** LBA data size in bytes. */
  readonly lbaSize?: number;
  /** Whether the controller accepts SGLs; without, every command uses PRPs. */
  readonly sglSupported?: boolean;
  /** The controller's MDTS in bytes; default 1 MiB. */
  readonly maxTransfer?: number;
  /** Bytes of host RAM. */
  readonly ramBytes?: number;
  /** The drive is behind an external-facing port (Thunderbolt): strict IOMMU, bouncing. */
  readonly untrusted?: boolean;
  /** A named cost profile of @dmasim/dma ("vtd", "smmuv3", …), or per-event overrides (ns) on top of its default profile. */
  readonly costProfile?: CostProfileName | CostOverrides;
}

/** Kernel options beyond the IOMMU mode, dma-debug and costs (which have their own fields). */
export type NvmeKernelOptions = Omit<DmaKernelOptions, "iommuMode" | "debug" | "costProfile">;

/** A host with the drive on it: what the workload, the P2P cases and the driver need. */
export interface NvmeHost {
  /** The PCIe platform: memory, fabric, IOMMU. */
  readonly platform: Platform;
  /** The DMA mapping layer the driver maps through. */
  readonly kernel: DmaKernel;
  /** The drive: the device side of every command. */
  readonly controller: NvmeController;
  /** The host's NVMe driver: the CPU side of every command. */
  readonly driver: NvmeDriver;
}

export interface NvmeSystem extends NvmeHost {
  /** P2P memory in the peer's BAR that the drive reaches through the switch (BUS_ADDR). */
  readonly peerViaSwitch: P2pdmaProvider;
  /** P2P memory in a BAR behind another root port, reached through the host bridge (THRU_HOST_BRIDGE). */
  readonly peerViaHostBridge: P2pdmaProvider;
}

/**
 * One host: RAM, an IOMMU, host bridge hb0 that forwards P2P between its root ports; the NVMe drive
 * (BAR0: registers and doorbells) and a peer with 64 MiB of P2P memory under one switch; another peer
 * on its own root port.
 */
export function createNvmeSystem(options: NvmeSystemOptions = {}): NvmeSystem {
  const host = createNvmeHost(defaultSpec(options), NVME_BDF, options);
  return {
    ...host,
    peerViaSwitch: host.platform.addP2pdmaProvider(PEER_SWITCH_BDF, 0),
    peerViaHostBridge: host.platform.addP2pdmaProvider(PEER_HOST_BRIDGE_BDF, 0),
  };
}

function defaultSpec(options: NvmeSystemOptions): PlatformSpec {
  return {
    memory: { ramBytes: options.ramBytes ?? 4 * GiB },
    iommu: {},
    hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
    rootPorts: [{ id: "rp0" }, { id: "rp1" }],
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
    endpoints: [
      { bdf: NVME_BDF, parent: "sw0.dp0", bars: [{ size: 16 * 1024 }], ...(options.untrusted === true ? { untrusted: true } : {}) },
      { bdf: PEER_SWITCH_BDF, parent: "sw0.dp1", bars: [{ size: 64 * MiB }] },
      { bdf: PEER_HOST_BRIDGE_BDF, parent: "rp1", bars: [{ size: 64 * MiB }] },
    ],
  };
}

/**
 * The drive as endpoint `bdf` of any platform (a spec as createPlatform takes it; the endpoint needs a
 * BAR0 of at least 16 KiB for its doorbells), with its kernel and driver. `kernel` adds DMA kernel
 * options (swiotlb size, per-device properties, CPUs); the default swiotlb pool is 4 MiB.
 */
export function createNvmeHost(spec: PlatformSpec, bdf: string, options: NvmeSystemOptions & { readonly kernel?: NvmeKernelOptions } = {}): NvmeHost {
  const iommuMode = options.iommuMode ?? "strict";
  const platform = createPlatform(spec);
  const kernel = createDmaKernel(platform, {
    ...options.kernel,
    iommuMode,
    debug: options.debug ?? "throw",
    swiotlb: options.kernel?.swiotlb ?? { bytes: 4 * MiB },
    ...(options.costProfile === undefined ? {} : { costProfile: options.costProfile }),
  });
  const controller = new NvmeController(platform, bdf, {
    namespaceBytes: options.namespaceBytes ?? 64 * MiB,
    ...(options.lbaSize === undefined ? {} : { lbaSize: options.lbaSize }),
    ...(options.sglSupported === undefined ? {} : { sglSupported: options.sglSupported }),
    ...(options.maxTransfer === undefined ? {} : { maxTransfer: options.maxTransfer }),
  });
  const driver = new NvmeDriver(kernel, controller, options);
  return { platform, kernel, controller, driver };
}
