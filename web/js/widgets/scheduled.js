// @ts-check
/** Scheduled Jobs: the next ten by run time, counting down in the browser. */
import { clockTime, count, setText } from "../format.js";
import { holderCell, newRow, stackCell, syncRows } from "./rows.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="total"]')), count(data.total));
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  return newRow(stackCell(""), stackCell(), holderCell("chip"));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  tr.dataset.job = row.job; // the page opens the job's details from here
  tr.tabIndex = 0;
  const [when, job, channel] = tr.cells;
  const countdown = /** @type {HTMLElement} */ (when.querySelector(".stack > span"));
  countdown.dataset.until = String(row.run_at);
  setText(when.querySelector(".small"), clockTime(row.run_at));
  setText(job.querySelector(".id"), row.job);
  setText(job.querySelector(".small"), row.attempt > 1 ? `${row.fn} · retry #${row.attempt}` : row.fn);
  setText(channel.firstElementChild, row.channel);
}
