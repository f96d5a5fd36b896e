// @ts-check
/** Runner Events (`runner_events`): joins, restarts, drains, stops and silences, newest first, streaming. */
import { clockTime, el, setText } from "../../format.js";
import { holderCell, newRow, stackCell, syncRows } from "../rows.js";

const SEVERITIES = new Set(["info", "warning", "error"]);

/** @param {HTMLElement} root @param {{rows: Record<string, any>, order: string[]}} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  const runner = el("td");
  const link = el("a", "id ev-runner");
  runner.append(link);
  return newRow(stackCell("ev-time"), runner, el("td", "ev-msg"), holderCell("badge"));
}

/** @param {HTMLTableRowElement} tr @param {{at: number, runner: string, message: string, severity: string}} row */
function update(tr, row) {
  const [time, runner, message, severity] = tr.cells;
  setText(/** @type {HTMLElement} */ (time.querySelector(".ev-time")), clockTime(row.at));
  const ago = /** @type {HTMLElement} */ (time.querySelector(".small"));
  ago.dataset.since = String(row.at);
  ago.setAttribute("data-ago", "");
  time.title = new Date(row.at * 1000).toLocaleString();
  const link = /** @type {HTMLAnchorElement} */ (runner.firstElementChild);
  setText(link, row.runner);
  link.href = `?q=${encodeURIComponent(row.runner)}`;
  link.dataset.runner = row.runner;
  link.title = `Show runner ${row.runner} in the grid`;
  setText(message, row.message);
  message.title = row.message;
  const sev = SEVERITIES.has(row.severity) ? row.severity : "info";
  const badge = /** @type {HTMLElement} */ (severity.firstElementChild);
  setText(badge, row.severity);
  badge.className = `badge sev-${sev}`;
}
