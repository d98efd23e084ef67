#!/usr/bin/env node
import { renderDemo, runDemo } from "./demo.js";

const HELP = `dmasim — an executable model of the Linux DMA mapping stack

Usage:
  dmasim demo [--json]    run the built-in demo: a device reading through the IOMMU, classic vs
                          two-step mapping costs, P2P through a switch, lazy invalidation's window,
                          an untrusted device bouncing through swiotlb
  dmasim --help           this text

Exit status: 0 when every check held, 1 when one failed, 2 on bad usage.

Examples:
  dmasim demo
  dmasim demo --json | jq '.[1].data.runs'
`;

export function main(argv: readonly string[]): number {
  const args = argv.filter((a) => a !== "--json");
  const json = argv.includes("--json");
  const [command, ...rest] = args;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command !== "demo" || rest.length > 0) {
    process.stderr.write(`dmasim: unknown command or argument: ${[command, ...rest].join(" ")}\n\n${HELP}`);
    return 2;
  }
  const sections = runDemo();
  process.stdout.write(json ? `${JSON.stringify(sections, null, 2)}\n` : `${renderDemo(sections)}\n`);
  return sections.every((s) => s.ok) ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
