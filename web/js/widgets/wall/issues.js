// @ts-check
/**
 * The wall's hot issues (`hot_issues` widget): the top few open alerts, critical first, each with its
 * severity in words, title, detail and how long it has been open. Rows are keyed by alert id.
 */
import { count, el, setText } from "../../format.js";
import { newRow, syncRows } from "../rows.js";
import { fillPill } from "../platform/severity.js";
import { fitRows } from "./fit.js";

/** At most this many issues on a wall (fewer when the screen has no room for them); the rest are counted. */
export const SHOWN = 6;

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const order = (data.order || []).slice(0, SHOWN);
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), { rows: data.rows, order }, create, update);
  root.dataset.total = String(Number(data.total ?? data.order.length));
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = order.length > 0;
  fit(root);
}

/** Show the rows that fit and say how many of how many are shown. @param {HTMLElement} root */
export function fit(root) {
  const shown = fitRows(root);
  const total = Number(root.dataset.total || 0);
  const text = !total ? "" : shown < total ? `${count(total)} open · top ${count(shown)} shown` : `${count(total)} open`;
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="count"]')), text);
}

function create() {
  const sev = el("td", "wall-c-sev");
  const pill = el("span", "wall-pill wall-pill-sm");
  const icon = el("span", "wall-pill-icon");
  icon.setAttribute("aria-hidden", "true");
  pill.append(icon, el("span", "wall-pill-text"));
  sev.append(pill);
  const what = el("td", "wall-c-what");
  what.append(el("div", "wall-line"), el("div", "wall-sub"));
  const since = el("td", "wall-c-age");
  const age = el("span");
  age.setAttribute("data-ago", "");
  since.append(age);
  return newRow(sev, what, since);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [sev, what, since] = tr.cells;
  fillPill(/** @type {HTMLElement} */ (sev.firstElementChild), row.severity);
  tr.dataset.severity = row.severity;
  setText(/** @type {HTMLElement} */ (what.firstElementChild), row.title);
  setText(/** @type {HTMLElement} */ (what.lastElementChild), row.detail || "");
  /** @type {HTMLElement} */ (since.firstElementChild).dataset.since = String(row.since);
}
