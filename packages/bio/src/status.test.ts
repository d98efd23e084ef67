import { describe, expect, it } from "vitest";
import { BLK_STS_INVAL, BLK_STS_IOERR, BLK_STS_OK, BlkStatus, blkStatusName, blkStatusToErrno } from "./index.js";

describe("blk_status_t", () => {
  it("members drop the BLK_STS_ prefix; the macro names are the same values", () => {
    expect([BlkStatus.OK, BlkStatus.IOERR, BlkStatus.INVAL]).toEqual([BLK_STS_OK, BLK_STS_IOERR, BLK_STS_INVAL]);
    expect([BLK_STS_OK, BLK_STS_IOERR, BLK_STS_INVAL]).toEqual([0, 10, 19]);
  });

  it("blkStatusName prints the kernel's macro name", () => {
    expect(blkStatusName(BlkStatus.INVAL)).toBe("BLK_STS_INVAL");
    expect(blkStatusName(BlkStatus.OK)).toBe("BLK_STS_OK");
    expect(blkStatusName(18)).toBe("blk_status_t(18)");
    expect(blkStatusToErrno(BlkStatus.IOERR)).toBe(-5);
  });
});
