// The part of vitest's API a benchmark file uses (describe, bench), run the way `vitest bench` runs it
// (vitest's runBenchmarkSuite: one tinybench Task per case, warm-up, then the timed run after a timer
// tick; each iteration awaits one call of the case), so that a case measures what it measures under
// vitest, in a process whose V8 flags ab.mjs controls.
import { createRequire } from "node:module";

const tinybench = createRequire(createRequire(import.meta.url).resolve("vitest/package.json"))("tinybench");

const cases = [];
const path = [];

export function describe(name, fn) {
  path.push(name);
  try {
    fn();
  } finally {
    path.pop();
  }
}

export function bench(name, fn, options = {}) {
  cases.push({ name: [...path, name].join(" > "), fn, options });
}

/** Runs the cases whose full name matches `filter` in file order; median, min and mean in ns. */
export async function runCases(filter) {
  const re = new RegExp(filter);
  const out = [];
  for (const c of cases) {
    if (!re.test(c.name)) continue;
    const task = new tinybench.Task(new tinybench.Bench(c.options), c.name, c.fn);
    await task.warmup();
    await new Promise((resolve) => setTimeout(resolve));
    await task.run();
    const s = [...task.result.samples].sort((a, b) => a - b);
    const median = s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    out.push({ name: c.name, median: median * 1e6, min: task.result.min * 1e6, mean: task.result.mean * 1e6, samples: s.length });
  }
  return out;
}
