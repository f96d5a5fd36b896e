// @ts-check
/** Live Jobs: running (longest first) then queued (oldest first); ages tick in the browser. */
import { count, el, setText } from "../format.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "./rows.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const tbody = /** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]'));
  syncRows(tbody, data, create, update);
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="running"]')), count(data.running));
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="queued"]')), count(data.queued));
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
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
