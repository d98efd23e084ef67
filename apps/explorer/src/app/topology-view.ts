import type { Topology, TopoNode } from "../model/topology.js";
import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 112;
const H = 34;
const GX = 14;
const GY = 30;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Readonly<Record<string, string | number>>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function label(n: TopoNode): string {
  if (n.kind === "endpoint") return n.id.replace(/^0000:/, "");
  if (n.kind === "port") return n.id.split(".").pop() ?? n.id;
  return n.id;
}

/**
 * The PCIe tree as SVG: RAM and the IOMMU on top, host bridges, root ports, switches and their ports,
 * endpoints at the bottom; ports with ACS controls show them. The route of the TLP at the current step
 * is highlighted, node by node and link by link.
 */
export class TopologyView {
  readonly root: HTMLElement;
  readonly #svg: SVGSVGElement;
  readonly #routeText: HTMLElement;
  #boxes = new Map<string, SVGGElement>();
  #links = new Map<string, SVGLineElement>();

  constructor() {
    this.#svg = svg("svg", { class: "topo" });
    this.#routeText = h("div", { class: "route", testid: "route" });
    this.root = h("div", {}, this.#svg, this.#routeText);
  }

  /** Lays out a topology. */
  setTopology(topo: Topology): void {
    this.#svg.replaceChildren();
    this.#boxes = new Map();
    this.#links = new Map();
    const children = new Map<string, TopoNode[]>();
    for (const n of topo.nodes) if (n.parent !== undefined) children.set(n.parent, [...(children.get(n.parent) ?? []), n]);
    const pos = new Map<string, { x: number; y: number }>();
    let col = 0;
    const place = (n: TopoNode, depth: number): number => {
      const kids = children.get(n.id) ?? [];
      let x: number;
      if (kids.length === 0) x = col++;
      else {
        const xs = kids.map((k) => place(k, depth + 1));
        x = ((xs[0] ?? 0) + (xs[xs.length - 1] ?? 0)) / 2;
      }
      pos.set(n.id, { x, y: depth });
      return x;
    };
    for (const hb of topo.nodes.filter((n) => n.kind === "host-bridge")) place(hb, 1);
    const hbX = topo.nodes.filter((n) => n.kind === "host-bridge").map((n) => pos.get(n.id)?.x ?? 0);
    const mid = hbX.length === 0 ? 0 : (Math.min(...hbX) + Math.max(...hbX)) / 2;
    pos.set("RAM", { x: mid - 0.6, y: 0 });
    if (topo.nodes.some((n) => n.id === "IOMMU")) pos.set("IOMMU", { x: mid + 0.6, y: 0 });
    const minX = Math.min(...[...pos.values()].map((p) => p.x));
    const px = (id: string): { x: number; y: number } => {
      const p = pos.get(id) ?? { x: 0, y: 0 };
      return { x: (p.x - minX) * (W + GX) + 4, y: p.y * (H + GY) + 4 };
    };
    const maxY = Math.max(...[...pos.values()].map((p) => p.y));
    this.#svg.setAttribute("width", String((Math.max(...[...pos.values()].map((p) => p.x)) - minX + 1) * (W + GX) + 8));
    this.#svg.setAttribute("height", String((maxY + 1) * (H + GY) + 8));
    const link = (a: string, b: string): void => {
      const pa = px(a);
      const pb = px(b);
      const line = svg("line", { x1: pa.x + W / 2, y1: pa.y + H / 2, x2: pb.x + W / 2, y2: pb.y + H / 2, class: "link" });
      this.#svg.append(line);
      this.#links.set(`${a}|${b}`, line);
      this.#links.set(`${b}|${a}`, line);
    };
    for (const n of topo.nodes) if (n.parent !== undefined) link(n.id, n.parent);
    for (const n of topo.nodes.filter((x) => x.kind === "host-bridge")) {
      link(n.id, "RAM");
      if (pos.has("IOMMU")) link(n.id, "IOMMU");
    }
    if (pos.has("IOMMU")) link("IOMMU", "RAM");
    for (const n of topo.nodes) {
      const p = px(n.id);
      const g = svg("g", { class: `node kind-${n.kind}`, "data-testid": "topo-node", "data-id": n.id, transform: `translate(${p.x},${p.y})` });
      g.append(svg("rect", { width: W, height: H, rx: 5 }));
      const t1 = svg("text", { x: W / 2, y: n.acs === "" ? 21 : 15, "text-anchor": "middle" });
      t1.textContent = label(n);
      g.append(t1);
      if (n.acs !== "") {
        const t2 = svg("text", { x: W / 2, y: 28, "text-anchor": "middle", class: "acs" });
        t2.textContent = `ACS ${n.acs}`;
        g.append(t2);
      }
      const title = svg("title", {});
      title.textContent = `${n.kind} ${n.id}${n.bars.map((b) => `\nBAR bus 0x${b.bus.toString(16)} (${b.size} bytes)`).join("")}`;
      g.append(title);
      this.#svg.append(g);
      this.#boxes.set(n.id, g);
    }
  }

  /** Highlights a route (node ids in order); empty clears it. `what` says which TLP it is. */
  setRoute(route: readonly string[], what: string): void {
    for (const g of this.#boxes.values()) g.classList.remove("on-route");
    for (const l of this.#links.values()) l.classList.remove("on-route");
    route.forEach((id, i) => {
      this.#boxes.get(id)?.classList.add("on-route");
      const next = route[i + 1];
      if (next !== undefined) this.#links.get(`${id}|${next}`)?.classList.add("on-route");
    });
    for (const [id, g] of this.#boxes) g.dataset.onRoute = String(route.includes(id));
    this.#routeText.textContent = route.length === 0 ? "no TLP yet" : `${what}: ${route.join(" → ")}`;
  }
}
