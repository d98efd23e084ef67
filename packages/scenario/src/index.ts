export type {
  Api,
  DeviceSpec,
  DmabufFlow,
  DmabufWorkload,
  HmmEvent,
  HmmWorkload,
  KernelSpec,
  NvmeWorkload,
  P2pMapTypeName,
  P2pWorkload,
  RdmaOdpTest,
  RdmaOdpWorkload,
  Scenario,
  ScenarioExpectations,
  SgWorkload,
  SingleWorkload,
  StaleWindowWorkload,
  Workload,
  WorkloadKind,
} from "./types.js";
export { APIS, DMABUF_FLOWS, HMM_EVENTS, HMM_RACE_STEPS, IOMMU_MODES, P2P_MAP_TYPES, RDMA_ODP_TESTS, ScenarioSchema, WORKLOAD_KINDS } from "./schema.js";
export { ScenarioError, ScenarioSetupError } from "./errors.js";
export type { ScenarioIssue } from "./errors.js";
export { validateScenario } from "./validate.js";
export { MAX_JSON_DEPTH, parseScenario } from "./parse.js";
export { scenarioJsonSchema } from "./json-schema.js";
export { BUILTIN_SCENARIOS, builtinScenario } from "./builtins.js";
export type { Host, RunContext } from "./run/context.js";
export type { Check, RunResult } from "./run/result.js";
export { apiCallsOf, totalApiCalls } from "./run/result.js";
export { runScenario } from "./run/index.js";
export type { Axes, SweepOptions } from "./sweep.js";
export { defaultAxes, parseAxes, parseAxis, sweep } from "./sweep.js";
export { readRunLog, RUN_LOG_FORMAT, RUN_LOG_VERSION, RunLogRecorder } from "./event-log.js";
export type { RunLog, RunLogEntry, RunLogEvent } from "./event-log.js";
