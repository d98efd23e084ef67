import { LINUX_ERRNO } from "@dmasim/trace";
/**
 * blk_status_t (include/linux/blk_types.h) and the errno table of block/blk-core.c. Members drop the
 * kernel's common prefix, as every dmasim enumeration does (`BlkStatus.IOERR` is BLK_STS_IOERR). The
 * iterator functions return false and leave one of these in `iter.status`; drivers complete requests
 * with them.
 */
export const BlkStatus = {
  OK: 0,
  NOTSUPP: 1,
  TIMEOUT: 2,
  NOSPC: 3,
  TRANSPORT: 4,
  TARGET: 5,
  RESV_CONFLICT: 6,
  MEDIUM: 7,
  PROTECTION: 8,
  RESOURCE: 9,
  IOERR: 10,
  DM_REQUEUE: 11,
  AGAIN: 12,
  DEV_RESOURCE: 13,
  ZONE_OPEN_RESOURCE: 14,
  ZONE_ACTIVE_RESOURCE: 15,
  OFFLINE: 16,
  DURATION_LIMIT: 17,
  // 19 in 6.10–6.19 (atomic writes left 18 unused); a 2026 fix renumbers it to 18.
  INVAL: 19,
} as const;
export type BlkStatus = (typeof BlkStatus)[keyof typeof BlkStatus];

// The kernel's macro names, for code that writes them bare (`iter.status === BLK_STS_OK`).
/** `BlkStatus.OK` under the kernel's macro name BLK_STS_OK. */
export const BLK_STS_OK = BlkStatus.OK;
/** `BlkStatus.NOTSUPP` under the kernel's macro name BLK_STS_NOTSUPP. */
export const BLK_STS_NOTSUPP = BlkStatus.NOTSUPP;
/** `BlkStatus.TIMEOUT` under the kernel's macro name BLK_STS_TIMEOUT. */
export const BLK_STS_TIMEOUT = BlkStatus.TIMEOUT;
/** `BlkStatus.NOSPC` under the kernel's macro name BLK_STS_NOSPC. */
export const BLK_STS_NOSPC = BlkStatus.NOSPC;
/** `BlkStatus.TRANSPORT` under the kernel's macro name BLK_STS_TRANSPORT. */
export const BLK_STS_TRANSPORT = BlkStatus.TRANSPORT;
/** `BlkStatus.TARGET` under the kernel's macro name BLK_STS_TARGET. */
export const BLK_STS_TARGET = BlkStatus.TARGET;
/** `BlkStatus.RESV_CONFLICT` under the kernel's macro name BLK_STS_RESV_CONFLICT. */
export const BLK_STS_RESV_CONFLICT = BlkStatus.RESV_CONFLICT;
/** `BlkStatus.MEDIUM` under the kernel's macro name BLK_STS_MEDIUM. */
export const BLK_STS_MEDIUM = BlkStatus.MEDIUM;
/** `BlkStatus.PROTECTION` under the kernel's macro name BLK_STS_PROTECTION. */
export const BLK_STS_PROTECTION = BlkStatus.PROTECTION;
/** `BlkStatus.RESOURCE` under the kernel's macro name BLK_STS_RESOURCE. */
export const BLK_STS_RESOURCE = BlkStatus.RESOURCE;
/** `BlkStatus.IOERR` under the kernel's macro name BLK_STS_IOERR. */
export const BLK_STS_IOERR = BlkStatus.IOERR;
/** `BlkStatus.DM_REQUEUE` under the kernel's macro name BLK_STS_DM_REQUEUE. */
export const BLK_STS_DM_REQUEUE = BlkStatus.DM_REQUEUE;
/** `BlkStatus.AGAIN` under the kernel's macro name BLK_STS_AGAIN. */
export const BLK_STS_AGAIN = BlkStatus.AGAIN;
/** `BlkStatus.DEV_RESOURCE` under the kernel's macro name BLK_STS_DEV_RESOURCE. */
export const BLK_STS_DEV_RESOURCE = BlkStatus.DEV_RESOURCE;
/** `BlkStatus.ZONE_OPEN_RESOURCE` under the kernel's macro name BLK_STS_ZONE_OPEN_RESOURCE. */
export const BLK_STS_ZONE_OPEN_RESOURCE = BlkStatus.ZONE_OPEN_RESOURCE;
/** `BlkStatus.ZONE_ACTIVE_RESOURCE` under the kernel's macro name BLK_STS_ZONE_ACTIVE_RESOURCE. */
export const BLK_STS_ZONE_ACTIVE_RESOURCE = BlkStatus.ZONE_ACTIVE_RESOURCE;
/** `BlkStatus.OFFLINE` under the kernel's macro name BLK_STS_OFFLINE. */
export const BLK_STS_OFFLINE = BlkStatus.OFFLINE;
/** `BlkStatus.DURATION_LIMIT` under the kernel's macro name BLK_STS_DURATION_LIMIT. */
export const BLK_STS_DURATION_LIMIT = BlkStatus.DURATION_LIMIT;
/** `BlkStatus.INVAL` under the kernel's macro name BLK_STS_INVAL. */
export const BLK_STS_INVAL = BlkStatus.INVAL;

// errno values the table needs (Linux x86 numbering, positive here and negated at use).
const E = LINUX_ERRNO;

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
  for (const [name, value] of Object.entries(BlkStatus)) if (value === status) return `BLK_STS_${name}`;
  return `blk_status_t(${String(status)})`;
}
