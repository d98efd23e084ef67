/**
 * Modelled time of the NIC's ODP fault path, in virtual nanoseconds. Nothing here is a published
 * per-step figure: Part E.2 of the reference gives only the sum (`odp_fault_fixed`, the NIC-side event,
 * work-item dispatch, UMR post and completion, and the resume command: "tens to hundreds of µs" from
 * NP-RDMA, arXiv 2310.11062; default 50 µs). The split of that sum across the steps is assumed. Every
 * row can be overridden (`new Mlx5Nic(..., { costs: { ... } })`).
 */
export interface RdmaCosts {
  /** Page-fault EQE delivery and interrupt (assumed 5 µs of the 50 µs). */
  faultEventNs: number;
  /** Work-item dispatch of the fault handler (assumed 10 µs). */
  faultWorkDispatchNs: number;
  /** Posting a UMR WQE (assumed 15 µs for the fixed part). */
  umrPostNs: number;
  /** Per MTT entry a UMR writes (assumed 10 ns). */
  umrPerEntryNs: number;
  /** Waiting for the UMR completion (assumed 15 µs). */
  umrCompletionNs: number;
  /** The page_fault_resume command and the replay (assumed 5 µs). */
  faultResumeNs: number;
  /** One attempt of the umem fault loop (read_begin and walk setup), per retry (assumed 200 ns). */
  faultAttemptNs: number;
  /** One migration_entry_wait that finds the migration still running (assumed 1 ms). */
  migrationWaitNs: number;
  /** Wire time per byte (assumed 0.08 ns: 100 Gb/s). */
  wireNsPerByte: number;
}

/** The defaults: sum of the fault steps is Part E.2's 50 µs `odp_fault_fixed`. */
export const DEFAULT_RDMA_COSTS: Readonly<RdmaCosts> = Object.freeze({
  faultEventNs: 5_000,
  faultWorkDispatchNs: 10_000,
  umrPostNs: 15_000,
  umrPerEntryNs: 10,
  umrCompletionNs: 15_000,
  faultResumeNs: 5_000,
  faultAttemptNs: 200,
  migrationWaitNs: 1_000_000,
  wireNsPerByte: 0.08,
});
