import { defineCounters } from "@dmasim/trace";

/**
 * The RDMA NIC's counters, at indices 112..127 of the counter array (15 used): the ODP fault path
 * (page-fault events, pages mapped, UMR work), invalidations, prefetch, and the verbs traffic.
 */
export const RdmaCounter = defineCounters(112, [
  "OdpPageFaultEvents",
  "OdpPagesFaulted",
  "OdpFaultErrors",
  "OdpInvalidations",
  "OdpMttZapped",
  "OdpPagesDirtied",
  "OdpPrefetches",
  "OdpImplicitChildren",
  "UmrPosts",
  "MttWrites",
  "PinnedPages",
  "RdmaWqes",
  "RdmaCqes",
  "RdmaCqeErrors",
  "RdmaBytes",
]);
export type RdmaCounter = (typeof RdmaCounter)[keyof typeof RdmaCounter];
