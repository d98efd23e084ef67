import { describeEvent, type LogEvent } from "../model/events.js";
import { scrollToRow, visibleRows } from "../model/series.js";
import { h } from "./dom.js";

const ROW = 20;

/**
 * The list of every event of a run, virtualised: only the rows in view (and a few more) exist in the
 * DOM, so 100 k events cost what 40 do. Clicking a row selects it; the selected row is the event the
 * step just applied.
 */
export class TimelineView {
  readonly root: HTMLElement;
  readonly #viewport: HTMLElement;
  readonly #spacer: HTMLElement;
  readonly #rows: HTMLElement;
  #events: readonly LogEvent[] = [];
  #failures = new Set<number>();
  #selected = -1;
  readonly #onPick: (index: number) => void;

  constructor(onPick: (index: number) => void) {
    this.#onPick = onPick;
    this.#rows = h("div", { class: "tl-rows" });
    this.#spacer = h("div", { class: "tl-spacer" }, this.#rows);
    this.#viewport = h("div", { class: "tl-viewport", testid: "timeline", tabindex: 0 }, this.#spacer);
    this.root = this.#viewport;
    this.#viewport.addEventListener("scroll", () => {
      this.#paint();
    });
    this.#rows.addEventListener("click", (ev) => {
      const row = (ev.target as HTMLElement).closest<HTMLElement>("[data-index]");
      if (row !== null) this.#onPick(Number(row.dataset.index));
    });
  }

  /** Shows a run's events; `failures` are marked. */
  setEvents(events: readonly LogEvent[], failures: readonly number[]): void {
    this.#events = events;
    this.#failures = new Set(failures);
    this.#spacer.style.height = `${events.length * ROW}px`;
    this.#viewport.scrollTop = 0;
    this.#paint();
  }

  /** Marks event `index` selected and scrolls it into view. */
  select(index: number): void {
    this.#selected = index;
    const vh = this.#viewport.clientHeight || 400;
    const top = scrollToRow(this.#viewport.scrollTop, vh, ROW, Math.max(0, index));
    if (top !== this.#viewport.scrollTop) this.#viewport.scrollTop = top;
    this.#paint();
  }

  #paint(): void {
    const vh = this.#viewport.clientHeight || 400;
    const { from, to } = visibleRows(this.#viewport.scrollTop, vh, ROW, this.#events.length);
    this.#rows.style.transform = `translateY(${from * ROW}px)`;
    const frag = document.createDocumentFragment();
    for (let i = from; i < to; i++) {
      const e = this.#events[i];
      if (e === undefined) continue;
      const cls = ["tl-row", i === this.#selected ? "selected" : "", this.#failures.has(i) ? "failure" : "", `type-${e.type.replace(/[^a-z0-9]/gi, "-")}`].filter((c) => c !== "").join(" ");
      frag.append(
        h("div", { class: cls, "data-index": i, testid: "timeline-row" }, h("span", { class: "tl-i", text: i + 1 }), h("span", { class: "tl-t", text: `${(e.t / 1000).toFixed(1)}µs` }), h("span", { class: "tl-d", text: describeEvent(e) })),
      );
    }
    this.#rows.replaceChildren(frag);
  }
}
