export { createPlatform } from "./platform.js";
export type { PlatformSpec, MemorySpec, IommuSpec, HostBridgeSpec, HostBridgeP2p, RootPortSpec, SwitchSpec, SwitchPortSpec, EndpointSpec, BarSpec, AcsSpec } from "./spec.js";
export {
  platformSpecSchema,
  memorySpecSchema,
  iommuSpecSchema,
  hostBridgeSpecSchema,
  hostBridgeP2pSchema,
  rootPortSpecSchema,
  switchSpecSchema,
  switchPortSpecSchema,
  endpointSpecSchema,
  barSpecSchema,
  acsSpecSchema,
} from "./spec.js";
export { parseSpec } from "./validate.js";
export { numberWhere, strictRecord } from "./schema-helpers.js";
export type { Platform, Endpoint, Bar, BusAddr, P2pdmaProvider, HostBridgeInfo, P2pdmaExplanation } from "./types.js";
export { PciP2pdmaMapType } from "./p2pdma.js";
export type { DmaAccessObserver } from "./fabric.js";
export { PciAcs } from "./acs.js";
export { PlatformSpecError, PciError, PciInputError, PcieAccessError } from "./errors.js";
export type { PciErrorCode, PcieAccessKind } from "./errors.js";
export { isBdf } from "./bdf.js";
export { busAddr, unsafeBusAddr } from "./bus-addr.js";
export { dmaAddr, unsafeDmaAddr } from "./dma-addr.js";
export type { DmaAddr } from "./dma-addr.js";
export { DEFAULT_MMIO_WINDOW } from "./bars.js";
export { Counter, PcieP2pCounter } from "./counters.js";
export type { FabricPath, PcieP2pEvent, TlpEvent, TraceEvent, UnsupportedRequestEvent } from "./events.js";
