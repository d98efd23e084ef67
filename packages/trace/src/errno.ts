/**
 * The Linux errno values the model returns, in one table (include/uapi/asm-generic/errno-base.h and
 * errno.h). Each package returns a subset, declared with `pickErrno`, so a value is written once and a
 * package's table still says which errors it can return. Kernel style: returned negated (`return -EIO`).
 */
export const LINUX_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EDEADLK: 35,
  EBADE: 52,
  ENODATA: 61,
  ETIME: 62,
  ENOLINK: 67,
  EOVERFLOW: 75,
  EREMCHG: 78,
  EILSEQ: 84,
  EOPNOTSUPP: 95,
  ETOOMANYREFS: 109,
  ETIMEDOUT: 110,
  EREMOTEIO: 121,
} as const;

/** The name of an errno in `LINUX_ERRNO`. */
export type LinuxErrnoName = keyof typeof LINUX_ERRNO;

/** A package's errno table: the named entries of `LINUX_ERRNO`, with their literal values. */
export function pickErrno<const K extends LinuxErrnoName>(...names: readonly K[]): { readonly [P in K]: (typeof LINUX_ERRNO)[P] } {
  const out: Partial<Record<K, number>> = {};
  for (const n of names) out[n] = LINUX_ERRNO[n];
  return Object.freeze(out) as { readonly [P in K]: (typeof LINUX_ERRNO)[P] };
}
