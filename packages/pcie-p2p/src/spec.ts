import { z } from "zod";
import { isBdf } from "./bdf.js";
import { numberWhere as num, strictRecord as record } from "./schema-helpers.js";

// The platform spec: plain JSON, so a scenario can live in a file. These zod schemas check every field's
// shape and range (all issues at once, each with its path, unknown keys refused); the TypeScript types are
// inferred from them. What needs the whole spec — ids used twice, references to other parts, overlaps — is
// resolveSpec's job (validate.ts). Zod runs once per platform, never on a per-access path.

const PAGE = 4096;
const MAX_ADDR = 2 ** 53;

const bool = z.boolean({ error: "true or false" });
const id = z.string({ error: "a non-empty string id" }).min(1, { error: "a non-empty string id" });
const pageAligned = (what: string, min: number) =>
  num((v) => Number.isSafeInteger(v) && v >= min && v % PAGE === 0 && v <= MAX_ADDR, `${what}: a multiple of 4096${min > 0 ? " > 0" : " >= 0"} below 2^53`);
const positiveInt = num((v) => Number.isSafeInteger(v) && v > 0, "a positive integer");
const unitName = z.string({ error: "null or the name of an IOMMU unit" }).nullable();

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

const ramRegionSchema = record(
  { base: pageAligned("a physical address", 0), size: pageAligned("a size", 1), name: z.string({ error: "a string" }).optional() },
  "an object { base, size, name? }",
).refine((r) => r.base + r.size <= MAX_ADDR, { error: "a region ending below 2^53", path: ["size"] });

/** Schema of the platform's memory: RAM size or explicit RAM regions, and whether the guest is confidential. */
export const memorySpecSchema = record(
  {
    /** RAM from physical address 0, one contiguous region (no PC-style hole below 4 GiB). */
    ramBytes: pageAligned("bytes of RAM", 1).optional(),
    /** Explicit RAM regions, page aligned, non-overlapping; use instead of ramBytes. */
    ram: z.array(ramRegionSchema, { error: "an array" }).min(1, { error: "at least one region" }).readonly().optional(),
    /** A confidential guest (SEV-SNP, TDX): RAM is private (encrypted) until shared with the device. */
    confidential: bool.optional(),
  },
  "an object with ramBytes or ram",
).refine((m) => (m.ramBytes === undefined) !== (m.ram === undefined), { error: "exactly one of ramBytes (RAM from 0) or ram (explicit regions)" });

/** Schema of one IOMMU unit's options: name, IOTLB geometry, page sizes, address width, sync-map requirement. */
export const iommuSpecSchema = record(
  {
    name: id.optional(),
    iotlbEntries: positiveInt.optional(),
    iotlbWays: positiveInt.optional(),
    pgsizeBitmap: positiveInt.optional(),
    requiresSyncMap: bool.optional(),
    vaBits: positiveInt.optional(),
  },
  "an object of IOMMU options ({} for the defaults)",
);

/** ACS control bits of a port (PCI_ACS_CTRL). Absent bits are clear. */
export const acsSpecSchema = record(
  {
    /** Source Validation. */
    sv: bool.optional(),
    /** P2P Request Redirect: peer requests entering here are sent upstream to the root complex. */
    rr: bool.optional(),
    /** P2P Completion Redirect. */
    cr: bool.optional(),
    /** Upstream Forwarding. */
    uf: bool.optional(),
    /** P2P Egress Control (modelled as blocking every peer egress, i.e. redirecting upstream). */
    ec: bool.optional(),
  },
  "an object of ACS bits { sv, rr, cr, uf, ec }",
);

/**
 * Where a host bridge stands on the kernel's P2P whitelist (drivers/pci/p2pdma.c, pci_p2pdma_whitelist):
 * "none" — not listed, peer traffic through it is refused; "same-host-bridge" — listed with
 * REQ_SAME_HOST_BRIDGE (Intel Xeon entries): only between ports of this bridge; "any" — listed without
 * restriction (AMD Zen root complexes), also to other whitelisted bridges.
 */
export const hostBridgeP2pSchema = z.enum(["none", "same-host-bridge", "any"], { error: `"none", "same-host-bridge" or "any"` });

const windowSchema = record({ base: pageAligned("a physical address", 0), size: pageAligned("a size", 1) }, "an object { base, size }").refine(
  (w) => w.base + w.size <= MAX_ADDR,
  { error: "a window ending below 2^53", path: ["size"] },
);

/** Schema of a host bridge: id, P2P whitelist place, bus offset, MMIO window and IOMMU unit. */
export const hostBridgeSpecSchema = record(
  {
    id,
    /** Default "none". */
    p2p: hostBridgeP2pSchema.optional(),
    /** bus = phys + busOffset for MMIO behind this bridge (pci_bus_address - pci_resource_start). Default 0. */
    busOffset: num((v) => Number.isSafeInteger(v) && v % PAGE === 0, "an integer multiple of 4096 (may be negative)").optional(),
    /** The bridge's MMIO window (CPU physical). Default: 1 TiB windows placed one after another above RAM. */
    mmio: windowSchema.optional(),
    /** IOMMU unit serving endpoints below it (their default); null: none. Default: the first unit. */
    iommu: unitName.optional(),
  },
  "an object { id, p2p?, busOffset?, mmio?, iommu? }",
);

/** Schema of a root port: id, host bridge and ACS bits. */
export const rootPortSpecSchema = record(
  {
    id,
    /** Default: the first host bridge. */
    hostBridge: id.optional(),
    acs: acsSpecSchema.optional(),
  },
  "an object { id, hostBridge?, acs? }",
);

/** Schema of one switch downstream port given by id, with its ACS bits. */
export const switchPortSpecSchema = record({ id, acs: acsSpecSchema.optional() }, "a port id or { id, acs? }");

/** Schema of a PCIe switch: its parent port, its downstream ports (a count or a list) and their ACS bits. */
export const switchSpecSchema = record(
  {
    id,
    /** A root port or a downstream port of another switch. Default: a root port of its own, "rp:<id>". */
    parent: id.optional(),
    /** ACS of the upstream port (id "<id>.up"). */
    upstreamAcs: acsSpecSchema.optional(),
    /** ACS applied to every downstream port that does not give its own. */
    acs: acsSpecSchema.optional(),
    /** A count (ports named "<id>.dp<i>") or the ports, by id or with their ACS. */
    downstreamPorts: z.union(
      [
        num((v) => Number.isInteger(v) && v >= 1 && v <= 32, "a count 1..32"),
        z.array(z.union([id, switchPortSpecSchema], { error: "a port id or { id, acs? }" })).min(1).readonly(),
      ],
      { error: "a count 1..32 or a non-empty list of ports" },
    ),
  },
  "an object { id, parent?, downstreamPorts, acs?, upstreamAcs? }",
);

/** Schema of a memory BAR: number, size (a power of two >= 4096 bytes) and optional physical address. */
export const barSpecSchema = record(
  {
    /** BAR number 0..5; default its position in the list. */
    index: num((v) => Number.isInteger(v) && v >= 0 && v <= 5, "a BAR number 0..5").optional(),
    /** A power of two >= 4096 bytes (a page: P2P memory is handed out in pages). */
    size: num((v) => v >= PAGE && isPow2(v), "a power of two >= 4096 bytes"),
    /** CPU physical address, naturally aligned and inside the host bridge window; default placed automatically. */
    phys: num((v) => Number.isSafeInteger(v) && v >= 0, "a physical address (a safe integer >= 0)").optional(),
  },
  "an object { size, index?, phys? }",
).superRefine((b, ctx) => {
  if (b.phys !== undefined && b.phys % b.size !== 0) ctx.addIssue({ code: "custom", message: `a physical address aligned to the BAR size (${b.size})`, path: ["phys"] });
});

/** Schema of an endpoint: BDF, parent port, untrusted flag, IOMMU unit and BARs. */
export const endpointSpecSchema = record(
  {
    /** "dddd:bb:dd.f", lowercase hex, as pci_name() prints it. */
    bdf: z.string({ error: "a BDF string" }).refine(isBdf, { error: `a BDF "dddd:bb:dd.f" in lowercase hex with device <= 1f, e.g. "0000:01:00.0"` }),
    /**
     * A root port or a switch downstream port. Default: a root port of the first host bridge shared by the
     * endpoints of the same domain and bus ("rp:dddd:bb"), so functions of one device share a link and
     * separate devices do not.
     */
    parent: id.optional(),
    /** Behind an external-facing port (Thunderbolt, a hot-plug slot): see README, "Untrusted devices". */
    untrusted: bool.optional(),
    /** IOMMU unit name, or null for none. Default: the host bridge's unit. */
    iommu: unitName.optional(),
    bars: z.array(barSpecSchema, { error: "an array" }).readonly().optional(),
  },
  "an object { bdf, parent?, untrusted?, iommu?, bars? }",
);

const list = <T extends z.ZodType>(item: T) => z.array(item, { error: "an array" }).readonly().optional();

/**
 * The platform spec. Every field but `memory` is optional; createPlatform fills the defaults described on
 * each field.
 */
export const platformSpecSchema = record(
  {
    memory: memorySpecSchema,
    /**
     * IOMMU units. Absent: no IOMMU, devices issue physical addresses. `{}`: one unit "iommu0" serving
     * every endpoint. An array: several units, named "iommu<i>" unless given a name; an endpoint uses its
     * host bridge's unit, else the first one.
     */
    iommu: z.union([iommuSpecSchema, z.array(iommuSpecSchema).readonly()], { error: "an object of IOMMU options ({} for the defaults) or a list of them" }).optional(),
    /**
     * cpu_supports_p2pdma(): the CPU's root complex routes P2P between any of its ports (AMD Zen and later),
     * which overrides the host-bridge whitelist. Default false.
     */
    cpuSupportsP2pdma: bool.optional(),
    /** Host bridges; default one, "hb0", not on the P2P whitelist. The first one is the default parent. */
    hostBridges: list(hostBridgeSpecSchema),
    rootPorts: list(rootPortSpecSchema),
    switches: list(switchSpecSchema),
    endpoints: list(endpointSpecSchema),
    /** Trace options: record events from the start (default false) and the ring size. */
    trace: record({ recordEvents: bool.optional(), eventCapacity: positiveInt.optional() }, "an object { recordEvents?, eventCapacity? }").optional(),
  },
  "a platform spec object",
);

/** A platform as plain JSON, input to `createPlatform`; every field but `memory` is optional. */
export type PlatformSpec = z.input<typeof platformSpecSchema>;
/** The `memory` part of a `PlatformSpec`. */
export type MemorySpec = z.input<typeof memorySpecSchema>;
/** Options of one IOMMU unit in a `PlatformSpec` (`{}` for the defaults). */
export type IommuSpec = z.input<typeof iommuSpecSchema>;
/** A host bridge's place on the P2P whitelist: `none`, `same-host-bridge` or `any`. */
export type HostBridgeP2p = z.input<typeof hostBridgeP2pSchema>;
/** One host bridge of a `PlatformSpec`. */
export type HostBridgeSpec = z.input<typeof hostBridgeSpecSchema>;
/** ACS control bits of a port (sv, rr, cr, uf, ec); absent bits are clear. */
export type AcsSpec = z.input<typeof acsSpecSchema>;
/** One root port of a `PlatformSpec`. */
export type RootPortSpec = z.input<typeof rootPortSpecSchema>;
/** One switch downstream port given with its ACS bits. */
export type SwitchPortSpec = z.input<typeof switchPortSpecSchema>;
/** One PCIe switch of a `PlatformSpec`. */
export type SwitchSpec = z.input<typeof switchSpecSchema>;
/** One memory BAR of an `EndpointSpec`. */
export type BarSpec = z.input<typeof barSpecSchema>;
/** One endpoint of a `PlatformSpec`. */
export type EndpointSpec = z.input<typeof endpointSpecSchema>;
