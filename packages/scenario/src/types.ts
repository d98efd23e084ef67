import type { z } from "zod";
import type {
  ApiSchema,
  DeviceSpecSchema,
  DmabufWorkloadSchema,
  HmmWorkloadSchema,
  KernelSpecSchema,
  NvmeWorkloadSchema,
  P2pWorkloadSchema,
  RdmaOdpWorkloadSchema,
  ScenarioExpectationsSchema,
  ScenarioSchema,
  SgWorkloadSchema,
  SingleWorkloadSchema,
  StaleWindowWorkloadSchema,
  WorkloadSchema,
} from "./schema.js";

/**
 * A scenario: plain JSON, so a file and a built-in are the same thing. `platform` is exactly what
 * createPlatform takes; `kernel` are the DMA kernel's options; `workload` says what the driver does.
 * The types come from the zod schema (schema.ts), which documents every field.
 */
export type Scenario = z.output<typeof ScenarioSchema>;
/** classic: the scatterlist-era path; two-step: the `dma_iova_*` path. */
export type Api = z.output<typeof ApiSchema>;
export type KernelSpec = z.output<typeof KernelSpecSchema>;
export type DeviceSpec = z.output<typeof DeviceSpecSchema>;
export type ScenarioExpectations = z.output<typeof ScenarioExpectationsSchema>;
export type P2pMapTypeName = NonNullable<ScenarioExpectations["mapType"]>;
export type Workload = z.output<typeof WorkloadSchema>;
export type WorkloadKind = Workload["kind"];
export type NvmeWorkload = z.output<typeof NvmeWorkloadSchema>;
export type SgWorkload = z.output<typeof SgWorkloadSchema>;
export type SingleWorkload = z.output<typeof SingleWorkloadSchema>;
export type P2pWorkload = z.output<typeof P2pWorkloadSchema>;
export type StaleWindowWorkload = z.output<typeof StaleWindowWorkloadSchema>;
export type HmmWorkload = z.output<typeof HmmWorkloadSchema>;
export type HmmEvent = HmmWorkload["event"];
export type RdmaOdpWorkload = z.output<typeof RdmaOdpWorkloadSchema>;
export type RdmaOdpTest = RdmaOdpWorkload["test"];
export type DmabufWorkload = z.output<typeof DmabufWorkloadSchema>;
export type DmabufFlow = DmabufWorkload["flow"];
