import type { DmaIovaState } from "@dmasim/dma";
import type { Mm } from "@dmasim/hmm-odp";
import type { IbUmemDmabuf } from "./umem-dmabuf.js";
import type { IbUmemOdp } from "./umem-odp.js";

/** struct ib_pd: MRs and QPs of one protection domain only reach each other. */
export class IbPd {
  /** Made by `Mlx5Nic.allocPd` (`.` exports the class as a type only). */
  constructor(
    /** The NIC that allocated the PD (typed loosely to keep this file free of the NIC's imports). */
    readonly nic: object,
    /** The PD's number on its NIC, from 1. */
    readonly handle: number,
  ) {}
  /** True once the PD is deallocated: `regMr` refuses it (RdmaInputError). */
  deallocated = false;
}

/** struct ib_umem of a pinned (non-ODP) MR: pinned frames and how they were DMA-mapped. */
export interface IbUmemPinned {
  /** The process whose pages are pinned. */
  readonly mm: Mm;
  /** The pinned frame of each page (pin_user_pages with FOLL_LONGTERM). */
  readonly pfns: Uint32Array;
  /** One IOVA for the whole umem (the two-step path), or undefined: one dma_map_phys per page. */
  readonly state: DmaIovaState | undefined;
}

/**
 * What the NIC asks of a mixed MR's umem (regMixedMr): the page fault of [va, va + bcnt) (pages mapped or
 * -errno), a note of each successful device access at `va` (its time-to-first-DMA records), the release.
 */
export interface IbUmemMixedHooks {
  /** The NIC's page-fault event for [va, va + bcnt) of the MR: pages mapped, or -errno. */
  pageFault(va: number, bcnt: number): number;
  /** A device access at MR address `va` completed. */
  deviceAccess(va: number): void;
  /** Deregistration: unmap every segment, drop notifiers and attachments, free the IOVA. */
  release(): void;
}

/**
 * struct mlx5_ib_mr: a memory key (lkey = rkey = the mkey) over [addr, addr + length) of a process, and
 * its MTT: one entry per 4 KiB page, `dma_addr | MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE`, 0 = no access. The
 * NIC reads the MTT on every access and sends the translated address through the fabric.
 */
export class IbMr {
  /** The protection domain the MR belongs to. */
  readonly pd: IbPd;
  /** Local key: the mkey, named in local scatter-gather elements. */
  readonly lkey: number;
  /** Remote key: the same mkey, named by a peer's RDMA and atomic requests. */
  readonly rkey: number;
  /** The MR's start (ibv_reg_mr's addr and iova: the user virtual address). */
  readonly addr: number;
  /** Bytes the MR covers from `addr`. */
  readonly length: number;
  /** IB_ACCESS_* bits it was registered with. */
  readonly access: number;
  /** The process whose memory the MR maps; undefined for a dmabuf MR (its pages are the buffer's). */
  readonly mm: Mm | undefined;
  /** An ODP MR's umem (a child's for an implicit child); undefined for pinned and implicit parents. */
  readonly odp: IbUmemOdp | undefined;
  /** A pinned MR's umem; undefined for ODP MRs. */
  readonly pinned: IbUmemPinned | undefined;
  /** A dmabuf MR's umem (ibv_reg_dmabuf_mr); undefined for user-memory MRs. */
  readonly dmabuf: IbUmemDmabuf | undefined;
  /** An implicit ODP MR (a KSM over 1 GiB children, each made on first fault). */
  readonly implicit: boolean;
  /** The implicit parent of a child. */
  readonly parent: IbMr | undefined;
  /** The MTT (empty for an implicit parent): Float64 entries, page-aligned DMA address plus permission bits. */
  readonly mtt: Float64Array;
  /** The user address of MTT entry 0. */
  readonly mttStart: number;
  /** Implicit parent: child index (address / 1 GiB) → child MR. */
  readonly children = new Map<number, IbMr>();
  /** mkey enabled (UMR ENABLE); accesses to a disabled mkey fail. */
  enabled = false;
  /** Set by deregMr: the mkey is gone and accesses through it fail. */
  deregistered = false;
  /** ★ dmasim's mixed MR (segments of user VA and dma-bufs): its umem takes the faults and the release. */
  mixed: IbUmemMixedHooks | undefined = undefined;

  /** Made by the NIC's MR registrations (`regMr`, `regDmabufMr`, `regMixedMr`); `.` exports the class as a type only. */
  constructor(init: { pd: IbPd; key: number; addr: number; length: number; access: number; mm: Mm | undefined; odp?: IbUmemOdp; pinned?: IbUmemPinned; dmabuf?: IbUmemDmabuf; implicit?: boolean; parent?: IbMr; mttStart: number; mttEntries: number }) {
    this.pd = init.pd;
    this.lkey = init.key;
    this.rkey = init.key;
    this.addr = init.addr;
    this.length = init.length;
    this.access = init.access;
    this.mm = init.mm;
    this.odp = init.odp;
    this.pinned = init.pinned;
    this.dmabuf = init.dmabuf;
    this.implicit = init.implicit ?? false;
    this.parent = init.parent;
    this.mttStart = init.mttStart;
    this.mtt = new Float64Array(init.mttEntries);
  }

  /** Host bytes of the MTT (8 per page). */
  get mttBytes(): number {
    let n = this.mtt.byteLength;
    for (const c of this.children.values()) n += c.mtt.byteLength;
    return n;
  }
}
