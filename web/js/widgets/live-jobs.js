// @ts-check
/**
 * Live Jobs: running (longest first) then queued (oldest first); ages tick in the browser. The rows carry
 * their `place` rather than the widget an `order` list, so a job starting or ending patches its own row only.
 */
import { count, el, setText } from "../format.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "./rows.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const tbody = /** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]'));
  const order = Object.keys(data.rows).sort((a, b) => rank(data.rows[a]) - rank(data.rows[b]));
  syncRows(tbody, { rows: data.rows, order }, create, update);
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="running"]')), count(data.running));
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="queued"]')), count(data.queued));
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = order.length > 0;
}

/** Running rows before queued ones, each part by place (the order the jobs entered it). @param {any} row */
function rank(row) {
  return (row.status === "running" ? 0 : Number.MAX_SAFE_INTEGER / 2) + (row.place || 0);
}

function create() {
  return newRow(stackCell(), el("td"), holderCell("badge"), ageCell());
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  tr.dataset.job = row.job; // the page opens the job's details from here
  tr.tabIndex = 0;
  const [first, fn, status, age] = tr.cells;
  setText(first.querySelector(".id"), row.job);
  setText(first.querySelector(".small"), row.channel + (row.runner ? ` · ${row.runner}` : ""));
  setText(fn, row.fn);
  fn.title = row.fn;
  const badge = status.firstElementChild;
  setText(badge, row.attempt > 1 ? `${row.status} #${row.attempt}` : row.status);
  badge.className = `badge ${row.status}`;
  const span = /** @type {HTMLElement} */ (age.firstElementChild);
  if (row.since !== undefined) span.dataset.since = String(row.since);
  else delete span.dataset.since;
}
