import { schemaIssues } from "@dmasim/trace";
import { PlatformSpecError } from "./errors.js";
import type { ResolvedSpec } from "./resolved.js";
import { platformSpecSchema } from "./spec.js";
import type { PlatformSpec } from "./spec.js";
import { PortResolver, Resolver, resolveEndpoints, resolveHostBridges, resolveIommus, resolveRam } from "./validate-parts.js";

/** The spec with every field's shape checked (zod); PlatformSpecError listing every issue otherwise. */
export function parseSpec(input: unknown): PlatformSpec {
  const parsed = platformSpecSchema.safeParse(input);
  if (!parsed.success) throw PlatformSpecError.of(schemaIssues(parsed.error.issues, input));
  return parsed.data;
}

/**
 * Checks a spec and fills the defaults, in two steps: the shape of every field (the schema), then what
 * needs the whole spec — ids used once, references to host bridges, ports and IOMMU units, overlapping RAM.
 * Each step reports every issue it finds (PlatformSpecError, `issues`), each with its path. Address layout
 * is bars.ts's job and graph shape (cycles) topology.ts's.
 */
export function resolveSpec(input: PlatformSpec): ResolvedSpec {
  const spec = parseSpec(input);
  const r = new Resolver();
  const ram = resolveRam(r, spec.memory);
  const iommus = resolveIommus(r, spec.iommu);
  const hostBridges = resolveHostBridges(r, spec.hostBridges ?? [], iommus);
  const tree = new PortResolver(r, hostBridges, iommus);
  tree.rootPorts(spec.rootPorts ?? []);
  tree.switches(spec.switches ?? []);
  const endpoints = resolveEndpoints(r, tree, spec.endpoints ?? []);
  tree.defaultHostBridge(); // a platform always has one, even with no devices yet
  if (r.issues.length > 0) throw PlatformSpecError.of(r.issues);
  return {
    ram,
    confidential: spec.memory.confidential ?? false,
    iommus,
    cpuSupportsP2pdma: spec.cpuSupportsP2pdma ?? false,
    hostBridges,
    ports: tree.ports,
    endpoints,
    recordEvents: spec.trace?.recordEvents ?? false,
    eventCapacity: spec.trace?.eventCapacity,
  };
}
