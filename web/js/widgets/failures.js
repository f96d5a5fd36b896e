// @ts-check
/** Recent Failures: newest first, with the error's first line. */
import { el, setText } from "../format.js";
import { syncRows } from "./rows.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr"));
  const first = el("td");
  const stack = el("div", "stack");
  stack.append(el("span", "id"), el("span", "small"));
  first.append(stack);
  const channel = el("td");
  channel.append(el("span", "chip"));
  const error = el("td");
  error.append(el("span", "err"));
  const when = el("td", "num");
  const ago = el("span");
  ago.setAttribute("data-ago", "");
  when.append(ago);
  tr.append(first, channel, error, when);
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [first, channel, error, when] = tr.cells;
  setText(first.querySelector(".id"), row.job);
  setText(first.querySelector(".small"), row.attempt > 1 ? `${row.fn} · attempt ${row.attempt}` : row.fn);
  setText(channel.firstElementChild, row.channel);
  setText(error.firstElementChild, row.error);
  error.title = row.error;
  /** @type {HTMLElement} */ (when.firstElementChild).dataset.since = String(row.at);
}
