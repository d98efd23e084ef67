import { IOVA_STATE_NAMES, pixelStates, segments, stateTotals, zoom, zoomWindow } from "../model/iova-space.js";
import type { DomainState } from "../model/replay.js";
import { bytes, h, hex } from "./dom.js";

/** Fill colour of each IovaState, indexed by value. */
export const STATE_COLOURS: readonly string[] = ["#f2f2f2", "#f3d9a4", "#b9d3f0", "#3a7bd5", "#1f9d55", "#e3342f"];

/**
 * A device's IOVA space on a canvas, one pixel column per slice of the window, coloured by the highest
 * state in it (free, allocated, linked, synced, stale in the IOTLB). The wheel zooms around the cursor
 * from the whole space down to single 4 KiB granules; the list below names every range in the window.
 */
export class IovaView {
  readonly root: HTMLElement;
  readonly #canvas: HTMLCanvasElement;
  readonly #info: HTMLElement;
  readonly #legend: HTMLElement;
  readonly #list: HTMLElement;
  readonly #stale: HTMLElement;
  #limit = 2 ** 32;
  #win = { lo: 0, hi: 2 ** 32 };
  #domain: DomainState | undefined;

  constructor() {
    this.#canvas = h("canvas", { class: "iova-canvas", testid: "iova-canvas", height: 40 });
    this.#info = h("div", { class: "iova-info", testid: "iova-window" });
    this.#legend = h("div", { class: "legend", testid: "iova-legend" });
    this.#list = h("ol", { class: "iova-list", testid: "iova-ranges" });
    this.#stale = h("div", { class: "iova-stale", testid: "iova-stale" });
    const btn = (text: string, testid: string, fn: () => void): HTMLButtonElement => {
      const b = h("button", { text, testid, type: "button" });
      b.addEventListener("click", fn);
      return b;
    };
    const mid = (): number => (this.#win.lo + this.#win.hi) / 2;
    const tools = h(
      "div",
      { class: "tools" },
      btn("zoom in", "iova-zoom-in", () => {
        this.#setWindow(zoom(this.#win, 1 / 8, mid(), this.#limit));
      }),
      btn("zoom out", "iova-zoom-out", () => {
        this.#setWindow(zoom(this.#win, 8, mid(), this.#limit));
      }),
      btn("whole space", "iova-zoom-all", () => {
        this.#setWindow({ lo: 0, hi: this.#limit });
      }),
      btn("fit used", "iova-zoom-fit", () => {
        this.fitUsed();
      }),
    );
    this.#canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = this.#canvas.getBoundingClientRect();
      const at = this.#win.lo + ((ev.clientX - rect.left) / rect.width) * (this.#win.hi - this.#win.lo);
      this.#setWindow(zoom(this.#win, ev.deltaY > 0 ? 2 : 0.5, at, this.#limit));
    });
    this.root = h("div", {}, tools, this.#canvas, this.#info, this.#legend, this.#stale, this.#list);
  }

  /** The size of the space (a power of two covering every address the run used, at least 4 GiB). */
  setLimit(limit: number): void {
    this.#limit = limit;
    this.#win = { lo: 0, hi: limit };
  }

  /** Zooms to the used part of the space. */
  fitUsed(): void {
    const d = this.#domain;
    if (d === undefined) return;
    const all = [...d.everMapped.ranges(), ...d.allocated.ranges(), ...d.queued.ranges(), ...d.cached.ranges()];
    if (all.length === 0) return;
    const lo = Math.min(...all.map((r) => r.lo));
    const hi = Math.max(...all.map((r) => r.hi));
    const pad = Math.max(4096, (hi - lo) / 8);
    this.#setWindow(zoomWindow(lo - pad, hi + pad, this.#limit));
  }

  #setWindow(w: { lo: number; hi: number }): void {
    this.#win = w;
    this.render(this.#domain);
  }

  /** Draws a domain's state (undefined: no IOMMU domain in this run). */
  render(d: DomainState | undefined): void {
    this.#domain = d;
    const width = Math.max(200, Math.floor(this.#canvas.clientWidth || 800));
    if (this.#canvas.width !== width) this.#canvas.width = width;
    const ctx = this.#canvas.getContext("2d");
    const { lo, hi } = this.#win;
    this.#info.textContent = `${hex(lo)} – ${hex(hi)} (${bytes(hi - lo)} shown, ${((hi - lo) / 4096).toLocaleString("en")} granules)`;
    if (d === undefined) {
      ctx?.clearRect(0, 0, width, this.#canvas.height);
      this.#legend.textContent = "No IOMMU domain in this run (the device uses dma-direct or swiotlb).";
      this.#list.replaceChildren();
      this.#stale.textContent = "";
      return;
    }
    const px = pixelStates(d, lo, hi, width);
    if (ctx !== null) {
      for (let i = 0; i < width; ) {
        const s = px[i] ?? 0;
        let j = i + 1;
        while (j < width && px[j] === s) j++;
        ctx.fillStyle = STATE_COLOURS[s] ?? "#000";
        ctx.fillRect(i, 0, j - i, this.#canvas.height);
        i = j;
      }
    }
    const totals = stateTotals(d);
    this.#legend.replaceChildren(
      ...IOVA_STATE_NAMES.slice(1).map((name, i) => h("span", { class: "key" }, h("i", { style: `background:${STATE_COLOURS[i + 1] ?? ""}` }), `${name} ${bytes(totals[name] ?? 0)}`)),
    );
    const stale = segments(d, lo, hi).filter((s) => IOVA_STATE_NAMES[s.state] === "stale");
    this.#stale.textContent = stale.length === 0 ? "" : `Stale in the IOTLB (unmapped, still translated): ${stale.map((s) => `${hex(s.lo)}+${bytes(s.hi - s.lo)}`).join(", ")}`;
    this.#list.replaceChildren(
      ...segments(d, lo, hi, 60)
        .filter((s) => s.state !== 0)
        .map((s) => h("li", { "data-state": IOVA_STATE_NAMES[s.state] ?? "?", "data-lo": hex(s.lo), text: `${hex(s.lo)} – ${hex(s.hi)} ${bytes(s.hi - s.lo)} ${IOVA_STATE_NAMES[s.state] ?? "?"}` })),
    );
  }
}
