// @ts-check
/**
 * Keyed table rows: the row of a key is created once and then reused, so a change to one
 * job or runner touches that row's cells only and every other row's DOM stays as it is.
 */
import { flash } from "../format.js";

/** @type {WeakMap<HTMLTableRowElement, string>} what each row was last filled from */
const rendered = new WeakMap();

/**
 * @typedef {{rows: Record<string, any>, order: string[]}} RowsData
 * @param {HTMLElement} tbody
 * @param {RowsData} data
 * @param {(row: any, key: string) => HTMLTableRowElement} create builds a row's cells (once)
 * @param {(tr: HTMLTableRowElement, row: any) => void} update fills the cells from the row data
 */
export function syncRows(tbody, data, create, update) {
  /** @type {Map<string, HTMLTableRowElement>} */
  const existing = new Map();
  for (const tr of /** @type {HTMLCollectionOf<HTMLTableRowElement>} */ (tbody.rows)) {
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
