import type { TraceEventBase } from "./events.js";

// The events of an imaginary layer, for the mechanism's own tests: this package names no real event.
export interface PacketEvent {
  readonly type: "packet";
  readonly t: number;
  readonly device: string;
  readonly addr: number;
  readonly len: number;
}
export interface DropEvent {
  readonly type: "drop";
  readonly t: number;
  readonly reason: string;
}
export type TestEvent = PacketEvent | DropEvent;

export const packet = (t: number): PacketEvent => ({ type: "packet", t, device: "0000:01:00.0", addr: t, len: 64 });

/** An event of a layer the holder of a `TestEvent` stream does not know. */
export interface ForeignEvent extends TraceEventBase {
  readonly type: "foreign";
  readonly note: string;
}
