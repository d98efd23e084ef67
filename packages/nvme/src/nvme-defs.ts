/**
 * NVMe wire formats and constants (NVM Express Base Specification 2.x; include/linux/nvme.h). Only what
 * the model's I/O path uses: the submission and completion queue entries, PRP and SGL data pointers,
 * doorbells and status codes.
 */

/** NVME_CTRL_PAGE_SIZE: the controller memory page size the driver uses (CC.MPS = 0). */
export const NVME_CTRL_PAGE_SIZE = 4096;
export const NVME_SQE_BYTES = 64;
export const NVME_CQE_BYTES = 16;
/** struct nvme_sgl_desc. */
export const NVME_SGL_DESC_BYTES = 16;
/** PRP entries in one list page; the last one chains to the next list page. */
export const NVME_PRPS_PER_PAGE = NVME_CTRL_PAGE_SIZE / 8;
/** Doorbells start at BAR0 + 0x1000 with a stride of 4 bytes (CAP.DSTRD = 0). */
export const NVME_DOORBELL_BASE = 0x1000;

export const NvmeOpcode = { WRITE: 0x01, READ: 0x02 } as const;
export type NvmeOpcode = (typeof NvmeOpcode)[keyof typeof NvmeOpcode];

/** CDW0.PSDT: how DPTR is to be read. */
export const NvmePsdt = { PRP: 0, SGL_MPTR_CONTIG: 1 } as const;

/** SGL descriptor types (upper nibble of byte 15). */
export const NvmeSglType = { DATA_BLOCK: 0x0, SEGMENT: 0x2, LAST_SEGMENT: 0x3 } as const;

/** Status codes, generic command status (SCT 0), with DNR set where a retry cannot help. */
export const NvmeStatus = {
  SUCCESS: 0x0,
  INVALID_OPCODE: 0x1,
  INVALID_FIELD: 0x2,
  DATA_XFER_ERROR: 0x4,
  SGL_INVALID_DATA: 0xf,
  SGL_INVALID_TYPE: 0x11,
  INVALID_PRP_OFFSET: 0x13,
  LBA_RANGE: 0x80,
  DNR: 0x4000,
} as const;

export function sqTailDoorbell(qid: number): number {
  return NVME_DOORBELL_BASE + 2 * qid * 4;
}

export function cqHeadDoorbell(qid: number): number {
  return NVME_DOORBELL_BASE + (2 * qid + 1) * 4;
}

/** Writes a 64-bit little-endian value (any safe integer) into a DataView. */
export function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value % 4294967296, true);
  view.setUint32(at + 4, Math.floor(value / 4294967296), true);
}

export function getU64(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 4294967296;
}

/** A read/write command: the fields the I/O path sets (struct nvme_rw_command). */
export interface NvmeRwCommand {
  opcode: NvmeOpcode;
  cid: number;
  psdt: number;
  nsid: number;
  /** PRP1/PRP2, or SGL1 as address / length / type byte when psdt is SGL. */
  prp1: number;
  prp2: number;
  sglAddr: number;
  sglLen: number;
  sglType: number;
  slba: number;
  /** NLB: blocks - 1. */
  nlb: number;
}

export function encodeSqe(view: DataView, at: number, c: NvmeRwCommand): void {
  for (let i = 0; i < NVME_SQE_BYTES; i += 4) view.setUint32(at + i, 0, true);
  view.setUint32(at, c.opcode | (c.psdt << 14) | (c.cid << 16), true);
  view.setUint32(at + 4, c.nsid, true);
  if (c.psdt === NvmePsdt.PRP) {
    setU64(view, at + 24, c.prp1);
    setU64(view, at + 32, c.prp2);
  } else {
    setU64(view, at + 24, c.sglAddr);
    view.setUint32(at + 32, c.sglLen, true);
    view.setUint8(at + 39, c.sglType << 4);
  }
  setU64(view, at + 40, c.slba);
  view.setUint32(at + 48, c.nlb, true);
}

export function decodeSqe(view: DataView, at: number, out: NvmeRwCommand): void {
  const dw0 = view.getUint32(at, true);
  out.opcode = (dw0 & 0xff) as NvmeOpcode;
  out.psdt = (dw0 >>> 14) & 3;
  out.cid = dw0 >>> 16;
  out.nsid = view.getUint32(at + 4, true);
  out.prp1 = getU64(view, at + 24);
  out.prp2 = getU64(view, at + 32);
  out.sglAddr = out.prp1;
  out.sglLen = view.getUint32(at + 32, true);
  out.sglType = view.getUint8(at + 39) >>> 4;
  out.slba = getU64(view, at + 40);
  out.nlb = view.getUint32(at + 48, true) & 0xffff;
}

export function emptyCommand(): NvmeRwCommand {
  return { opcode: NvmeOpcode.READ, cid: 0, psdt: 0, nsid: 0, prp1: 0, prp2: 0, sglAddr: 0, sglLen: 0, sglType: 0, slba: 0, nlb: 0 };
}
