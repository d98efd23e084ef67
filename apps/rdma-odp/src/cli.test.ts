import { describe, expect, it } from "vitest";
import { main } from "./cli.js";

function capture(argv: readonly string[]): { code: number; out: string; err: string } {
  let out = "";
  let err = "";
  const code = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe("rdma-odp: arguments", () => {
  it("--help prints usage with the cases and examples, exit 0", () => {
    const r = capture(["--help"]);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(r.out).toContain("Cases: rc-traffic, rdma-write, rdma-read, atomic, prefetch-sync, prefetch-async, prefetch-no-fault, huge-pages");
    expect(r.out).toContain("Examples:");
  });

  it.each([
    [[], /no command: expected test-odp, hodgepodge, mixed or compare/],
    [["mixed", "--implicit"], /--implicit does not apply to mixed/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["test-odp", "--bogus"], /Unknown option '--bogus'/],
    [["test-odp", "rdma-wirte"], /no such case "rdma-wirte": expected all or one of rc-traffic/],
    [["test-odp", "--iterations", "ten"], /--iterations "ten" is invalid: expected a whole number/],
    [["test-odp", "atomic", "--iterations", "0"], /workload\.iterations .* expected a count from 1 to 10,000/],
    [["test-odp", "--message-bytes", "99999"], /workload\.messageBytes .* expected a byte count from 8 to 16,384/],
    [["test-odp", "--api", "both-ways"], /--api "both-ways" is invalid: expected classic, two-step or both/],
    [["test-odp", "--iommu", "off"], /--iommu "off" is invalid: expected strict or lazy/],
    [["test-odp", "huge-pages", "--implicit"], /--implicit does not apply to huge-pages/],
    [["test-odp", "--sizes", "2M"], /--sizes does not apply to test-odp/],
    [["hodgepodge", "--api", "classic"], /cannot map the peer BARs/],
    [["compare", "--sizes", "3K"], /--sizes 3072 is invalid: expected a multiple of 4 KiB/],
    [["compare", "--wqe", "lots"], /--wqe "lots" is invalid: expected a size such as 4096, 64K or 2M/],
    [["compare", "--implicit"], /--implicit does not apply to compare/],
  ])("%j is refused with one line on stderr, exit 2", (argv, message) => {
    const r = capture(argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(message);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe("rdma-odp: commands", () => {
  it("test-odp rdma-write: both APIs pass, 20 NIC faults each (both sides fault every iteration), exit 0", () => {
    const r = capture(["test-odp", "rdma-write"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^rdma-write +classic\/strict, ok, 20 NIC fault\(s\), 10,240 bytes verified/m);
    expect(r.out).toMatch(/^rdma-write +two-step\/strict, ok, 20 NIC fault\(s\), 10,240 bytes verified, .*batched: 20 IOTLB sync\(s\) against 20,/m);
    expect(r.out).toContain("All 2 run(s) passed every check.");
  });

  it("test-odp with --implicit, --iterations, --message-bytes and -v prints every check", () => {
    const r = capture(["test-odp", "rc-traffic", "--implicit", "--iterations", "3", "--message-bytes", "64", "--api", "two-step", "--iommu", "lazy", "-v"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^rc-traffic +two-step\/lazy, ok, 6 NIC fault\(s\), 192 bytes verified/m);
    expect(r.out).toContain("✓ a fault every iteration: 3 of 3 iteration(s) faulted on the responder");
    expect(r.out).toContain("✓ nothing leaked");
  });

  it("hodgepodge: one run per API asked, every check held", () => {
    const r = capture(["hodgepodge", "--iommu", "lazy"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^hodgepodge +two-step\/lazy, ok, \d+ NIC fault\(s\)/m);
  });

  it("mixed: one MR over user VA and dma-bufs, every check held, per-source latencies printed", () => {
    const r = capture(["mixed", "--iommu", "lazy", "-v"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^mixed +two-step\/lazy, ok, \d+ NIC fault\(s\), .*mm: quiescence ≤ [\d.]+ µs, first DMA after ≤ [\d.]+ µs, gpu: .*, vfio: /m);
    expect(r.out).toContain("✓ no stale MTT entry");
    expect(r.out).toContain("All 1 run(s) passed every check.");
  });

  it("compare prints the three-way table, one row per strategy and size", () => {
    const r = capture(["compare", "--sizes", "64K,256K"]);
    expect(r.code).toBe(0);
    const rows = r.out.trim().split("\n");
    expect(rows).toHaveLength(2 + 6);
    expect(rows[2]).toMatch(/^\| 64 KiB \| pfn-list \+ dma_map_page \| 16\.00 \| 16 \| 16 \| 16 \| 1 \|/);
    expect(rows[4]).toMatch(/^\| 64 KiB \| hmm_dma_map batched \| 9\.00 \| 1 \| 16 \| 1 \| 1 \|/);
  });
});
