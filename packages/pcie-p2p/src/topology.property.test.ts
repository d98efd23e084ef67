import { Counter } from "./counters.js";
import { MiB } from "@dmasim/memory";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PcieAccessError } from "./errors.js";
import { PciP2pdmaMapType } from "./p2pdma.js";
import { createPlatform } from "./platform.js";
import type { AcsSpec, EndpointSpec, PlatformSpec, SwitchSpec } from "./spec.js";

const acsArb: fc.Arbitrary<AcsSpec> = fc.record({ rr: fc.boolean(), cr: fc.boolean(), ec: fc.boolean(), sv: fc.boolean() }, { requiredKeys: [] });

/** Random trees: up to two root ports, up to three switches hung anywhere, endpoints anywhere, random ACS. */
const specArb: fc.Arbitrary<PlatformSpec> = fc
  .record({
    rootPorts: fc.array(acsArb, { minLength: 1, maxLength: 2 }),
    switches: fc.array(fc.record({ parentPick: fc.nat(), ports: fc.array(acsArb, { minLength: 1, maxLength: 3 }), up: acsArb }), { maxLength: 3 }),
    endpoints: fc.array(fc.record({ parentPick: fc.nat(), untrusted: fc.boolean() }), { minLength: 2, maxLength: 5 }),
    p2p: fc.constantFrom("none" as const, "same-host-bridge" as const),
  })
  .map(({ rootPorts, switches, endpoints, p2p }) => {
    const parents = rootPorts.map((_, i) => `rp${i}`);
    const sws: SwitchSpec[] = switches.map((s, i) => {
      const parent = parents[s.parentPick % parents.length]!;
      const ports = s.ports.map((acs, k) => ({ id: `sw${i}.dp${k}`, acs }));
      parents.push(...ports.map((p) => p.id));
      return { id: `sw${i}`, parent, downstreamPorts: ports, upstreamAcs: s.up };
    });
    const eps: EndpointSpec[] = endpoints.map((e, i) => ({
      bdf: `0000:${(i + 1).toString(16).padStart(2, "0")}:00.0`,
      parent: parents[e.parentPick % parents.length]!,
      untrusted: e.untrusted,
      bars: [{ size: 64 * 1024 }],
    }));
    return {
      memory: { ramBytes: 16 * MiB },
      hostBridges: [{ id: "hb0", p2p }],
      rootPorts: rootPorts.map((acs, i) => ({ id: `rp${i}`, acs })),
      switches: sws,
      endpoints: eps,
    };
  });

describe("kernel decision and fabric agree (random topologies)", () => {
  it("BUS_ADDR ⇒ the bus address reaches the peer through the fabric, never the root complex", () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const p = createPlatform(spec);
        for (const prov of p.endpoints) {
          const provider = p.addP2pdmaProvider(prov.bdf, 0);
          for (const client of p.endpoints) {
            const type = p.pciP2pdmaMapType(provider, client.bdf);
            const explained = p.pciP2pdmaExplain(provider, client.bdf);
            expect(explained.type).toBe(type);
            if (client.untrusted && client !== prov) expect(type).not.toBe(PciP2pdmaMapType.BUS_ADDR);
            const before = p.trace.counters.get(Counter.TlpsPeerViaSwitch);
            let delivered = true;
            try {
              client.dmaWrite(provider.bus, Uint8Array.of(1));
            } catch (e) {
              expect(e).toBeInstanceOf(PcieAccessError);
              delivered = false;
            }
            const direct = delivered && p.trace.counters.get(Counter.TlpsPeerViaSwitch) === before + 1;
            if (type === PciP2pdmaMapType.BUS_ADDR) expect(direct).toBe(true);
            // Without an IOMMU, a bus address that does not turn in a switch goes to the root complex,
            // which forwards it exactly when the kernel would allow the host-bridge path.
            if (!direct) expect(delivered).toBe(spec.hostBridges?.[0]?.p2p !== "none");
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
