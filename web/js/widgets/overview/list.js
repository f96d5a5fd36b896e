// @ts-check
/**
 * Keyed lists outside tables (hot issues, backlogs): like rows.js syncRows, the element of a key is made
 * once and reused, so an alert that persists is the same DOM node and only its changed text is touched.
 */
import { flash } from "../../format.js";

/** @type {WeakMap<Element, string>} what each item was last filled from */
const rendered = new WeakMap();

/**
 * @param {HTMLElement} container its element children carry `data-key`
 * @param {{rows: Record<string, any>, order: string[]}} data
 * @param {(row: any, key: string) => HTMLElement} create builds an item (once)
 * @param {(item: HTMLElement, row: any, key: string) => void} update fills the item from the row data
 */
export function syncList(container, data, create, update) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of container.children) {
    const item = /** @type {HTMLElement} */ (child);
    existing.set(item.dataset.key || "", item);
  }
  let cursor = container.firstElementChild;
  for (const key of data.order || []) {
    const row = data.rows[key];
    if (!row) continue;
    let item = existing.get(key);
    const json = JSON.stringify(row);
    if (!item) {
      item = create(row, key);
      item.dataset.key = key;
      update(item, row, key);
      rendered.set(item, json);
      flash(item);
    } else {
      existing.delete(key);
      if (rendered.get(item) !== json) {
        update(item, row, key);
        rendered.set(item, json);
      }
    }
    if (item !== cursor) container.insertBefore(item, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const item of existing.values()) item.remove();
}

/** The element of `root` marked `data-f="name"` (format.js's, for the overview's modules that import it here). */
export { field } from "../../format.js";

/** Set an attribute only when it changed. @param {Element} node @param {string} name @param {string} value */
export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}
