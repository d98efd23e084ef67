/** A tiny element builder: tag, attributes (`testid` becomes data-testid), children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Readonly<Record<string, string | number | boolean | undefined>> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    // data-* attributes keep booleans as text ("true"/"false"); other attributes are present or absent.
    if (k.startsWith("data-")) el.setAttribute(k, String(v));
    else if (v === false) continue;
    else if (k === "testid") el.dataset.testid = String(v);
    else if (k === "class") el.className = String(v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) el.append(c);
  return el;
}

/** A titled panel with a body element to render into. */
export function panel(title: string, testid: string): { root: HTMLElement; body: HTMLElement } {
  const body = h("div", { class: "panel-body" });
  const root = h("section", { class: "panel", testid }, h("h2", { text: title }), body);
  return { root, body };
}

/** Hex for an address. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Bytes in the largest unit that keeps an integer. */
export function bytes(n: number): string {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  return `${n} B`;
}
