// @ts-check
/**
 * Rows of the job table (docs/protocol.md 3.10, `jobs?…` and `find?q=…`): one keyed row per job, made once
 * and then updated cell by cell, so a job that changes keeps its `tr`. Rows are focusable; a click or Enter
 * opens the job's details (job-modal.js, loaded on first use).
 */
import { el, setText } from "../../format.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "../rows.js";
import { duration, jobModal, openJob, setStatus, setTime } from "./common.js";

/** The columns, in order: [key, header label, sort name or "" when the column does not sort]. */
export const COLUMNS = /** @type {const} */ ([
  ["job", "Job · correlation id", "id"],
  ["channel", "Channel", ""],
  ["fn", "Function", ""],
  ["status", "Status", ""],
  ["attempt", "Attempt", "attempt"],
  ["runner", "Runner", ""],
  ["queued", "Queued", "queued"],
  ["started", "Started", "started"],
  ["duration", "Duration", "duration"],
  ["updated", "Updated", "updated"],
  ["error", "Error", ""],
]);

/** @returns {HTMLTableRowElement} */
export function createRow() {
  const runner = el("td", "id small-id");
  const tr = newRow(
    stackCell(),
    holderCell("chip"),
    el("td", "fn"),
    holderCell("badge"),
    el("td", "num"),
    runner,
    ageCell(true),
    ageCell(true),
    ageCell(),
    ageCell(true),
    holderCell("err"),
  );
  tr.tabIndex = 0;
  tr.className = "job-row";
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
export function updateRow(tr, row) {
  const [job, channel, fn, status, attempt, runner, queued, started, took, updated, error] = tr.cells;
  setText(/** @type {Element} */ (job.querySelector(".id")), row.job);
  const cid = /** @type {HTMLElement} */ (job.querySelector(".small"));
  setText(cid, row.cid || "");
  cid.title = row.cid ? `correlation id ${row.cid}` : "";
  tr.setAttribute("aria-label", `job ${row.job}, ${row.status}, ${row.fn} on ${row.channel}: open details`);
  setText(/** @type {Element} */ (channel.firstElementChild), row.channel);
  setText(fn, row.fn);
  fn.title = row.fn;
  setStatus(/** @type {Element} */ (status.firstElementChild), row.status);
  setText(attempt, String(row.attempt ?? "–"));
  setText(runner, row.runner || "–");
  runner.title = row.runner || "";
  setTime(/** @type {HTMLElement} */ (queued.firstElementChild), { since: row.queued, ago: true });
  const startedSpan = /** @type {HTMLElement} */ (started.firstElementChild);
  if (row.status === "scheduled" && typeof row.run_at === "number") setTime(startedSpan, { until: row.run_at });
  else setTime(startedSpan, { since: row.started, ago: true });
  const tookSpan = /** @type {HTMLElement} */ (took.firstElementChild);
  if (row.status === "running" && typeof row.started === "number") {
    setTime(tookSpan, { since: row.started }); // ticks while it runs
    tookSpan.classList.add("live-dur");
  } else {
    setTime(tookSpan, {});
    tookSpan.classList.remove("live-dur");
    setText(tookSpan, duration(row.duration));
  }
  setTime(/** @type {HTMLElement} */ (updated.firstElementChild), { since: row.updated, ago: true });
  const err = /** @type {HTMLElement} */ (error.firstElementChild);
  setText(err, row.error || "");
  err.title = row.error || "";
}

/** Fill `tbody` from a `jobs` or `find` view's rows and order. @param {HTMLElement} tbody @param {any} data */
export function renderRows(tbody, data) {
  syncRows(tbody, { rows: data.rows || {}, order: data.order || [] }, createRow, updateRow);
}

/** Open a row's job on click or Enter (one listener for the whole body). @param {HTMLElement} tbody */
export function attachOpen(tbody) {
  /** @param {Event} event */
  const open = (event) => {
    const tr = /** @type {HTMLElement} */ (event.target).closest("tr[data-key]");
    if (tr instanceof HTMLElement && tr.dataset.key) openJob(tr.dataset.key);
  };
  // Fetch the modal's code when a row is first pointed at or focused, so the first open is quick.
  const warm = () => void jobModal();
  tbody.addEventListener("pointerover", warm, { once: true });
  tbody.addEventListener("focusin", warm, { once: true });
  tbody.addEventListener("click", open);
  tbody.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target instanceof HTMLTableRowElement) {
      event.preventDefault();
      open(event);
    }
  });
}
