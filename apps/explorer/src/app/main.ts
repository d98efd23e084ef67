import { BUILTIN_SCENARIOS, parseScenario, readRunLog, ScenarioError, validateScenario, type Scenario } from "@dmasim/scenario";
import { describeEvent, failureIndices, fieldsOf, nextFailure, showField, str } from "../model/events.js";
import type { DomainState } from "../model/replay.js";
import { runInPage, runsOfLog, type RunView } from "../model/run.js";
import { routeOf } from "../model/topology.js";
import { chainIndices, renderChain } from "./chain-view.js";
import { CountsChart, IotlbChart, ModelledTimeChart, renderCompare } from "./charts.js";
import { h, hex, panel } from "./dom.js";
import { renderIotlb } from "./iotlb-view.js";
import { IovaView } from "./iova-view.js";
import { renderPageTable } from "./pt-view.js";
import { TimelineView } from "./timeline.js";
import { TopologyView } from "./topology-view.js";
import "./style.css";

/** What scenario.js may set before this script runs (`dmasim explore` writes it). */
interface Explore {
  readonly scenario?: unknown;
  readonly runLog?: unknown;
}

/** The run being shown and everything derived once per run. */
interface Shown {
  readonly runs: RunView[];
  a: number;
  b: number;
  step: number;
  failures: number[];
  chain: number[];
}

// When this script started: scenario.js (which may hold a whole run log) has been parsed by then.
/** The page: builds the views, then shows the given scenario or run log, or a built-in one. All state lives in this call. */
function explorer(): void {
  const scriptStart = performance.now();
  const given = (globalThis as { DMASIM_EXPLORE?: Explore }).DMASIM_EXPLORE ?? {};
  const app = document.getElementById("app") ?? document.body;
  app.replaceChildren();

  // ---- layout ----
  const scenarioSelect = h("select", { testid: "scenario-select" });
  const runSelect = h("select", { testid: "run-select", title: "run shown" });
  const compareSelect = h("select", { testid: "compare-select", title: "run compared" });
  const status = h("span", { class: "status", testid: "status" });
  const stepLabel = h("span", { class: "step", testid: "step" });
  const scrubber = h("input", { type: "range", min: 0, max: 0, value: 0, testid: "scrubber", class: "scrubber" });
  const button = (text: string, testid: string, title: string, fn: () => void): HTMLButtonElement => {
    const b = h("button", { text, testid, title, type: "button" });
    b.addEventListener("click", fn);
    return b;
  };
  const playButton = button("▶ play", "play", "play / pause (space)", () => {
    togglePlay();
  });
  const controls = h(
    "div",
    { class: "controls" },
    button("« first", "first", "first step (Home)", () => {
      go(0);
    }),
    button("◀ step", "prev", "previous event (← or k)", () => {
      go(stepNow() - 1);
    }),
    playButton,
    button("▶ step", "next", "next event (→ or j)", () => {
      go(stepNow() + 1);
    }),
    button("last »", "last", "last step (End)", () => {
      go(Number.MAX_SAFE_INTEGER);
    }),
    button("⚠ next failure", "next-failure", "next failed check, fault or stale read (f)", () => {
      jumpToFailure();
    }),
    scrubber,
    stepLabel,
  );
  const header = h("header", {}, h("h1", { text: "dmasim explorer" }), scenarioSelect, h("label", {}, "run ", runSelect), h("label", {}, "compare with ", compareSelect), status);
  const description = h("p", { class: "description", testid: "description" });

  const timeline = new TimelineView((i) => {
    go(i + 1);
  });
  const detail = h("div", { class: "detail", testid: "event-detail" });
  const checks = h("ol", { class: "checks", testid: "checks" });
  const topoView = new TopologyView();
  const iovaView = new IovaView();
  const domainSelect = h("select", { testid: "domain-select" });
  const chartA = new CountsChart("chart-a");
  const chartB = new CountsChart("chart-b");
  const counts = h("table", { class: "counts", testid: "counts" });

  const pTopo = panel("Topology and the route of the TLP at this step", "topology");
  pTopo.body.append(topoView.root);
  const pIova = panel("IOVA space", "iova");
  pIova.body.append(h("label", {}, "domain ", domainSelect), iovaView.root);
  const pPt = panel("IO page table", "page-table");
  const pTlb = panel("IOTLB", "iotlb");
  const iotlbChart = new IotlbChart();
  const tlbBody = h("div", {});
  pTlb.body.append(iotlbChart.root, tlbBody);
  const pCounts = panel("Events so far", "counts-panel");
  pCounts.body.append(counts);
  const pCharts = panel("Counters and modelled time: two runs side by side", "charts");
  const compareBody = h("div", {});
  const modelled = new ModelledTimeChart();
  pCharts.body.append(h("div", { class: "charts" }, chartA.root, chartB.root), modelled.root, compareBody);
  const pChain = panel("HMM / ODP pages and dma-buf buffers", "chain-panel");
  const editor = h("textarea", { testid: "editor", spellcheck: "false", rows: 18 });
  const editorErrors = h("ol", { class: "errors", testid: "editor-errors" });
  const pEdit = panel("Scenario (edit and run again)", "editor-panel");
  pEdit.body.append(
    editor,
    h(
      "div",
      {},
      button("Run", "run", "validate and run this scenario", () => {
        runEditor();
      }),
    ),
    editorErrors,
  );
  const pTimeline = panel("Timeline", "timeline-panel");
  pTimeline.body.append(timeline.root);
  const pDetail = panel("Event", "detail-panel");
  pDetail.body.append(detail);
  const pChecks = panel("Checks", "checks-panel");
  pChecks.body.append(checks);

  app.append(
    header,
    description,
    controls,
    h("main", {}, h("div", { class: "left" }, pTimeline.root, pDetail.root, pChecks.root), h("div", { class: "right" }, pTopo.root, pIova.root, pPt.root, pTlb.root, pCounts.root, pCharts.root, pChain.root, pEdit.root)),
  );

  // ---- state ----
  let shown: Shown | undefined;
  let scenario: Scenario | undefined;
  let playing: number | undefined;
  let shownDomain: number | undefined;

  function stepNow(): number {
    return shown?.step ?? 0;
  }

  function current(): RunView | undefined {
    return shown === undefined ? undefined : shown.runs[shown.a];
  }

  function setStatus(text: string): void {
    status.textContent = text;
  }

  function showErrors(e: unknown): void {
    const items = e instanceof ScenarioError ? e.issues.map((i) => `${i.path}: expected ${i.expected}${i.value === undefined ? " (missing)" : ""}`) : [e instanceof Error ? `${e.name}: ${e.message}` : String(e)];
    editorErrors.replaceChildren(...items.map((t) => h("li", { text: t })));
    setStatus(`${items.length} problem${items.length === 1 ? "" : "s"} in the scenario`);
  }

  function domainFor(run: RunView, s: ReturnType<RunView["replay"]["stateAt"]>): DomainState | undefined {
    if (shownDomain !== undefined && s.domains.has(shownDomain)) return s.domains.get(shownDomain);
    const first = Object.values(run.ctx.deviceDomain)[0];
    if (first !== undefined) return s.domains.get(first) ?? s.domains.values().next().value;
    return s.domains.values().next().value;
  }

  function renderStep(): void {
    const run = current();
    if (shown === undefined || run === undefined) return;
    const t0 = performance.now();
    const step = shown.step;
    const s = run.replay.stateAt(step);
    stepLabel.textContent = `${step} / ${run.events.length}`;
    scrubber.value = String(step);
    timeline.select(step - 1);
    const e = run.events[step - 1];
    detail.replaceChildren(
      ...(e === undefined
        ? [h("p", { text: "Before the first event." })]
        : [
            h("div", { class: "detail-line", testid: "event-line", text: `#${step} ${describeEvent(e)}` }),
            h("table", {}, ...[["type", e.type], ["t", `${e.t} ns`], ...fieldsOf(e)].map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: showField(k, v) })))),
          ]),
    );
    // The route of the latest TLP up to this step.
    const tlp = s.lastTlp >= 0 ? run.events[s.lastTlp] : undefined;
    if (tlp === undefined) topoView.setRoute([], "");
    else {
      const dom = run.ctx.deviceDomain[str(tlp, "device") ?? ""];
      const d = dom === undefined ? undefined : s.domains.get(dom);
      const route = routeOf(run.topology, tlp, (iova) => {
        const delta = d?.mapped.get(iova);
        return delta === undefined ? undefined : iova + delta;
      });
      topoView.setRoute(route, `#${s.lastTlp + 1} ${describeEvent(tlp)}`);
    }
    const d = domainFor(run, s);
    iovaView.render(d);
    renderPageTable(pPt.body, d, run.iommu?.levels ?? 4);
    renderIotlb(tlbBody, s, run.iommu?.iotlbCapacity);
    iotlbChart.setStep(step);
    counts.replaceChildren(
      h("tr", {}, h("th", { text: "event type" }), h("th", { text: "so far" }), h("th", { text: "in the run" })),
      ...[...s.counts.entries()].sort((x, y) => y[1] - x[1]).map(([k, v]) => h("tr", { "data-type": k }, h("td", { text: k }), h("td", { class: "num", text: v }), h("td", { class: "num", text: totalOf(run, k) }))),
    );
    // The device's view of a DMA address now: what its IOMMU domain translates it to, or stale.
    const deviceView = (addr: number): string => {
      if (d === undefined) return "direct";
      const delta = d.mapped.get(addr);
      const cached = d.cached.get(addr);
      if (cached !== undefined && cached !== delta) return `STALE → ${hex(addr + cached)}`;
      return delta === undefined ? "not mapped (faults)" : `→ phys ${hex(addr + delta)}`;
    };
    pChain.root.hidden = !renderChain(pChain.body, run.events, shown.chain, step, deviceView) && shown.chain.length === 0;
    chartA.setStep(step);
    const ms = performance.now() - t0;
    document.body.dataset.renderMs = ms.toFixed(2);
  }

  const totals = new WeakMap<RunView, Map<string, number>>();
  function totalOf(run: RunView, type: string): number {
    let m = totals.get(run);
    if (m === undefined) {
      m = new Map();
      for (const e of run.events) m.set(e.type, (m.get(e.type) ?? 0) + 1);
      totals.set(run, m);
    }
    return m.get(type) ?? 0;
  }

  function go(step: number): void {
    const run = current();
    if (shown === undefined || run === undefined) return;
    shown.step = Math.max(0, Math.min(run.events.length, step));
    renderStep();
  }

  function jumpToFailure(): void {
    if (shown === undefined) return;
    const i = nextFailure(shown.failures, shown.step);
    if (i >= 0) go(i + 1);
    else setStatus("no failure after this step");
  }

  function togglePlay(): void {
    if (playing !== undefined) {
      clearInterval(playing);
      playing = undefined;
      playButton.textContent = "▶ play";
      return;
    }
    playButton.textContent = "⏸ pause";
    playing = window.setInterval(() => {
      const run = current();
      if (run === undefined || stepNow() >= run.events.length) {
        togglePlay();
        return;
      }
      go(stepNow() + 1);
    }, 60);
  }

  function selectRun(a: number): void {
    if (shown === undefined) return;
    shown.a = a;
    const run = shown.runs[a];
    if (run === undefined) return;
    shown.failures = [...new Set([...failureIndices(run.events), ...run.replay.staleTlps])].sort((x, y) => x - y);
    shown.chain = chainIndices(run.events);
    shown.step = 0;
    scrubber.max = String(run.events.length);
    timeline.setEvents(run.events, shown.failures);
    topoView.setTopology(run.topology);
    const end = run.replay.stateAt(run.events.length);
    let top = 2 ** 32;
    for (const dom of end.domains.values()) for (const r of dom.everMapped.ranges()) while (r.hi > top) top *= 2;
    iovaView.setLimit(top);
    const ids = [...end.domains.keys()];
    domainSelect.replaceChildren(...ids.map((id) => h("option", { value: id, text: `domain ${id}${Object.entries(run.ctx.deviceDomain).some(([, v]) => v === id) ? ` (${Object.entries(run.ctx.deviceDomain).filter(([, v]) => v === id).map(([k]) => k).join(", ")})` : ""}` })));
    shownDomain = ids[0];
    checks.replaceChildren(...(run.result?.checks ?? []).map((c) => h("li", { class: c.ok ? "ok" : "failed", "data-ok": c.ok, text: `${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}` })));
    renderCharts();
    const width = Math.max(300, pCharts.body.clientWidth / 2 - 16);
    chartA.setRun(run, width);
    iotlbChart.setRun(run, Math.max(300, pTlb.body.clientWidth - 16));
    iovaView.render(end.domains.get(shownDomain ?? -1));
    iovaView.fitUsed();
    setStatus(`${run.label}: ${run.events.length.toLocaleString("en")} events${run.droppedEvents > 0 ? ` (${run.droppedEvents} dropped)` : ""}, ${shown.failures.length} failures`);
    renderStep();
  }

  function renderCharts(): void {
    if (shown === undefined) return;
    const width = Math.max(300, pCharts.body.clientWidth / 2 - 16);
    chartB.setRun(shown.runs[shown.b], width);
    renderCompare(compareBody, shown.runs, shown.a, shown.b);
  }

  function show(runs: RunView[], s: Scenario): void {
    modelled.setRuns(runs, Math.max(300, pCharts.body.clientWidth - 16));
    scenario = s;
    editor.value = JSON.stringify(s, null, 2);
    description.textContent = `${s.name}: ${s.description}`;
    shown = { runs, a: 0, b: Math.min(1, runs.length - 1), step: 0, failures: [], chain: [] };
    const opts = (sel: HTMLSelectElement, pick: number): void => {
      sel.replaceChildren(...runs.map((r, i) => h("option", { value: i, text: r.label, selected: i === pick })));
    };
    opts(runSelect, shown.a);
    opts(compareSelect, shown.b);
    selectRun(0);
    // Marks for tests and the benchmark: the page has rendered a run (how many so far, and when the first).
    document.body.dataset.firstRenderMs ??= performance.now().toFixed(1);
    document.body.dataset.scriptStartMs ??= scriptStart.toFixed(1);
    document.body.dataset.shown = String(Number(document.body.dataset.shown ?? "0") + 1);
  }

  function runAndShow(s: Scenario): void {
    if (playing !== undefined) togglePlay();
    setStatus(`running ${s.name}…`);
    editorErrors.replaceChildren();
    // Let the status paint before the (synchronous) model run.
    window.setTimeout(() => {
      try {
        const { runs } = runInPage(s);
        show(runs, s);
      } catch (e) {
        editor.value = JSON.stringify(s, null, 2);
        showErrors(e);
      }
    }, 0);
  }

  function runEditor(): void {
    try {
      runAndShow(parseScenario(editor.value, "editor"));
    } catch (e) {
      showErrors(e);
    }
  }

  // ---- wiring ----
  runSelect.addEventListener("change", () => {
    selectRun(Number(runSelect.value));
  });
  compareSelect.addEventListener("change", () => {
    if (shown === undefined) return;
    shown.b = Number(compareSelect.value);
    renderCharts();
  });
  domainSelect.addEventListener("change", () => {
    shownDomain = Number(domainSelect.value);
    renderStep();
  });
  scrubber.addEventListener("input", () => {
    go(Number(scrubber.value));
  });
  scenarioSelect.addEventListener("change", () => {
    const v = scenarioSelect.value;
    const s = v === "" ? scenario : BUILTIN_SCENARIOS.find((x) => x.name === v);
    if (s === undefined) return;
    if (v !== "") history.replaceState(null, "", `#${v}`);
    runAndShow(s);
  });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target as HTMLElement;
    if (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT") return;
    const keys: Record<string, () => void> = {
      ArrowRight: () => {
        go(stepNow() + 1);
      },
      ArrowDown: () => {
        go(stepNow() + 1);
      },
      j: () => {
        go(stepNow() + 1);
      },
      ArrowLeft: () => {
        go(stepNow() - 1);
      },
      ArrowUp: () => {
        go(stepNow() - 1);
      },
      k: () => {
        go(stepNow() - 1);
      },
      Home: () => {
        go(0);
      },
      End: () => {
        go(Number.MAX_SAFE_INTEGER);
      },
      " ": togglePlay,
      f: jumpToFailure,
    };
    const fn = keys[ev.key];
    if (fn === undefined) return;
    ev.preventDefault();
    fn();
  });

  // ---- start ----
  function start(): void {
    const fromHash = decodeURIComponent(location.hash.slice(1));
    const builtin = BUILTIN_SCENARIOS.find((s) => s.name === fromHash);
    let first: Scenario | undefined;
    let log: RunView[] | undefined;
    try {
      if (given.runLog !== undefined && given.runLog !== null && builtin === undefined) {
        const l = readRunLog(given.runLog);
        log = runsOfLog(l);
        first = l.scenario;
      } else if (given.scenario !== undefined && given.scenario !== null && builtin === undefined) first = validateScenario(given.scenario, "scenario.js");
    } catch (e) {
      showErrors(e);
    }
    const own = first === undefined ? [] : [h("option", { value: "", text: `${first.name} (given)` })];
    scenarioSelect.replaceChildren(...own, ...BUILTIN_SCENARIOS.map((s) => h("option", { value: s.name, text: s.name, selected: s === builtin })));
    const s = builtin ?? first ?? BUILTIN_SCENARIOS.find((x) => x.name === "p2p-acs-redirect") ?? BUILTIN_SCENARIOS[0];
    if (s === undefined) return;
    scenarioSelect.value = s === first ? "" : s.name;
    if (log !== undefined && s === first) {
      show(log, s);
    } else runAndShow(s);
  }

  start();
}

explorer();
