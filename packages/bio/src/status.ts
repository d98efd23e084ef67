/**
 * blk_status_t (include/linux/blk_types.h) and the errno table of block/blk-core.c. The iterator
 * functions return false and leave one of these in `iter.status`; drivers complete requests with them.
 */
export const BlkStatus = {
  BLK_STS_OK: 0,
  BLK_STS_NOTSUPP: 1,
  BLK_STS_TIMEOUT: 2,
  BLK_STS_NOSPC: 3,
  BLK_STS_TRANSPORT: 4,
  BLK_STS_TARGET: 5,
  BLK_STS_RESV_CONFLICT: 6,
  BLK_STS_MEDIUM: 7,
  BLK_STS_PROTECTION: 8,
  BLK_STS_RESOURCE: 9,
  BLK_STS_IOERR: 10,
  BLK_STS_DM_REQUEUE: 11,
  BLK_STS_AGAIN: 12,
  BLK_STS_DEV_RESOURCE: 13,
  BLK_STS_ZONE_OPEN_RESOURCE: 14,
  BLK_STS_ZONE_ACTIVE_RESOURCE: 15,
  BLK_STS_OFFLINE: 16,
  BLK_STS_DURATION_LIMIT: 17,
  // 19 in 6.10–6.19 (atomic writes left 18 unused); a 2026 fix renumbers it to 18.
  BLK_STS_INVAL: 19,
} as const;
export type BlkStatus = (typeof BlkStatus)[keyof typeof BlkStatus];

export const {
  BLK_STS_OK,
  BLK_STS_NOTSUPP,
  BLK_STS_TIMEOUT,
  BLK_STS_NOSPC,
  BLK_STS_TRANSPORT,
  BLK_STS_TARGET,
  BLK_STS_RESV_CONFLICT,
  BLK_STS_MEDIUM,
  BLK_STS_PROTECTION,
  BLK_STS_RESOURCE,
  BLK_STS_IOERR,
  BLK_STS_DM_REQUEUE,
  BLK_STS_AGAIN,
  BLK_STS_DEV_RESOURCE,
  BLK_STS_ZONE_OPEN_RESOURCE,
  BLK_STS_ZONE_ACTIVE_RESOURCE,
  BLK_STS_OFFLINE,
  BLK_STS_DURATION_LIMIT,
  BLK_STS_INVAL,
} = BlkStatus;

// errno values the table needs (Linux x86 numbering, positive here and negated at use).
const E = { EOPNOTSUPP: 95, ETIMEDOUT: 110, ENOSPC: 28, ENOLINK: 67, EREMOTEIO: 121, EBADE: 52, ENODATA: 61, EILSEQ: 84, ENOMEM: 12, EIO: 5, EREMCHG: 78, EAGAIN: 11, EBUSY: 16, ETOOMANYREFS: 109, EOVERFLOW: 75, ENODEV: 19, ETIME: 62, EINVAL: 22 } as const;

/** blk_errors[]: status → { errno, name }. */
const table: readonly (readonly [BlkStatus, number, string])[] = [
  [BLK_STS_OK, 0, ""],
  [BLK_STS_NOTSUPP, -E.EOPNOTSUPP, "operation not supported"],
  [BLK_STS_TIMEOUT, -E.ETIMEDOUT, "timeout"],
  [BLK_STS_NOSPC, -E.ENOSPC, "critical space allocation"],
  [BLK_STS_TRANSPORT, -E.ENOLINK, "recoverable transport"],
  [BLK_STS_TARGET, -E.EREMOTEIO, "critical target"],
  [BLK_STS_RESV_CONFLICT, -E.EBADE, "reservation conflict"],
  [BLK_STS_MEDIUM, -E.ENODATA, "critical medium"],
  [BLK_STS_PROTECTION, -E.EILSEQ, "protection"],
  [BLK_STS_RESOURCE, -E.ENOMEM, "kernel resource"],
  [BLK_STS_DEV_RESOURCE, -E.EBUSY, "device resource"],
  [BLK_STS_AGAIN, -E.EAGAIN, "nonblocking retry"],
  [BLK_STS_OFFLINE, -E.ENODEV, "device offline"],
  [BLK_STS_DM_REQUEUE, -E.EREMCHG, "dm internal retry"],
  [BLK_STS_ZONE_OPEN_RESOURCE, -E.ETOOMANYREFS, "open zones exceeded"],
  [BLK_STS_ZONE_ACTIVE_RESOURCE, -E.EOVERFLOW, "active zones exceeded"],
  [BLK_STS_DURATION_LIMIT, -E.ETIME, "duration limit exceeded"],
  [BLK_STS_INVAL, -E.EINVAL, "invalid"],
  [BLK_STS_IOERR, -E.EIO, "I/O"],
];

/** errno_to_blk_status: a negative errno (or 0) → status; anything not in the table is BLK_STS_IOERR. */
export function errnoToBlkStatus(errno: number): BlkStatus {
  for (const [status, err] of table) if (err === errno) return status;
  return BLK_STS_IOERR;
}

/** blk_status_to_errno: status → negative errno (-EIO for unknown values). */
export function blkStatusToErrno(status: number): number {
  for (const [s, err] of table) if (s === status) return err;
  return -E.EIO;
}

/** blk_status_to_str. */
export function blkStatusToStr(status: number): string {
  for (const [s, , name] of table) if (s === status) return name;
  return "I/O";
}

/** The constant's own name ("BLK_STS_INVAL"), for messages and reports. */
export function blkStatusName(status: number): string {
  for (const [name, value] of Object.entries(BlkStatus)) if (value === status) return name;
  return `blk_status_t(${String(status)})`;
}
