// @ts-check
/**
 * Keyed table rows: the row of a key is created once and then reused, so a change to one
 * job or runner touches that row's cells only and every other row's DOM stays as it is.
 */
import { el, flash } from "../format.js";

/** @type {WeakMap<HTMLTableRowElement, string>} what each row was last filled from */
const rendered = new WeakMap();

/**
 * @typedef {{rows: Record<string, any>, order: string[]}} RowsData
 * @param {HTMLTableSectionElement | HTMLElement} tbody
 * @param {RowsData} data
 * @param {(row: any, key: string) => HTMLTableRowElement} create builds a row's cells (once)
 * @param {(tr: HTMLTableRowElement, row: any) => void} update fills the cells from the row data
 */
export function syncRows(tbody, data, create, update) {
  /** @type {Map<string, HTMLTableRowElement>} */
  const existing = new Map();
  for (const tr of /** @type {HTMLCollectionOf<HTMLTableRowElement>} */ (/** @type {HTMLTableSectionElement} */ (tbody).rows)) {
    existing.set(tr.dataset.key || "", tr);
  }
  const order = data.order || [];
  let cursor = tbody.firstElementChild;
  for (const key of order) {
    const row = data.rows[key];
    if (!row) continue;
    let tr = existing.get(key);
    const json = JSON.stringify(row);
    if (!tr) {
      tr = create(row, key);
      tr.dataset.key = key;
      update(tr, row);
      rendered.set(tr, json);
      flash(tr);
    } else {
      existing.delete(key);
      if (rendered.get(tr) !== json) {
        update(tr, row);
        rendered.set(tr, json);
      }
    }
    if (tr !== cursor) tbody.insertBefore(tr, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const tr of existing.values()) tr.remove();
}

/** A cell holding two stacked lines: the first with `firstClass` (an id, say), the second small. */
export function stackCell(firstClass = "id") {
  const td = el("td");
  const stack = el("div", "stack");
  stack.append(el("span", firstClass), el("span", "small"));
  td.append(stack);
  return td;
}

/** A cell holding one element of `tag` with `className` (a badge, a chip, an error line). */
export function holderCell(className, tag = "span") {
  const td = el("td");
  td.append(el(tag, className));
  return td;
}

/** A right-aligned cell whose span ticks an age; `ago` appends " ago". */
export function ageCell(ago = false) {
  const td = el("td", "num");
  const span = el("span");
  if (ago) span.setAttribute("data-ago", "");
  td.append(span);
  return td;
}

/** A new table row made of the given cells. @param {HTMLElement[]} cells */
export function newRow(...cells) {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr"));
  tr.append(...cells);
  return tr;
}
