// @ts-check
/** Recent Failures: newest first, with the error's first line. */
import { setText } from "../format.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "./rows.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  return newRow(stackCell(), holderCell("chip"), holderCell("err"), ageCell(true));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  tr.dataset.job = row.job; // the page opens the job's details from here
  tr.tabIndex = 0;
  const [first, channel, error, when] = tr.cells;
  setText(first.querySelector(".id"), row.job);
  setText(first.querySelector(".small"), row.attempt > 1 ? `${row.fn} · attempt ${row.attempt}` : row.fn);
  setText(channel.firstElementChild, row.channel);
  setText(error.firstElementChild, row.error);
  error.title = row.error;
  /** @type {HTMLElement} */ (when.firstElementChild).dataset.since = String(row.at);
}
