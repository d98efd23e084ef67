import type { TimerHandle, VirtualClock } from "@dmasim/trace";
import { IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE } from "./constants.js";

/** Module-local: imported bindings can cost a getter call per use under some loaders (the test runner's). */
const MAG_SIZE = IOVA_MAG_SIZE;

/** struct iova_magazine: up to IOVA_MAG_SIZE cached PFNs of one order. */
export class IovaMagazine {
  size = 0;
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);

  get full(): boolean {
    return this.size === MAG_SIZE;
  }

  get empty(): boolean {
    return this.size === 0;
  }

  /**
   * iova_magazine_pop: the last PFN not above `limitPfn`, searching from the top of the magazine and
   * filling the hole with the last entry; 0 when none suits (the caller falls back to the tree).
   */
  pop(limitPfn: number): number {
    const pfns = this.pfns;
    let i = this.size - 1;
    while ((pfns[i] ?? 0) > limitPfn) {
      if (i === 0) return 0;
      i--;
    }
    const pfn = pfns[i] ?? 0;
    this.size--;
    pfns[i] = pfns[this.size] ?? 0;
    return pfn;
  }

  push(pfn: number): void {
    this.pfns[this.size++] = pfn;
  }
}

/**
 * struct iova_rcache for one order: per CPU a loaded and a previous magazine, and a depot (LIFO) of
 * full magazines shared by all CPUs. The depot gives one magazine back to the tree every
 * IOVA_DEPOT_DELAY while it holds more magazines than there are CPUs (iova_depot_work_func).
 */
export class IovaRcache {
  readonly loaded: IovaMagazine[] = [];
  readonly prev: IovaMagazine[] = [];
  readonly depot: IovaMagazine[] = [];
  #work: TimerHandle | undefined;

  constructor(
    private readonly cpus: number,
    private readonly clock: VirtualClock,
    /** Returns every PFN of a magazine to the tree (iova_magazine_free_pfns). */
    private readonly freePfns: (mag: IovaMagazine) => void,
  ) {
    for (let c = 0; c < cpus; c++) {
      this.loaded.push(new IovaMagazine());
      this.prev.push(new IovaMagazine());
    }
  }

  /** __iova_rcache_insert: always succeeds here (a new magazine never fails to allocate). */
  insert(pfn: number, cpu: number): void {
    let loaded = this.loaded[cpu];
    const prev = this.prev[cpu];
    if (loaded === undefined || prev === undefined) return;
    if (loaded.full) {
      if (!prev.full) {
        this.prev[cpu] = loaded;
        this.loaded[cpu] = prev;
        loaded = prev;
      } else {
        this.depot.push(loaded);
        this.#scheduleDepotWork();
        loaded = new IovaMagazine();
        this.loaded[cpu] = loaded;
      }
    }
    loaded.push(pfn);
  }

  /** __iova_rcache_get: a cached PFN not above `limitPfn`, or 0. */
  get(limitPfn: number, cpu: number): number {
    let loaded = this.loaded[cpu];
    const prev = this.prev[cpu];
    if (loaded === undefined || prev === undefined) return 0;
    if (loaded.empty) {
      if (!prev.empty) {
        this.prev[cpu] = loaded;
        this.loaded[cpu] = prev;
        loaded = prev;
      } else {
        const mag = this.depot.pop();
        if (mag === undefined) return 0;
        loaded = mag;
        this.loaded[cpu] = mag;
      }
    }
    return loaded.pop(limitPfn);
  }

  /** free_cpu_cached_iovas for this order. */
  freeCpu(cpu: number): void {
    const l = this.loaded[cpu];
    const p = this.prev[cpu];
    if (l !== undefined) this.freePfns(l);
    if (p !== undefined) this.freePfns(p);
  }

  /** free_global_cached_iovas for this order. */
  freeDepot(): void {
    for (let mag = this.depot.pop(); mag !== undefined; mag = this.depot.pop()) this.freePfns(mag);
  }

  /** PFNs cached on `cpu` (loaded + previous). */
  cpuCount(cpu: number): number {
    return (this.loaded[cpu]?.size ?? 0) + (this.prev[cpu]?.size ?? 0);
  }

  /** Deadline of the pending depot trim, or undefined. */
  get depotWorkDeadline(): number | undefined {
    return this.#work?.deadline;
  }

  cancelWork(): void {
    if (this.#work !== undefined) this.clock.cancel(this.#work);
    this.#work = undefined;
  }

  /** schedule_delayed_work: a no-op while the work is already pending. */
  #scheduleDepotWork(): void {
    if (this.#work !== undefined) return;
    this.#work = this.clock.setTimer(IOVA_DEPOT_DELAY_NS, () => {
      this.#work = undefined;
      if (this.depot.length > this.cpus) {
        const mag = this.depot.pop();
        if (mag !== undefined) this.freePfns(mag);
        this.#scheduleDepotWork();
      }
    });
  }
}
