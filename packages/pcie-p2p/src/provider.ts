import type { PhysAddr, PhysicalMemory } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import { PciError, PciInputError } from "./errors.js";
import { at, must } from "./util.js";
import type { BusAddr, Endpoint, P2pdmaProvider } from "./types.js";
import { unsafePhysAddr } from "@dmasim/memory";

const PAGE = 4096;

function invalid(what: string, value: unknown, expected: string): PciInputError {
  return new PciInputError("addP2pdmaProvider", what, value, expected);
}

/**
 * The P2P providers of one platform (pci_p2pdma_add_resource), and per provider the cache of map types
 * by client that the kernel keeps in p2pdma->map_types.
 */
export class ProviderRegistry {
  readonly #memory: PhysicalMemory;
  readonly #endpointCount: number;
  readonly #providers: P2pdmaProvider[] = [];
  readonly #mapTypes = new Map<number, Int8Array>();

  constructor(memory: PhysicalMemory, endpointCount: number) {
    this.#memory = memory;
    this.#endpointCount = endpointCount;
  }

  /**
   * Registers [offset, offset + size) of a BAR as P2PDMA memory: ZONE_DEVICE pages owned by the new
   * provider's id. Like the kernel, size 0 means "to the end of the BAR"; the range must be whole pages
   * (memremap_pages works in pages). Throws PciError EINVAL (no such BAR, bad range) or EEXIST (overlaps
   * an existing provider), leaving everything as it was.
   */
  add(ep: Endpoint, barIndex: number, options: { offset?: number; size?: number }): P2pdmaProvider {
    const bar = ep.bars.find((b) => b.index === barIndex);
    if (bar === undefined) {
      throw invalid("bar", barIndex, `a memory BAR of ${ep.bdf} (${ep.bars.map((b) => b.index).join(", ") || "it has none"})`);
    }
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= bar.size || offset % PAGE !== 0) {
      throw invalid("offset", offset, `a multiple of 4096 below the BAR size (${bar.size})`);
    }
    let size = options.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0 || size % PAGE !== 0) throw invalid("size", size, "a multiple of 4096 (0: to the end of the BAR)");
    if (size === 0) size = bar.size - offset;
    if (offset + size > bar.size) throw invalid("size", size, `at most ${bar.size - offset} (BAR ${barIndex} is ${bar.size} bytes, offset ${offset})`);
    const phys = bar.phys + offset;
    const clash = this.#providers.find((p) => p.phys < phys + size && phys < p.phys + p.size);
    if (clash !== undefined) {
      throw new PciError("EEXIST", `addP2pdmaProvider: [${hex(phys)}, ${hex(phys + size)}) of ${ep.bdf} BAR${barIndex} overlaps provider ${clash.id}`);
    }
    const id = this.#providers.length + 1;
    this.#memory.pages.addZoneDevice(unsafePhysAddr(phys), size, { owner: id, kind: "p2pdma" });
    const busOffset = bar.bus - bar.phys;
    const provider: P2pdmaProvider = Object.freeze({
      id,
      owner: ep.bdf,
      busOffset,
      phys: phys as PhysAddr,
      bus: (phys + busOffset) as BusAddr,
      size,
      bar: barIndex,
    });
    this.#providers.push(provider);
    this.#mapTypes.set(id, new Int8Array(this.#endpointCount));
    return provider;
  }

  byId(id: number): P2pdmaProvider | undefined {
    return Number.isSafeInteger(id) && id >= 1 ? this.#providers[id - 1] : undefined;
  }

  list(): readonly P2pdmaProvider[] {
    return this.#providers.slice();
  }

  /** The registered provider object, or PciError when `provider` is not one of this platform's. */
  check(provider: P2pdmaProvider, op: string): P2pdmaProvider {
    const p = typeof provider === "object" ? this.byId(provider.id) : undefined;
    if (p === undefined || p !== provider) {
      throw new PciInputError(op, "provider", provider, "a provider returned by this platform's addP2pdmaProvider");
    }
    return p;
  }

  cachedType(provider: P2pdmaProvider, client: number, op: string): number {
    return at(this.#types(this.check(provider, op).id), client);
  }

  cacheType(provider: P2pdmaProvider, client: number, type: number): void {
    this.#types(provider.id)[client] = type;
  }

  #types(id: number): Int8Array {
    return must(this.#mapTypes.get(id), `map-type cache of provider ${id}`);
  }
}
