export { Counters, CounterSnapshot, COUNTER_CAPACITY, combineCounters, counterNamesOf, defineCounters } from "./counters.js";
export type { CounterBlock, CounterIndex, CounterValues } from "./counters.js";
export { VirtualClock } from "./clock.js";
export type { TimerHandle } from "./clock.js";
export { EventStream } from "./events.js";
export type {
  Access,
  FabricPath,
  FaultReason,
  InvalidationScope,
  Subscriber,
  TraceEvent,
  TraceEventOf,
  TraceEventType,
} from "./events.js";
export { Trace } from "./trace.js";
export { FAULT_ATTR_RULES, FaultAttr, FaultInjection } from "./fault-inject.js";
export type { FaultAttrOptions, FaultInjectOptions } from "./fault-inject.js";
export { Xorshift32 } from "./random.js";
export { DmasimError, DmasimInputError, DmasimStateError, TraceInputError, hex, hex16, hex64, showValue } from "./errors.js";
export { DmasimInputIssuesError, formatPath, joinPath, schemaIssues } from "./input-issues.js";
export type { InputIssue, SchemaIssueLike } from "./input-issues.js";
