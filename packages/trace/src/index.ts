export { Counters, COUNTER_CAPACITY, combineCounters, counterNamesOf, defineCounters } from "./counters.js";
// Made by Counters.snapshot() and FaultInjection.attr() only: exported as types, so their constructors are not API.
export type { CounterSnapshot } from "./counters.js";
export type { CounterBlock, CounterIndex, CounterValues } from "./counters.js";
export { VirtualClock } from "./clock.js";
export type { TimerHandle } from "./clock.js";
export { EventStream } from "./events.js";
export type { Subscriber, TraceEventBase, TraceEventOf } from "./events.js";
export { Trace } from "./trace.js";
export { FAULT_ATTR_RULES, FaultInjection } from "./fault-inject.js";
export type { FaultAttr } from "./fault-inject.js";
export type { FaultAttrOptions, FaultInjectOptions } from "./fault-inject.js";
export { Xorshift32 } from "./random.js";
export { DmasimError, DmasimInputError, DmasimStateError, TraceInputError, hex, hex16, hex64, showValue } from "./errors.js";
export { DmasimInputIssuesError, formatPath, joinPath, schemaIssues } from "./input-issues.js";
export type { InputIssue, SchemaIssueLike } from "./input-issues.js";
export { LINUX_ERRNO, pickErrno } from "./errno.js";
export type { LinuxErrnoName } from "./errno.js";
