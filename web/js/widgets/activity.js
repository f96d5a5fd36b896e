// @ts-check
/**
 * Recent Maintenance Activity (`activity`, the last 50 operator commands, newest first): one keyed row per
 * audit entry, made once and updated in place, so a new command adds one row and touches no other. Shared
 * with the audit page, which renders the same cells for its own rows (`fillCells`).
 *
 * A row: {ts, user, role, action, target, ok, result, count, message, error}. The result says done,
 * preview or refused in words, with an icon, as well as in colour.
 */
import { clockTime, count, el, setText } from "../format.js";
import { newRow, syncRows } from "./rows.js";

/**
 * @typedef {{ts: number, user?: string, role?: string, auth?: string, action?: string, phase?: string,
 *   target?: string, ok?: boolean, result?: string, count?: number | null, message?: string,
 *   error?: string | {code?: string, message?: string} | null, ms?: number, source?: string}} Entry
 */

/** @param {HTMLElement} root @param {{rows: Record<string, Entry>, order: string[]}} data */
export function render(root, data) {
  const body = /** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]'));
  syncRows(body, data, create, update);
  const any = (data.order || []).length > 0;
  const table = /** @type {HTMLElement | null} */ (root.querySelector('[data-f="table"]'));
  if (table) table.hidden = !any;
  const empty = /** @type {HTMLElement | null} */ (root.querySelector('[data-f="empty"]'));
  if (empty) empty.hidden = any;
}

/** The cells of an activity row (the audit page adds its own). */
export function create() {
  const result = el("td", "c-result");
  result.append(el("span", "badge"));
  return newRow(el("td", "c-time"), el("td", "c-action mono"), el("td", "c-user"), el("td", "c-target mono"), el("td", "num c-count"), result, el("td", "c-msg"));
}

/** @param {HTMLTableRowElement} tr @param {Entry} row */
export function update(tr, row) {
  fillCells([...tr.cells], row);
}

/** What an entry's error says, whichever shape it came in. @param {Entry} row */
export function errorText(row) {
  const error = row.error;
  if (!error) return "";
  if (typeof error === "string") return error;
  return [error.code, error.message].filter(Boolean).join(": ");
}

/**
 * The outcome in words: done, preview, refused (with the error code when there is one).
 * @param {Entry} row @returns {{word: string, kind: string, icon: string}}
 */
export function outcome(row) {
  if (row.ok === false) {
    const error = row.error;
    const code = typeof error === "object" && error ? error.code : row.result && row.result !== "refused" ? row.result : "";
    return { word: code ? `refused: ${code}` : "refused", kind: "failed", icon: "✕" };
  }
  const word = row.result || row.phase || "done";
  return word === "preview" ? { word, kind: "scheduled", icon: "…" } : { word, kind: "completed", icon: "✓" };
}

/**
 * Fill time, action, operator, target, count, result and message cells from an entry.
 * @param {HTMLTableCellElement[]} cells @param {Entry} row
 */
export function fillCells(cells, row) {
  const [time, action, user, target, n, result, message] = cells;
  setText(time, typeof row.ts === "number" ? clockTime(row.ts) : "–");
  time.title = typeof row.ts === "number" ? new Date(row.ts * 1000).toLocaleString() : "";
  setText(action, row.action || "–");
  setText(user, row.user ? `${row.user}${row.role ? ` · ${row.role}` : ""}` : "–");
  setText(target, row.target || "–");
  target.title = row.target || "";
  setText(n, typeof row.count === "number" ? count(row.count) : "–");
  const { word, kind, icon } = outcome(row);
  const badge = /** @type {HTMLElement} */ (result.firstElementChild);
  setText(badge, `${icon} ${word}`);
  const cls = `badge ${kind}`;
  if (badge.className !== cls) badge.className = cls;
  const text = row.ok === false ? errorText(row) || row.message || "" : row.message || "";
  setText(message, text);
  message.title = text;
}
