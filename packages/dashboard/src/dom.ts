// Small DOM helpers: every text goes in through textContent, never as HTML.

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as T;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  attributes: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (text !== undefined) element.textContent = text;
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

/** A table row of cells; a cell given as a Node is put in as is. */
export function row(cells: (string | Node)[], attributes: Record<string, string> = {}): HTMLTableRowElement {
  const tr = el("tr", undefined, attributes);
  for (const cell of cells) {
    const td = el("td");
    if (typeof cell === "string") td.textContent = cell;
    else td.append(cell);
    tr.append(td);
  }
  return tr;
}

/**
 * Replaces the rows of table #id; each cell gets its column's heading as
 * data-label, which narrow screens show beside the value (style.css).
 */
export function fill(id: string, rows: HTMLTableRowElement[]): void {
  const table = $<HTMLTableElement>(id);
  const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent ?? "");
  for (const tr of rows) {
    [...tr.cells].forEach((cell, i) => {
      cell.dataset.label = headings[i] ?? "";
    });
  }
  table.tBodies[0]?.replaceChildren(...rows);
}

export function ago(ms: number): string {
  if (ms < 1000) return "now";
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}

export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}
