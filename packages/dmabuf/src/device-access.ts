import { SgTable } from "@dmasim/scatterlist";
import { DmaResvUsage } from "./constants.js";
import { DmaBufAttachment, mappingRecord } from "./dma-buf.js";
import { DmaBufInputError } from "./errors.js";
import { DmaBufPhysListDma } from "./phys-list.js";
import { unsafeDmaAddr } from "@dmasim/dma";

/** A mapping an importer's device reaches a dma-buf through. */
export type DmaBufDeviceMapping = SgTable | DmaBufPhysListDma;

/**
 * The rule checks of a device access through `m` (B.7): the mapping must be live ("dma-after-unmap"),
 * writes must not follow an invalidation ("write-after-invalidate"), and every KERNEL fence (a move's
 * copy) must have signalled ("dma-before-kernel-fence"). Returns false when the access must not happen
 * (in "collect" mode the access still happens, as the hardware would do it).
 */
function checkAccess(fn: string, attach: DmaBufAttachment, m: DmaBufDeviceMapping, write: boolean): void {
  if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError(fn, "attach", attach, "a DmaBufAttachment");
  if (!(m instanceof SgTable) && !(m instanceof DmaBufPhysListDma)) throw new DmaBufInputError(fn, "mapping", m, "an SgTable or a DmaBufPhysListDma of this attachment");
  const buf = attach.dmabuf;
  const debug = buf.system.debug;
  if (!debug.enabled) return;
  const key = m instanceof SgTable ? m : m.list;
  const rec = m instanceof DmaBufPhysListDma && m.unmapped ? undefined : mappingRecord(attach, key);
  const bdf = attach.dev.bdf;
  if (rec === undefined) {
    if (m instanceof DmaBufPhysListDma && m.dev !== attach.dev) throw new DmaBufInputError(fn, "mapping", m.dev.bdf, `a mapping of ${bdf}`);
    debug.report("dma-after-unmap", bdf, `${fn} through a mapping of "${buf.expName}" that was unmapped: the memory may hold another buffer now`);
    return;
  }
  if (write && rec.invalidated) debug.report("write-after-invalidate", bdf, `${fn}: a device write through a mapping of "${buf.expName}" after invalidate_mappings (only speculative reads are allowed until unmap)`);
  if (!buf.resv.testSignaled(DmaResvUsage.KERNEL)) {
    debug.report("dma-before-kernel-fence", bdf, `${fn} through a mapping of "${buf.expName}" before its KERNEL fence signalled (the exporter's move copy is still running; wait with dmaResvWaitTimeout)`);
  }
}

/** Calls `fn(dmaAddr, bufOffset, n)` for each piece of [offset, offset+len) of the mapping. */
function walk(fnName: string, m: DmaBufDeviceMapping, offset: number, len: number, fn: (addr: number, at: number, n: number) => void): void {
  const n = m instanceof SgTable ? m.nents : m.list.nrRanges;
  const addrs = m instanceof SgTable ? m.dmaAddress : m.dmaAddr;
  const lens = m instanceof SgTable ? m.dmaLength : m.list.len;
  let base = 0;
  let done = 0;
  for (let i = 0; i < n && done < len; i++) {
    const segLen = lens[i] ?? 0;
    const segEnd = base + segLen;
    const pos = offset + done;
    if (pos < segEnd) {
      const k = Math.min(segEnd - pos, len - done);
      fn((addrs[i] ?? 0) + (pos - base), done, k);
      done += k;
    }
    base = segEnd;
  }
  if (done < len) throw new DmaBufInputError(fnName, "offset", offset, `a range inside the mapping (${base} bytes)`);
}

function checkRange(fn: string, offset: number, len: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new DmaBufInputError(fn, "offset", offset, "a byte offset >= 0");
  if (len === 0) throw new DmaBufInputError(fn, "length", len, "at least one byte");
}

/**
 * The importer's device reads `dst.length` bytes at `offset` into the buffer, through mapping `m`, as
 * TLPs on the fabric (IOMMU-translated or by bus address). The rule checks run first.
 */
export function dmaBufDeviceRead(attach: DmaBufAttachment, m: DmaBufDeviceMapping, offset: number, dst: Uint8Array): void {
  const fn = "dma_buf_device_read";
  if (!(dst instanceof Uint8Array)) throw new DmaBufInputError(fn, "dst", dst, "a Uint8Array");
  checkRange(fn, offset, dst.length);
  checkAccess(fn, attach, m, false);
  const ep = attach.dev.endpoint;
  walk(fn, m, offset, dst.length, (addr, at, n) => {
    ep.dmaReadInto(unsafeDmaAddr(addr), dst.subarray(at, at + n));
  });
  attach.dmabuf.system.invalidations.deviceAccess();
}

/** The importer's device writes `bytes` at `offset` into the buffer through mapping `m`. */
export function dmaBufDeviceWrite(attach: DmaBufAttachment, m: DmaBufDeviceMapping, offset: number, bytes: Uint8Array): void {
  const fn = "dma_buf_device_write";
  if (!(bytes instanceof Uint8Array)) throw new DmaBufInputError(fn, "bytes", bytes, "a Uint8Array");
  checkRange(fn, offset, bytes.length);
  checkAccess(fn, attach, m, true);
  const ep = attach.dev.endpoint;
  walk(fn, m, offset, bytes.length, (addr, at, n) => {
    ep.dmaWrite(unsafeDmaAddr(addr), bytes.subarray(at, at + n));
  });
  attach.dmabuf.system.invalidations.deviceAccess();
}
