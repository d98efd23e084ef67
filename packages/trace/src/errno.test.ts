import { describe, expect, it } from "vitest";
import { LINUX_ERRNO, pickErrno } from "./errno.js";

describe("errno tables", () => {
  it("pickErrno takes the named values of the one table, and nothing else", () => {
    const t = pickErrno("EINVAL", "EBUSY", "EOPNOTSUPP");
    expect(t).toEqual({ EINVAL: 22, EBUSY: 16, EOPNOTSUPP: 95 });
    expect(Object.isFrozen(t)).toBe(true);
  });

  it("LINUX_ERRNO holds the kernel's values, each once", () => {
    expect(LINUX_ERRNO).toMatchObject({ EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ETIMEDOUT: 110, EREMOTEIO: 121 });
    const values = Object.values(LINUX_ERRNO);
    expect(new Set(values).size).toBe(values.length);
  });
});
