// @ts-check
/**
 * The grid's filter controls: a segmented region control and a status select, both labelled with the
 * counts the `fleet` view sends (each count under the other filters), and the runner search box.
 * This module only draws them; the page owns the filter state, the URL and the view key.
 */
import { count, el, setText } from "../../format.js";

export const STATUSES = ["online", "busy", "draining", "stale", "offline"];

/** @typedef {{q: string, region: string, status: string, source: string, page: number}} Filters */

/** @type {Map<string, HTMLButtonElement>} region -> its segment button */
const segments = new Map();

/** @param {Record<string, number>} counts */
function sum(counts) {
  let n = 0;
  for (const v of Object.values(counts || {})) n += v;
  return n;
}

/** The segment button of `region` (made on first sight). @param {HTMLElement} seg @param {string} region */
function segment(seg, region) {
  let button = segments.get(region);
  if (!button) {
    button = /** @type {HTMLButtonElement} */ (
      region === "" ? seg.querySelector('[data-region=""]') : el("button", "seg-btn")
    );
    if (region !== "") {
      button.type = "button";
      button.dataset.region = region;
      button.append(el("span", "seg-name", region), " ", el("span", "n"));
    }
    segments.set(region, button);
  }
  return button;
}

/**
 * Draw the filter controls for `filters` with the counts of `data` (a `fleet` view), or without counts.
 * @param {Filters} filters
 * @param {{counts?: Record<string, number>, regions?: Record<string, number>, sources?: Record<string, number>} | null} data
 */
export function drawFilters(filters, data) {
  const seg = /** @type {HTMLElement} */ (document.getElementById("f-region"));
  const regions = data?.regions || {};
  const names = Object.keys(regions)
    .filter((r) => r !== "")
    .sort();
  if (filters.region && !names.includes(filters.region)) names.push(filters.region);
  const wanted = ["", ...names];
  let cursor = seg.firstElementChild;
  for (const region of wanted) {
    const button = segment(seg, region);
    const n = region === "" ? (data ? sum(regions) : undefined) : regions[region] || 0;
    setText(/** @type {HTMLElement} */ (button.querySelector(".n")), count(n));
    const pressed = String(region === filters.region);
    if (button.getAttribute("aria-pressed") !== pressed) button.setAttribute("aria-pressed", pressed);
    if (button !== cursor) seg.insertBefore(button, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [region, button] of segments) {
    if (!wanted.includes(region)) {
      button.remove();
      segments.delete(region);
    }
  }

  const select = /** @type {HTMLSelectElement} */ (document.getElementById("f-status"));
  const counts = data?.counts || {};
  for (const option of select.options) {
    const status = option.value;
    const n = status === "" ? (data ? sum(counts) : undefined) : counts[status];
    const text = (status === "" ? "All statuses" : status) + (n === undefined ? "" : ` (${count(n)})`);
    setText(option, text);
  }
  if (select.value !== filters.status) select.value = filters.status;

  const sourceSelect = /** @type {HTMLSelectElement | null} */ (document.getElementById("f-source"));
  if (sourceSelect) {
    const sources = data?.sources || {};
    for (const option of sourceSelect.options) {
      const n = option.value === "" ? (data ? sum(sources) : undefined) : sources[option.value];
      const name = option.value === "" ? "All sources" : `${option.value} (${option.dataset.kind || "?"})`;
      setText(option, name + (n === undefined ? "" : ` (${count(n)})`));
    }
    if (sourceSelect.value !== filters.source) sourceSelect.value = filters.source;
  }

  const search = /** @type {HTMLInputElement} */ (document.getElementById("f-q"));
  if (document.activeElement !== search && search.value.trim() !== filters.q) search.value = filters.q;
  const clear = /** @type {HTMLElement} */ (document.getElementById("f-clear"));
  const any = Boolean(filters.q || filters.region || filters.status || filters.source);
  if (clear.hidden === any) clear.hidden = !any;
}
