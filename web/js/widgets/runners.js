// @ts-check
/** Job Runners: status, heartbeat age (ticking in the browser) and active jobs per runner. */
import { el, setText } from "../format.js";
import { syncRows } from "./rows.js";

const ORDER = ["online", "busy", "draining", "stale", "offline"];

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  const parts = ORDER.filter((s) => data.counts[s]).map((s) => `${data.counts[s]} ${s}`);
  const shown = data.order.length < data.total ? ` · showing ${data.order.length} of ${data.total}` : "";
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="counts"]')), parts.join(" · ") + shown);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
}

function create() {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr"));
  const first = el("td");
  const stack = el("div", "stack");
  stack.append(el("span", "id"), el("span", "small"));
  first.append(stack);
  const status = el("td");
  status.append(el("span", "badge"));
  const hb = el("td", "num");
  const ago = el("span");
  ago.setAttribute("data-ago", "");
  hb.append(ago);
  tr.append(first, status, hb, el("td", "num"));
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [first, status, hb, jobs] = tr.cells;
  setText(first.querySelector(".id"), row.id);
  setText(first.querySelector(".small"), [row.region, row.host].filter(Boolean).join(" · "));
  const badge = status.firstElementChild;
  setText(badge, row.status);
  badge.className = `badge ${row.status}`;
  const span = /** @type {HTMLElement} */ (hb.firstElementChild);
  if (row.hb !== undefined) span.dataset.since = String(row.hb);
  else {
    delete span.dataset.since;
    span.textContent = "never";
  }
  setText(jobs, `${row.active}/${row.concurrency}`);
}
