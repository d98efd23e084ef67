import { DmaBuf, DmaBufErrno } from "@dmasim/dmabuf";
import { PAGE_SIZE } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_WRITE,
  IB_ACCESS_SUPPORTED,
  MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE,
  MLX5_IB_UPD_XLT_ENABLE,
  MLX5_IB_UPD_XLT_ZAP,
  MLX5_PF_FLAGS_ENABLE,
  RdmaErrno,
} from "./constants.js";
import { RdmaCounter } from "./counters.js";
import { RdmaDmabufCounter } from "./dmabuf-counters.js";
import { RdmaInputError } from "./errors.js";
import { IbMr, IbPd } from "./mr.js";
import type { Mlx5Nic } from "./nic.js";
import {
  IbUmemDmabuf,
  ibUmemDmabufDmaBlocks,
  ibUmemDmabufGet,
  ibUmemDmabufGetPinned,
  ibUmemDmabufGetPinnedRevocableAndLock,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufSetRevokeLocked,
  ibUmemDmabufUnmapPages,
} from "./umem-dmabuf.js";
import type { UmemDmabufKind, UmemDmabufMapping } from "./umem-dmabuf.js";
import { kAllocMkey, kInstallMkey, kRunScratch } from "./internal.js";

/** What `nic.regDmabufMr` makes: the kind of MR and the mapping type its umem uses. */
export interface RegDmabufMrOptions {
  /**
   * "dynamic" (default; mlx5's dmabuf MR on an ODP-capable device: the invalidate callback zaps the MTT
   * and unmaps, the next access faults and maps again), "pinned" (ib_umem_dmabuf_get_pinned: the buffer
   * never moves and cannot be revoked), or "revocable" (pinned, and an invalidation revokes the MR for
   * good: later accesses complete with an access error).
   */
  readonly kind?: UmemDmabufKind;
  /** "sgt" (default: the exporter's sg_table) or "phys" (the physical-range list the umem maps itself). */
  readonly mapping?: UmemDmabufMapping;
}

const KINDS: readonly string[] = ["dynamic", "pinned", "revocable"];
const MAPPINGS: readonly string[] = ["sgt", "phys"];

/**
 * mlx5r_umr_update_mr_pas for a dmabuf MR (reservation lock held): with MLX5_IB_UPD_XLT_ZAP every MTT
 * entry becomes 0; otherwise each entry gets the DMA address of its page from the umem's mapping plus
 * the permission bits. One UMR, posted and waited for. ENABLE enables the mkey. 0, or -EINVAL when the
 * mapping has no usable page size (a page not whole in one DMA segment); the MTT is then unchanged.
 */
export function mlx5rUmrUpdateMrPas(nic: Mlx5Nic, mr: IbMr, xltFlags: number): number {
  const umem = mr.dmabuf;
  if (umem === undefined) throw new RdmaInputError("mlx5r_umr_update_mr_pas", "mr", mr.lkey, "a dmabuf MR");
  const mtt = mr.mtt;
  const n = mtt.length;
  const counters = nic.counters;
  if ((xltFlags & MLX5_IB_UPD_XLT_ZAP) !== 0) {
    let live = 0;
    for (let i = 0; i < n; i++) if ((mtt[i] ?? 0) !== 0) live++;
    mtt.fill(0);
    counters.add(RdmaDmabufCounter.DmabufMrMttZapped, live);
  } else {
    const out = nic[kRunScratch](n);
    const err = ibUmemDmabufDmaBlocks(umem, out);
    if (err < 0) return err;
    const perm = MLX5_IB_MTT_READ + (umem.writable ? MLX5_IB_MTT_WRITE : 0);
    for (let i = 0; i < n; i++) mtt[i] = (out[i] ?? 0) + perm;
  }
  counters.add(RdmaCounter.UmrPosts);
  counters.add(RdmaCounter.MttWrites, n);
  const c = nic.costs;
  nic.clock.advance(c.umrPostNs + n * c.umrPerEntryNs + c.umrCompletionNs);
  if ((xltFlags & MLX5_IB_UPD_XLT_ENABLE) !== 0) mr.enabled = true;
  return 0;
}

/**
 * pagefault_dmabuf_mr: under the buffer's reservation lock, ib_umem_dmabuf_map_pages (maps the whole
 * window when it is not mapped, then waits for the KERNEL fences: the exporter's copy must be done
 * before the NIC may touch the pages) and the MTT of the WHOLE MR rewritten by one UMR — the fault maps
 * the MR, not just the page that faulted. Returns the pages mapped or -errno (-EINVAL once revoked, the
 * exporter's map error such as -ENODEV for a revoked VFIO buffer, -ETIMEDOUT); on error the MTT stays
 * zapped.
 */
export function pagefaultDmabufMr(nic: Mlx5Nic, mr: IbMr, flags: number): number {
  const umem = mr.dmabuf;
  if (umem === undefined) throw new RdmaInputError("pagefault_dmabuf_mr", "mr", mr.lkey, "a dmabuf MR");
  const xlt = (flags & MLX5_PF_FLAGS_ENABLE) !== 0 ? MLX5_IB_UPD_XLT_ENABLE : 0;
  const resv = umem.dmabuf.resv;
  const l = resv.lock();
  if (l !== 0) return l;
  let err: number;
  try {
    const before = umem.maps;
    err = ibUmemDmabufMapPages(umem);
    if (err === 0) {
      if (umem.maps !== before) nic.counters.add(RdmaDmabufCounter.DmabufMrMaps);
      err = mlx5rUmrUpdateMrPas(nic, mr, xlt);
      if (err < 0) ibUmemDmabufUnmapPages(umem);
    }
  } finally {
    resv.unlock();
  }
  if (err < 0) {
    nic.counters.add(RdmaDmabufCounter.DmabufMrFaultErrors);
    return err;
  }
  return umem.npages;
}

/** mlx5_ib_init_dmabuf_mr: the registration maps the whole MR through the fault path, with ENABLE. */
export function mlx5IbInitDmabufMr(nic: Mlx5Nic, mr: IbMr): number {
  const ret = pagefaultDmabufMr(nic, mr, MLX5_PF_FLAGS_ENABLE);
  return ret >= 0 ? 0 : ret;
}

/**
 * mlx5_ib_dmabuf_invalidate_cb (move_notify / invalidate_mappings), with the reservation lock held: if
 * the umem is mapped and still has its MR, zap the MTT with one UMR (the NIC cannot reach the old pages
 * once it returns), then unmap. The next access raises a page fault.
 */
export function mlx5IbDmabufInvalidateCb(nic: Mlx5Nic, umem: IbUmemDmabuf): void {
  umem.dmabuf.resv.assertHeld("mlx5_ib_dmabuf_invalidate_cb", umem.dev.bdf);
  const mr = umem.private;
  if (!umem.mapped || !(mr instanceof IbMr)) return;
  nic.counters.add(RdmaDmabufCounter.DmabufMrInvalidations);
  mlx5rUmrUpdateMrPas(nic, mr, MLX5_IB_UPD_XLT_ZAP);
  ibUmemDmabufUnmapPages(umem);
}

/**
 * The revoke callback of a pinned-revocable MR (the irdma pattern of the 2026 interface, on the mlx5
 * model): the mkey is disabled in hardware and its MTT zapped, keeping the key until ibv_dereg_mr, so
 * the NIC stops before the umem unmaps and unpins. Every later access fails its mkey check.
 */
function dmabufMrRevoke(nic: Mlx5Nic, mr: IbMr): void {
  nic.counters.add(RdmaDmabufCounter.DmabufMrRevokes);
  mr.enabled = false;
  mlx5rUmrUpdateMrPas(nic, mr, MLX5_IB_UPD_XLT_ZAP);
}

/**
 * ibv_reg_dmabuf_mr → ib_uverbs_reg_dmabuf_mr → mlx5_ib_reg_user_mr_dmabuf: an MR over
 * [iova, iova + length) whose bytes are [offset, offset + length) of `buf`. Returns the MR or -errno:
 * -EINVAL (REMOTE_WRITE/ATOMIC without LOCAL_WRITE, as ib_check_mr_access; HUGETLB; offset and iova at
 * different offsets in their page, as uverbs checks; a window past the buffer; a revoked MR's map),
 * -EOPNOTSUPP (ON_DEMAND or a dynamic MR on a NIC without ODP: mlx5 needs ODP for dynamic dmabuf MRs; an
 * exporter that refuses the importer, e.g. VFIO and a non-revocable pinned one), -EBUSY, -ENODEV, -ENOMEM
 * (the exporter's pin or map). A refusal leaves no attachment, mapping, pin or reference behind.
 * Throws RdmaInputError for bad arguments.
 */
export function mlx5IbRegUserMrDmabuf(nic: Mlx5Nic, pd: IbPd, buf: DmaBuf, offset: number, length: number, iova: number, access: number, options: RegDmabufMrOptions = {}): IbMr | number {
  const fn = "ib_reg_user_mr_dmabuf";
  if (!(pd instanceof IbPd) || pd.nic !== nic || pd.deallocated) throw new RdmaInputError(fn, "pd", pd, `a live protection domain of ${nic.bdf}`);
  if (!(buf instanceof DmaBuf) || buf.released) throw new RdmaInputError(fn, "buf", buf, "a live DmaBuf (an open dma-buf fd)");
  if (buf.system.kernel !== nic.kernel) throw new RdmaInputError(fn, "buf", buf.expName, `a dma-buf of the kernel ${nic.bdf} belongs to`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RdmaInputError(fn, "offset", offset, "a byte offset into the buffer: a safe integer >= 0");
  if (!Number.isSafeInteger(length) || length <= 0) throw new RdmaInputError(fn, "length", length, "a positive byte count");
  if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(iova + length)) throw new RdmaInputError(fn, "iova", iova, "an MR address: a safe integer >= 0 with iova + length a safe integer");
  if (!Number.isInteger(access) || (access & ~IB_ACCESS_SUPPORTED) !== 0) throw new RdmaInputError(fn, "access", access, `IB_ACCESS_* bits (unknown: ${hex((access | 0) & ~IB_ACCESS_SUPPORTED)})`);
  if ((options as unknown) === null || typeof (options as unknown) !== "object") throw new RdmaInputError(fn, "options", options, "{ kind?, mapping? }");
  const kind = options.kind ?? "dynamic";
  const mapping = options.mapping ?? "sgt";
  if (!KINDS.includes(kind)) throw new RdmaInputError(fn, "options.kind", kind, '"dynamic", "pinned" or "revocable"');
  if (!MAPPINGS.includes(mapping)) throw new RdmaInputError(fn, "options.mapping", mapping, '"sgt" or "phys"');
  // ib_check_mr_access.
  if ((access & (IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC)) !== 0 && (access & IB_ACCESS_LOCAL_WRITE) === 0) return -RdmaErrno.EINVAL;
  if ((access & IB_ACCESS_ON_DEMAND) !== 0 && !nic.odpCapable) return -RdmaErrno.EOPNOTSUPP;
  if ((access & IB_ACCESS_HUGETLB) !== 0) return -RdmaErrno.EINVAL;
  // The uverbs handler: the MR's address and the buffer offset must sit at the same place in their page.
  if (offset % PAGE_SIZE !== iova % PAGE_SIZE) return -RdmaErrno.EINVAL;
  // mlx5: a dynamic dmabuf MR is updated by UMR from the fault path, which needs ODP.
  if (kind === "dynamic" && !nic.odpCapable) return -RdmaErrno.EOPNOTSUPP;
  const um =
    kind === "dynamic"
      ? ibUmemDmabufGet(nic.dev, buf, offset, length, access, (u) => {
          mlx5IbDmabufInvalidateCb(nic, u);
        }, { mapping })
      : kind === "pinned"
        ? ibUmemDmabufGetPinned(nic.dev, buf, offset, length, access, { mapping })
        : ibUmemDmabufGetPinnedRevocableAndLock(nic.dev, buf, offset, length, access, { mapping });
  if (typeof um === "number") return um;
  const umem = um;
  const key = nic[kAllocMkey]();
  const mttStart = Math.floor(iova / PAGE_SIZE) * PAGE_SIZE;
  const mr = new IbMr({ pd, key, addr: iova, length, access, mm: undefined, dmabuf: umem, mttStart, mttEntries: umem.npages });
  umem.private = mr;
  let err: number;
  if (kind === "dynamic") {
    err = mlx5IbInitDmabufMr(nic, mr);
  } else {
    // The pinned variants are mapped already (the revocable one returned with the lock held).
    const resv = buf.resv;
    const locked = kind === "pinned" ? resv.lock() : 0;
    if (locked !== 0) {
      err = locked;
    } else {
      err = mlx5rUmrUpdateMrPas(nic, mr, MLX5_IB_UPD_XLT_ENABLE);
      if (err === 0) nic.counters.add(RdmaDmabufCounter.DmabufMrMaps);
      if (err === 0 && kind === "revocable") ibUmemDmabufSetRevokeLocked(
          umem,
          () => {
            dmabufMrRevoke(nic, mr);
          },
          mr,
        );
      resv.unlock();
    }
  }
  if (err < 0) {
    umem.private = undefined;
    mr.mtt.fill(0);
    mr.enabled = false;
    ibUmemDmabufRelease(umem);
    return err;
  }
  nic[kInstallMkey](mr);
  return mr;
}

/**
 * The dmabuf part of ibv_dereg_mr (the mkey is disabled already): mlx5_revoke_mr clears the umem's MR
 * under the reservation lock, so no invalidation reaches this MR any more, then ib_umem_dmabuf_release
 * (unmap, unpin, detach, put). -EDEADLK when the lock is held (the model's deadlock).
 */
export function mlx5DmabufMrRelease(mr: IbMr): number {
  const umem = mr.dmabuf;
  if (umem === undefined || umem.released) return 0;
  const resv = umem.dmabuf.resv;
  const l = resv.lock();
  if (l !== 0) return l;
  umem.private = undefined;
  resv.unlock();
  mr.mtt.fill(0);
  ibUmemDmabufRelease(umem);
  return 0;
}

/** Package-private (not in index.ts): ibv_dereg_mr of a dmabuf MR cannot run while its buffer's reservation lock is held: -EDEADLK. */
export function dmabufMrDeregBusy(mr: IbMr): number {
  const umem = mr.dmabuf;
  return umem !== undefined && !umem.released && umem.dmabuf.resv.isLocked ? -DmaBufErrno.EDEADLK : 0;
}
