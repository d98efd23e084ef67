import { TraceInputError } from "./errors.js";
import { Xorshift32 } from "./random.js";

/** The attributes of one fault-injection site, as lib/fault-inject.c's debugfs files name them. */
export interface FaultAttrOptions {
  /** Whole percent of eligible calls that fail, 0 to 100 (debugfs `probability`). Default 0: never. */
  readonly probability?: number | undefined;
  /** Only every `interval`-th eligible call may fail (`interval`); 1 = every call. Default 1. */
  readonly interval?: number | undefined;
  /** Failures left before the site stops failing; -1 = no limit (`times`). Default -1. */
  readonly times?: number | undefined;
  /** Bytes of requests let through before the first failure (`space`). Default 0. */
  readonly space?: number | undefined;
}

/** Injection options for a whole platform: one seed, and attributes per site name (e.g. `fail_iova`). */
export interface FaultInjectOptions {
  /** Seed of the platform's shared generator (default 1): the same seed and calls inject the same failures. */
  readonly seed?: number | undefined;
  /** Attributes per site name (`fail_iova`, `fail_swiotlb`…); sites not named stay unarmed. */
  readonly sites?: Readonly<Partial<Record<string, FaultAttrOptions>>> | undefined;
}

/**
 * What each attribute accepts (the kernel's fail_* debugfs files): a test and its wording. The one
 * source of these rules: `configure` checks with it here, and the DMA kernel's option schema builds its
 * fields from it.
 */
export const FAULT_ATTR_RULES: Readonly<Record<keyof FaultAttrOptions, { readonly ok: (v: number) => boolean; readonly expected: string }>> = Object.freeze({
  probability: { ok: (v: number) => Number.isInteger(v) && v >= 0 && v <= 100, expected: "a whole percentage from 0 to 100" },
  interval: { ok: (v: number) => Number.isSafeInteger(v) && v >= 1, expected: "an integer >= 1" },
  times: { ok: (v: number) => Number.isSafeInteger(v) && v >= -1, expected: "an integer >= 0, or -1 for no limit" },
  space: { ok: (v: number) => Number.isSafeInteger(v) && v >= 0, expected: "a number of bytes >= 0" },
});

function checkAttr(name: string, options: FaultAttrOptions): void {
  const o = options as Record<string, unknown>;
  const rules = FAULT_ATTR_RULES as Readonly<Record<string, { readonly ok: (v: number) => boolean; readonly expected: string } | undefined>>;
  for (const key of Object.keys(o)) {
    const rule = rules[key];
    if (rule === undefined) throw new TraceInputError(`${name}.${key}`, o[key], "one of probability, interval, times, space");
    const v = o[key];
    if (v !== undefined && !(typeof v === "number" && rule.ok(v))) throw new TraceInputError(`${name}.${key}`, v, rule.expected);
  }
}

/**
 * struct fault_attr (lib/fault-inject.c): one site that a test can make fail. `shouldFail(size)` is
 * `should_fail()`: it fails when `times` is not used up, `space` is used up, the call is the
 * `interval`-th, and a draw from the platform's seeded generator falls under `probability` — in that
 * order, as the kernel tests them. Sites test `armed` first, so an unarmed site costs one field read.
 */
export class FaultAttr {
  /** The site's name, as the package that fails declares it (`fail_iova`). */
  readonly name: string;
  readonly #rng: Xorshift32;
  #probability = 0;
  #interval = 1;
  #times = -1;
  #space = 0;
  /** Calls counted for `interval` (the kernel's attr->count). */
  #count = 0;
  #injected = 0;
  /** probability > 0 and times not used up: the one test sites make before calling shouldFail. */
  armed = false;

  /** Made by `FaultInjection.attr(name)` (`.` exports the class as a type only). */
  constructor(name: string, rng: Xorshift32) {
    this.name = name;
    this.#rng = rng;
  }

  /** Sets the given attributes (the others keep their values) and restarts the interval count. */
  configure(options: FaultAttrOptions): this {
    checkAttr(this.name, options);
    if (options.probability !== undefined) this.#probability = options.probability;
    if (options.interval !== undefined) this.#interval = options.interval;
    if (options.times !== undefined) this.#times = options.times;
    if (options.space !== undefined) this.#space = options.space;
    this.#count = 0;
    this.#update();
    return this;
  }

  /** Stops failing: probability 0 (the other attributes are kept). */
  disarm(): void {
    this.#probability = 0;
    this.#update();
  }

  /** Whole percent of eligible calls that fail, 0 to 100 (debugfs `probability`). */
  get probability(): number {
    return this.#probability;
  }

  /** Only every `interval`-th eligible call may fail; 1 means every call (debugfs `interval`). */
  get interval(): number {
    return this.#interval;
  }

  /** Failures left before the site stops failing; -1 for no limit (debugfs `times`). */
  get times(): number {
    return this.#times;
  }

  /** Bytes of requests still let through before the first failure (debugfs `space`); counts down. */
  get space(): number {
    return this.#space;
  }

  /** Failures this site has injected since the platform was created. */
  get injected(): number {
    return this.#injected;
  }

  /** should_fail(attr, size): true when this call is to fail. */
  shouldFail(size: number): boolean {
    if (!this.armed) return false;
    if (this.#space > size) {
      this.#space -= size;
      return false;
    }
    if (this.#interval > 1) {
      this.#count++;
      if (this.#count % this.#interval !== 0) return false;
    }
    if (this.#probability <= (this.#rng.below(100))) return false;
    if (this.#times !== -1) {
      this.#times--;
      this.#update();
    }
    this.#injected++;
    return true;
  }

  #update(): void {
    this.armed = this.#probability > 0 && this.#times !== 0;
  }
}

/**
 * The fault-injection sites of one platform (the kernel's /sys/kernel/debug/fail_* directories), by
 * name, sharing one seeded generator so a run replays exactly. The packages that fail declare their
 * site names; this only keeps the attributes. A site asked for before it is configured starts unarmed.
 */
export class FaultInjection {
  readonly #rng: Xorshift32;
  readonly #attrs = new Map<string, FaultAttr>();

  constructor(seed = 1) {
    this.#rng = new Xorshift32(seed);
  }

  /** Restarts the shared generator (the same seed and calls give the same failures). */
  seed(seed: number): void {
    if (!Number.isSafeInteger(seed)) throw new TraceInputError("seed", seed, "a safe integer");
    this.#rng.reseed(seed);
  }

  /** The site named `name`, created unarmed on first use. */
  attr(name: string): FaultAttr {
    let a = this.#attrs.get(name);
    if (a === undefined) {
      if (typeof name !== "string" || name === "") throw new TraceInputError("name", name, "a fault-injection site name");
      a = new FaultAttr(name, this.#rng);
      this.#attrs.set(name, a);
    }
    return a;
  }

  /** Applies `options`: the seed, then each named site's attributes. */
  configure(options: FaultInjectOptions): void {
    if (options.seed !== undefined) this.seed(options.seed);
    for (const [name, attr] of Object.entries(options.sites ?? {})) if (attr !== undefined) this.attr(name).configure(attr);
  }

  /** Disarms every site. */
  disarmAll(): void {
    for (const a of this.#attrs.values()) a.disarm();
  }

  /** Failures injected so far, per site that has injected any. */
  injected(): Readonly<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [name, a] of this.#attrs) if (a.injected > 0) out[name] = a.injected;
    return out;
  }
}
