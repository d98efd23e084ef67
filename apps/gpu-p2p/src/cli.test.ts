import { describe, expect, it } from "vitest";
import { main } from "./cli.js";

function capture(argv: readonly string[]): { code: number; out: string; err: string } {
  let out = "";
  let err = "";
  const code = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe("gpu-p2p: arguments", () => {
  it("--help prints usage with the cases and examples, exit 0", () => {
    const r = capture(["--help"]);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(r.out).toContain("Cases: switch, host-bridge, migrate, revoke");
    expect(r.out).toContain("Examples:");
  });

  it.each([
    [[], /no command: expected nvme or workload/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["nvme", "--bogus"], /Unknown option '--bogus'/],
    [["nvme", "swtich"], /no such case "swtich": expected all or one of switch, host-bridge, migrate, revoke/],
    [["nvme", "switch", "revoke"], /one case at most, got 2/],
    [["nvme", "--api", "sideways"], /--api "sideways" is invalid: expected classic, two-step or both/],
    [["workload", "--bytes", "lots"], /--bytes "lots" is invalid: expected a size such as 4096, 64K or 2M/],
    [["workload", "--bytes", "3000"], /workload\.bytes .* a multiple of 4096/],
    [["workload", "now"], /workload takes no arguments, got "now"/],
  ])("%j is refused with one line on stderr, exit 2", (argv, message) => {
    const r = capture(argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(message);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });
});

describe("gpu-p2p: runs", () => {
  it("nvme: every case with both mapping types passes; the route shows in the P2P bytes", () => {
    const r = capture(["nvme"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("All 8 run(s) passed every check.");
    expect(r.out).toMatch(/^switch +classic\/strict, ok, 4,194,304 bytes verified, 32 NVMe commands, P2P 4\.0 MiB via switch, 0\.0 MiB via host bridge, .*modelled/m);
    expect(r.out).toMatch(/^host-bridge +two-step\/strict, ok, .* P2P 0\.0 MiB via switch, 4\.0 MiB via host bridge, /m);
    expect(r.out).toMatch(/^migrate +classic\/strict, ok, .* 2 invalidation\(s\), 4\.0 MiB migrated, /m);
    expect(r.out).toMatch(/^revoke +two-step\/strict, ok, .* 3 invalidation\(s\), 0\.0 MiB migrated, 2 revoke\(s\)/m);
  }, 120_000);

  it("workload -v: the drive and the NIC across VRAM pressure and a VFIO revoke, every check printed", () => {
    const r = capture(["workload", "--api", "two-step", "-v"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("✓ VRAM pressure evicted both buffers");
    expect(r.out).toContain("✓ no write lost: the drive's writes into A survived its move back to VRAM");
    expect(r.out).toContain("✓ VFIO revoke mid-workload");
    // The NIC: a dynamic dmabuf MR written and read by RDMA across the eviction, a revocable one over the BAR.
    expect(r.out).toContain("✓ NIC's RDMA WRITEs into B landed, half before the eviction and half after (B read in RAM): 2,097,152 bytes identical");
    expect(r.out).toContain("✓ NIC's RDMA READs of B in RAM returned every byte: 2,097,152 bytes identical");
    expect(r.out).toContain("✓ the eviction cost the NIC's MR one fault: 1 dmabuf MR fault(s)");
    expect(r.out).toContain("✓ NIC's RDMA WRITE reached the VFIO BAR before the revoke: 1,048,576 bytes identical");
    expect(r.out).toMatch(/✓ the NIC's revocable MR fails for good after the revoke: RDMA WRITE completion status 10 \(REM_ACCESS_ERR is 10\); the BAR unchanged; the mkey disabled/);
    expect(r.out).toContain("✓ every RDMA WR completed as expected: 18 RDMA WR(s) over 3 dmabuf MR(s)");
    expect(r.out).toMatch(/^workload +two-step\/strict, ok, 9,437,184 bytes verified, .*modelled .* µs \(fence waits .* µs\), NIC 18 RDMA WR\(s\), 1 MR fault\(s\), 2 map\(s\), 1 MR\(s\) revoked, WRs [\d.]+ µs$/m);
    expect(r.out).toContain("✓ nothing left mapped");
    expect(r.out).not.toContain("✗");
    expect(r.out).toContain("All 1 run(s) passed every check.");
  }, 60_000);
});
