import { defineCounters } from "@dmasim/trace";

/**
 * The counters of dmabuf-backed MRs, at indices 88..93 of the counter array (beside `RdmaCounter`):
 * page faults on a dynamic dmabuf MR, the maps they and registrations made, invalidate callbacks and
 * the MTT entries they zapped, revokes of pinned-revocable MRs, and fault errors (a revoked or
 * unreachable buffer).
 */
export const RdmaDmabufCounter = defineCounters(88, ["DmabufMrFaults", "DmabufMrMaps", "DmabufMrInvalidations", "DmabufMrMttZapped", "DmabufMrRevokes", "DmabufMrFaultErrors"]);
export type RdmaDmabufCounter = (typeof RdmaDmabufCounter)[keyof typeof RdmaDmabufCounter];
