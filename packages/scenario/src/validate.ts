import type { IommuMode } from "@dmasim/dma";
import type { PlatformSpec } from "@dmasim/pcie-p2p";
import { ScenarioError } from "./errors.js";
import { APIS, IOMMU_MODES, WORKLOAD_KINDS } from "./types.js";
import type { Api, DeviceSpec, KernelSpec, Scenario, ScenarioExpectations, Workload } from "./types.js";

type Obj = Readonly<Record<string, unknown>>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads fields of one JSON object, rejecting unknown keys so a typo is never silently ignored. */
class Reader {
  constructor(
    readonly path: string,
    readonly obj: Obj,
    allowed: readonly string[],
  ) {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) throw new ScenarioError(`${path}.${k}`, obj[k], `no such field (known: ${allowed.join(", ")})`);
    }
  }

  at(key: string): string {
    return `${this.path}.${key}`;
  }

  str(key: string): string {
    const v = this.obj[key];
    if (typeof v !== "string" || v.length === 0) throw new ScenarioError(this.at(key), v, "a non-empty string");
    return v;
  }

  optInt(key: string, min: number, max = Number.MAX_SAFE_INTEGER, what = "an integer"): number | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new ScenarioError(this.at(key), v, `${what} from ${min.toLocaleString("en-US")} to ${max.toLocaleString("en-US")}`);
    }
    return v;
  }

  int(key: string, min: number, max = Number.MAX_SAFE_INTEGER, what = "an integer"): number {
    const v = this.optInt(key, min, max, what);
    if (v === undefined) throw new ScenarioError(this.at(key), v, `${what} from ${min.toLocaleString("en-US")} to ${max.toLocaleString("en-US")}`);
    return v;
  }

  optBool(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v !== undefined && typeof v !== "boolean") throw new ScenarioError(this.at(key), v, "true or false");
    return v;
  }

  optOneOf<T extends string>(key: string, choices: readonly T[]): T | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) throw new ScenarioError(this.at(key), v, `one of ${choices.map((c) => `"${c}"`).join(", ")}`);
    return v as T;
  }

  obj_(key: string): Obj {
    const v = this.obj[key];
    if (!isObj(v)) throw new ScenarioError(this.at(key), v, "an object");
    return v;
  }
}

const PAGE = 4096;
const MiB = 1024 * 1024;

/**
 * Checks a parsed scenario file and returns it typed. Platform details (topology, BDFs, BARs) are
 * checked by createPlatform when the scenario runs; everything else is checked here.
 */
export function validateScenario(input: unknown, path = "scenario"): Scenario {
  if (!isObj(input)) throw new ScenarioError(path, input, "a JSON object with name, description, platform and workload");
  const r = new Reader(path, input, ["$schema", "name", "description", "platform", "kernel", "seed", "api", "axes", "expect", "workload"]);
  const name = r.str("name");
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new ScenarioError(r.at("name"), name, "lowercase letters, digits and dashes");
  const description = r.str("description");
  const platform = r.obj_("platform");
  if (!isObj(platform.memory)) throw new ScenarioError(`${path}.platform.memory`, platform.memory, 'an object such as { "ramBytes": 4294967296 }');
  const kernel = input.kernel === undefined ? undefined : validateKernel(r.obj_("kernel"), r.at("kernel"));
  const seed = r.optInt("seed", 0, 0xffffffff, "an integer seed");
  const api = r.optOneOf("api", APIS);
  const axes = input.axes === undefined ? undefined : validateAxes(r.obj_("axes"), r.at("axes"));
  const expect = input.expect === undefined ? undefined : validateExpect(r.obj_("expect"), r.at("expect"));
  const workload = validateWorkload(r.obj_("workload"), r.at("workload"));
  return {
    name,
    description,
    platform: platform as unknown as PlatformSpec,
    ...(kernel === undefined ? {} : { kernel }),
    ...(seed === undefined ? {} : { seed }),
    ...(api === undefined ? {} : { api }),
    ...(axes === undefined ? {} : { axes }),
    ...(expect === undefined ? {} : { expect }),
    workload,
  };
}

function validateKernel(o: Obj, path: string): KernelSpec {
  const r = new Reader(path, o, ["iommuMode", "swiotlbBytes", "debug", "devices"]);
  const iommuMode = r.optOneOf("iommuMode", IOMMU_MODES);
  const swiotlbBytes = r.optInt("swiotlbBytes", 0, 1024 * MiB, "a byte count");
  if (swiotlbBytes !== undefined && swiotlbBytes % (256 * 1024) !== 0) throw new ScenarioError(r.at("swiotlbBytes"), swiotlbBytes, "a multiple of 262144 (one 128-slot segment)");
  const debug = r.optOneOf("debug", ["throw", "collect", "off"] as const);
  let devices: Record<string, DeviceSpec> | undefined;
  if (o.devices !== undefined) {
    devices = {};
    for (const [bdf, spec] of Object.entries(r.obj_("devices"))) {
      const p = `${path}.devices["${bdf}"]`;
      if (!isObj(spec)) throw new ScenarioError(p, spec, "an object of device properties");
      const d = new Reader(p, spec, ["coherent", "dmaMaskBits", "maxSegmentSize", "segBoundaryMask", "minAlignMask"]);
      const coherent = d.optBool("coherent");
      const dmaMaskBits = d.optInt("dmaMaskBits", 12, 64, "a mask width in bits");
      const maxSegmentSize = d.optInt("maxSegmentSize", 1, 0xffffffff, "a byte count");
      const segBoundaryMask = d.optInt("segBoundaryMask", 0, Number.MAX_SAFE_INTEGER, "a mask");
      const minAlignMask = d.optInt("minAlignMask", 0, 0xffff, "a mask");
      devices[bdf] = {
        ...(coherent === undefined ? {} : { coherent }),
        ...(dmaMaskBits === undefined ? {} : { dmaMaskBits }),
        ...(maxSegmentSize === undefined ? {} : { maxSegmentSize }),
        ...(segBoundaryMask === undefined ? {} : { segBoundaryMask }),
        ...(minAlignMask === undefined ? {} : { minAlignMask }),
      };
    }
  }
  return {
    ...(iommuMode === undefined ? {} : { iommuMode }),
    ...(swiotlbBytes === undefined ? {} : { swiotlbBytes }),
    ...(debug === undefined ? {} : { debug }),
    ...(devices === undefined ? {} : { devices }),
  };
}

function listOf<T extends string>(o: Obj, key: string, path: string, choices: readonly T[]): T[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0) throw new ScenarioError(`${path}.${key}`, v, `a non-empty list of ${choices.map((c) => `"${c}"`).join(", ")}`);
  return v.map((x: unknown, i) => {
    if (typeof x !== "string" || !(choices as readonly string[]).includes(x)) throw new ScenarioError(`${path}.${key}[${i}]`, x, `one of ${choices.map((c) => `"${c}"`).join(", ")}`);
    return x as T;
  });
}

function validateAxes(o: Obj, path: string): { api?: Api[]; iommu?: IommuMode[] } {
  new Reader(path, o, ["api", "iommu"]);
  const api = listOf(o, "api", path, APIS);
  const iommu = listOf(o, "iommu", path, IOMMU_MODES);
  return { ...(api === undefined ? {} : { api }), ...(iommu === undefined ? {} : { iommu }) };
}

function validateExpect(o: Obj, path: string): ScenarioExpectations {
  const r = new Reader(path, o, ["bounce", "mapType"]);
  const bounce = r.optBool("bounce");
  const mapType = r.optOneOf("mapType", ["BUS_ADDR", "THRU_HOST_BRIDGE", "NOT_SUPPORTED", "NONE"] as const);
  return { ...(bounce === undefined ? {} : { bounce }), ...(mapType === undefined ? {} : { mapType }) };
}

function validateWorkload(o: Obj, path: string): Workload {
  const kind = o.kind;
  if (typeof kind !== "string" || !(WORKLOAD_KINDS as readonly string[]).includes(kind)) {
    throw new ScenarioError(`${path}.kind`, kind, `one of ${WORKLOAD_KINDS.map((k) => `"${k}"`).join(", ")}`);
  }
  switch (kind) {
    case "nvme": {
      const r = new Reader(path, o, ["kind", "device", "ops", "bsMin", "bsMax", "readPct", "queueDepth", "order", "layout", "namespaceBytes", "sglThreshold"]);
      const namespaceBytes = r.optInt("namespaceBytes", 64 * 1024, 256 * MiB, "a byte count (multiple of 4096)");
      const ns = namespaceBytes ?? 8 * MiB;
      if (ns % PAGE !== 0) throw new ScenarioError(r.at("namespaceBytes"), ns, "a multiple of 4096");
      const bsMin = r.optInt("bsMin", PAGE, ns, "a block size (multiple of 4096, up to the namespace)");
      const bsMax = r.optInt("bsMax", bsMin ?? PAGE, ns, "a block size (multiple of 4096, at least bsMin, up to the namespace)");
      for (const [k, v] of [["bsMin", bsMin], ["bsMax", bsMax]] as const) if (v !== undefined && v % PAGE !== 0) throw new ScenarioError(r.at(k), v, "a multiple of 4096");
      const readPct = r.optInt("readPct", 0, 100, "a percentage");
      const queueDepth = r.optInt("queueDepth", 1, 1024, "a queue depth");
      const layout = r.optOneOf("layout", ["contiguous", "scattered", "offset"] as const);
      const order = r.optOneOf("order", ["random", "sequential"] as const);
      const sglThreshold = r.optInt("sglThreshold", 0, Number.MAX_SAFE_INTEGER, "a byte count");
      return {
        kind,
        device: r.str("device"),
        ops: r.int("ops", 1, 1_000_000, "a number of I/Os"),
        ...(bsMin === undefined ? {} : { bsMin }),
        ...(bsMax === undefined ? {} : { bsMax }),
        ...(readPct === undefined ? {} : { readPct }),
        ...(queueDepth === undefined ? {} : { queueDepth }),
        ...(order === undefined ? {} : { order }),
        ...(layout === undefined ? {} : { layout }),
        ...(namespaceBytes === undefined ? {} : { namespaceBytes }),
        ...(sglThreshold === undefined ? {} : { sglThreshold }),
      };
    }
    case "sg": {
      const r = new Reader(path, o, ["kind", "device", "entries", "entryBytes", "offset", "layout", "iterations"]);
      const eb = o.entryBytes;
      let entryBytes: number | [number, number];
      const okSize = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1 && v <= 16 * MiB;
      if (okSize(eb)) entryBytes = eb;
      else if (Array.isArray(eb) && eb.length === 2 && okSize(eb[0]) && okSize(eb[1]) && eb[0] <= eb[1]) entryBytes = [eb[0], eb[1]];
      else throw new ScenarioError(r.at("entryBytes"), eb, "a byte count from 1 to 16 MiB, or a [min, max] pair of them");
      const offset = r.optInt("offset", 0, PAGE - 1, "an offset inside a page");
      const layout = r.optOneOf("layout", ["contiguous", "scattered"] as const);
      const iterations = r.optInt("iterations", 1, 10_000, "a count");
      return {
        kind,
        device: r.str("device"),
        entries: r.int("entries", 1, 65_536, "a number of entries"),
        entryBytes,
        ...(offset === undefined ? {} : { offset }),
        ...(layout === undefined ? {} : { layout }),
        ...(iterations === undefined ? {} : { iterations }),
      };
    }
    case "single": {
      const r = new Reader(path, o, ["kind", "device", "buffers", "bytes", "offset", "iova"]);
      const offset = r.optInt("offset", 0, PAGE - 1, "an offset inside a page");
      const iova = r.optOneOf("iova", ["shared", "per-buffer"] as const);
      const bytes = r.int("bytes", 1, 64 * MiB, "a byte count");
      if ((iova ?? "shared") === "shared" && ((offset ?? 0) !== 0 || bytes % PAGE !== 0)) {
        throw new ScenarioError(r.at("iova"), iova ?? "shared", '"per-buffer" for buffers that are not whole pages (dma_iova_link: only the first range may be unaligned)');
      }
      return {
        kind,
        device: r.str("device"),
        buffers: r.int("buffers", 1, 65_536, "a number of buffers"),
        bytes,
        ...(offset === undefined ? {} : { offset }),
        ...(iova === undefined ? {} : { iova }),
      };
    }
    case "p2p": {
      const r = new Reader(path, o, ["kind", "device", "provider", "bytes", "namespaceBytes"]);
      const p = new Reader(r.at("provider"), r.obj_("provider"), ["bdf", "bar"]);
      const bar = p.optInt("bar", 0, 5, "a BAR index");
      const bytes = r.optInt("bytes", PAGE, 16 * MiB, "a byte count (multiple of 4096)");
      if (bytes !== undefined && bytes % PAGE !== 0) throw new ScenarioError(r.at("bytes"), bytes, "a multiple of 4096");
      const namespaceBytes = r.optInt("namespaceBytes", 64 * 1024, 256 * MiB, "a byte count (multiple of 4096)");
      return {
        kind,
        device: r.str("device"),
        provider: { bdf: p.str("bdf"), ...(bar === undefined ? {} : { bar }) },
        ...(bytes === undefined ? {} : { bytes }),
        ...(namespaceBytes === undefined ? {} : { namespaceBytes }),
      };
    }
    default: {
      const r = new Reader(path, o, ["kind", "device", "bytes", "probeIntervalNs", "probeForNs"]);
      const bytes = r.optInt("bytes", 1, 16 * MiB, "a byte count");
      const probeIntervalNs = r.optInt("probeIntervalNs", 1000, 1e9, "nanoseconds");
      const probeForNs = r.optInt("probeForNs", 1000, 1e10, "nanoseconds");
      return {
        kind: "stale-window",
        device: r.str("device"),
        ...(bytes === undefined ? {} : { bytes }),
        ...(probeIntervalNs === undefined ? {} : { probeIntervalNs }),
        ...(probeForNs === undefined ? {} : { probeForNs }),
      };
    }
  }
}
