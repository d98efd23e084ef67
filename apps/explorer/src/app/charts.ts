import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { RunView } from "../model/run.js";
import { countSeries } from "../model/series.js";
import { h } from "./dom.js";

const COLOURS = ["#3a7bd5", "#e3342f", "#1f9d55", "#f6993f", "#9561e2", "#6c757d"];

/**
 * Cumulative counts of the busiest event types of one run along its event index, with a marker at the
 * current step (uPlot). Two of these stand side by side to compare runs.
 */
export class CountsChart {
  readonly root: HTMLElement;
  #plot: uPlot | undefined;
  #step = 0;

  constructor(testid: string) {
    this.root = h("div", { class: "chart", testid });
  }

  setRun(run: RunView | undefined, width: number): void {
    this.#plot?.destroy();
    this.#plot = undefined;
    this.root.replaceChildren();
    if (run === undefined) return;
    const s = countSeries(run.events);
    // x is the event index of each point: virtual time often stands still across a burst of events.
    const every = Math.max(1, Math.ceil(run.events.length / 400));
    const xs = s.t.map((_, i) => Math.min(run.events.length, (i + 1) * every));
    const opts: uPlot.Options = {
      title: run.label,
      width,
      height: 180,
      scales: { x: { time: false } },
      axes: [{ label: "event" }, { label: "count" }],
      series: [{ label: "event" }, ...s.types.map((t, i) => ({ label: t, stroke: COLOURS[i % COLOURS.length] ?? "#000", width: 1.5 }))],
      hooks: {
        draw: [(u: uPlot) => { marker(u, this.#step); }],
      },
    };
    this.#plot = new uPlot(opts, [xs, ...s.counts], this.root);
  }

  /** Moves the step marker. */
  setStep(step: number): void {
    this.#step = step;
    this.#plot?.redraw(false, false);
  }
}

/** Every run of the scenario side by side: checks, modelled time, and the counters that moved, as bars. */
export function renderCompare(body: HTMLElement, runs: readonly RunView[], a: number, b: number): void {
  const counters = new Set<string>();
  for (const r of runs) for (const k of Object.keys(r.result?.counters ?? {})) counters.add(k);
  const rows: [string, (r: RunView) => number][] = [
    ["modelled ns", (r) => r.result?.modelledNs ?? 0],
    ["events", (r) => r.events.length],
    ...[...counters].sort().map((c): [string, (r: RunView) => number] => [c, (r) => (r.result?.counters as Record<string, number> | undefined)?.[c] ?? 0]),
  ];
  const head = h("tr", {}, h("th", { text: "" }), ...runs.map((r, i) => h("th", { class: i === a || i === b ? "picked" : "", text: `${r.label.split(" ").pop() ?? r.label}${r.result?.ok === false ? " ✗" : ""}` })));
  const trs = rows.map(([name, f]) => {
    const vals = runs.map(f);
    const max = Math.max(1, ...vals);
    return h(
      "tr",
      { "data-row": name },
      h("td", { text: name }),
      ...vals.map((v, i) => h("td", { class: i === a || i === b ? "picked" : "", "data-value": v }, h("div", { class: "bar", style: `width:${Math.round((v / max) * 100)}%` }), h("span", { text: v.toLocaleString("en") }))),
    );
  });
  body.replaceChildren(h("table", { class: "compare", testid: "compare" }, h("thead", {}, head), h("tbody", {}, ...trs)));
}

/** IOTLB entries and stale entries along a run (the replay's samples), with the step marker. */
export class IotlbChart {
  readonly root: HTMLElement;
  #plot: uPlot | undefined;
  #step = 0;

  constructor() {
    this.root = h("div", { class: "chart", testid: "iotlb-chart" });
  }

  setRun(run: RunView | undefined, width: number): void {
    this.#plot?.destroy();
    this.#plot = undefined;
    this.root.replaceChildren();
    if (run === undefined) return;
    const s = run.replay.iotlbSeries;
    const opts: uPlot.Options = {
      width,
      height: 140,
      scales: { x: { time: false } },
      axes: [{ label: "event" }, { label: "entries" }],
      series: [{ label: "event" }, { label: "IOTLB entries", stroke: "#3a7bd5", width: 1.5 }, { label: "stale", stroke: "#e3342f", width: 2, fill: "rgba(227,52,47,0.15)" }],
      hooks: { draw: [(u: uPlot) => { marker(u, this.#step); }] },
    };
    this.#plot = new uPlot(opts, [s.step, s.entries, s.stale], this.root);
  }

  setStep(step: number): void {
    this.#step = step;
    this.#plot?.redraw(false, false);
  }
}

/** A dashed vertical line at x = step. */
function marker(u: uPlot, step: number): void {
  const x = u.valToPos(step, "x", true);
  const c = u.ctx;
  c.save();
  c.strokeStyle = "#222";
  c.setLineDash([4, 3]);
  c.beginPath();
  c.moveTo(x, u.bbox.top);
  c.lineTo(x, u.bbox.top + u.bbox.height);
  c.stroke();
  c.restore();
}

/** Modelled time of every run of the scenario as bars (uPlot), the two picked runs named in the title. */
export class ModelledTimeChart {
  readonly root: HTMLElement;
  #plot: uPlot | undefined;

  constructor() {
    this.root = h("div", { class: "chart", testid: "modelled-chart" });
  }

  setRuns(runs: readonly RunView[], width: number): void {
    this.#plot?.destroy();
    this.#plot = undefined;
    this.root.replaceChildren();
    if (runs.length === 0) return;
    const labels = runs.map((r) => r.label.split(" ").pop() ?? r.label);
    const bars = uPlot.paths.bars?.({ size: [0.6, 80] });
    const opts: uPlot.Options = {
      title: "modelled time per run (µs)",
      width,
      height: 160,
      scales: { x: { time: false, range: [-0.5, runs.length - 0.5] }, y: { range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [0, max * 1.1] } },
      axes: [{ values: (_u: uPlot, ticks: number[]) => ticks.map((t) => (Number.isInteger(t) ? (labels[t] ?? "") : "")), splits: () => runs.map((_, i) => i) }, { label: "µs" }],
      series: [{ label: "run", value: (_u: uPlot, v: number | null) => (v === null ? "" : (labels[v] ?? "")) }, { label: "modelled µs", fill: "#cfe0f7", stroke: "#3a7bd5", ...(bars === undefined ? {} : { paths: bars }) }],
    };
    this.#plot = new uPlot(opts, [runs.map((_, i) => i), runs.map((r) => (r.result?.modelledNs ?? 0) / 1000)], this.root);
  }
}
