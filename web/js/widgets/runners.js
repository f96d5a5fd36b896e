// @ts-check
/** Job Runners: status, heartbeat age (ticking in the browser) and active jobs per runner. */
import { el, setText } from "../format.js";
import { ageCell, holderCell, newRow, stackCell, syncRows } from "./rows.js";

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
  return newRow(stackCell(), holderCell("badge"), ageCell(true), el("td", "num"));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  tr.dataset.runner = row.id;
  tr.tabIndex = 0;
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
