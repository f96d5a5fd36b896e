// @ts-check
/**
 * Service logs (`logs`): jobpulse's own warnings and errors, newest first, as keyed table rows: clock time
 * and ticking age, level in words, logger, message (full text on hover, and on expand). A level and a text
 * filter apply to the rows as they stream in; `setFilter` re-applies them to the data already held.
 */
import { clockTime, count, el, setText } from "../../format.js";
import { holderCell, newRow, stackCell, syncRows } from "../rows.js";
import { field, setAttr } from "./list.js";

/** @typedef {{level: string, q: string}} LogFilter */
/** @type {LogFilter} */
let filter = { level: "all", q: "" };
/** @type {WeakMap<HTMLElement, any>} root -> the data it last rendered */
const last = new WeakMap();
/** @type {Set<HTMLElement>} */
const roots = new Set();

/** Apply a new filter to every logs table, with the data it holds. @param {LogFilter} next */
export function setFilter(next) {
  filter = next;
  for (const root of roots) {
    const data = last.get(root);
    if (data) render(root, data);
  }
}

/** @param {{level: string, logger: string, message: string}} row */
function matches(row) {
  if (filter.level === "warning" && row.level !== "warning") return false;
  if (filter.level === "error" && row.level !== "error" && row.level !== "critical") return false;
  if (!filter.q) return true;
  const needle = filter.q.toLowerCase();
  return row.message.toLowerCase().includes(needle) || row.logger.toLowerCase().includes(needle);
}

/** @param {HTMLElement} root @param {{rows: Record<string, any>, order: string[], total: number}} data */
export function render(root, data) {
  roots.add(root);
  last.set(root, data);
  const order = data.order.filter((key) => data.rows[key] && matches(data.rows[key]));
  syncRows(field(root, "rows"), { rows: data.rows, order }, create, update);
  const filtered = filter.level !== "all" || filter.q !== "";
  setText(
    field(root, "summary"),
    filtered
      ? `${count(order.length)} of the latest ${count(data.order.length)} match`
      : `latest ${count(data.order.length)} of ${count(data.total)} kept`,
  );
  const empty = field(root, "empty");
  empty.hidden = order.length > 0;
  setText(
    empty,
    data.order.length ? "No log rows match the filter." : "No warnings or errors: jobpulse is running clean.",
  );
}

function create() {
  const message = /** @type {HTMLButtonElement} */ (el("button", "msg"));
  message.type = "button";
  message.setAttribute("aria-expanded", "false");
  message.addEventListener("click", () => {
    message.setAttribute("aria-expanded", String(message.getAttribute("aria-expanded") !== "true"));
  });
  const cell = el("td", "msg-cell");
  cell.append(message);
  const time = stackCell("time");
  time.querySelector(".small")?.setAttribute("data-ago", "");
  return newRow(time, holderCell("badge"), el("td", "logger"), cell);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [time, level, logger, msg] = tr.cells;
  setText(/** @type {HTMLElement} */ (time.querySelector(".time")), clockTime(row.at));
  const age = /** @type {HTMLElement} */ (time.querySelector(".small"));
  age.dataset.since = String(row.at);
  const badge = /** @type {HTMLElement} */ (level.firstElementChild);
  setText(badge, row.level);
  setAttr(badge, "class", `badge lvl-${row.level}`);
  setText(logger, row.logger);
  setAttr(logger, "title", row.logger);
  const button = /** @type {HTMLElement} */ (msg.firstElementChild);
  setText(button, row.message);
  setAttr(button, "title", row.message);
  setAttr(tr, "data-level", row.level);
}
