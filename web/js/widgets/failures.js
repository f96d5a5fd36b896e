// @ts-check
/**
 * Recent Failures: newest first, with the error's first line, and the row's actions beside it (the mockup's
 * action button): Details opens the job, Retry queues it again while it is still failed for good.
 */
import { can } from "../commands.js";
import { el, setText } from "../format.js";
import { gate, regate } from "../gate.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "./rows.js";

const RETRYABLE = new Set(["failed", "canceled", "expired"]);

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  const actions = el("td", "row-actions");
  const details = /** @type {HTMLButtonElement} */ (el("button", "btn btn-sm", "Details"));
  details.type = "button";
  details.dataset.op = "details";
  const retry = /** @type {HTMLButtonElement} */ (el("button", "btn btn-sm", "Retry"));
  retry.type = "button";
  retry.dataset.op = "retry";
  actions.append(details, " ", retry);
  const tr = newRow(stackCell(), holderCell("chip"), holderCell("err"), ageCell(true), actions);
  gate(retry, () => {
    const verdict = can("job.retry", tr.dataset.key || "");
    if (!verdict.ok) return verdict;
    const now = tr.dataset.now || "";
    if (!RETRYABLE.has(now)) {
      return { ok: false, reason: now ? `it is ${now} now` : "jobpulse no longer holds this job", two_phase: false };
    }
    return verdict;
  });
  return tr;
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
  const now = row.now || "";
  if (tr.dataset.now !== now) {
    tr.dataset.now = now;
    const retry = /** @type {HTMLElement | null} */ (tr.querySelector('[data-op="retry"]'));
    if (retry) {
      retry.setAttribute("aria-label", `Retry job ${row.job}`);
      regate(retry);
    }
  }
  /** @type {HTMLElement} */ (tr.querySelector('[data-op="details"]')).setAttribute("aria-label", `Details of job ${row.job}`);
}
