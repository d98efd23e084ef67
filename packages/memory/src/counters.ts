import { defineCounters } from "@dmasim/trace";

/** The memory layer's counters, at indices 0..7 of the platform's counter array (6 used). */
export const MemoryCounter = defineCounters(0, ["MemReadBytes", "MemWriteBytes", "MemPagesMaterialised", "PageAllocs", "PageFrees", "PageDescLookups"]);

/** Every counter this package sees: its own. */
export const Counter = MemoryCounter;
export type Counter = (typeof Counter)[keyof typeof Counter];
