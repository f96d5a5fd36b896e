// @ts-check
/**
 * Channel Capacity (`channels`): live runners and their slots beside each channel's depth and SLA.
 * The oldest job's age ticks in the browser, and the "over SLA" label is re-checked every second.
 */
import { now, span } from "../../clock.js";
import { count, el, setText } from "../../format.js";
import { OPS_REASON } from "./card.js";
import { ageCell, newRow, syncRows } from "../rows.js";

/** @type {Set<HTMLElement>} tables shown, for the SLA check */
const roots = new Set();
let timer = 0;

/** @param {HTMLElement} root @param {{rows: Record<string, any>, order: string[]}} data */
export function render(root, data) {
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), data, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = data.order.length > 0;
  roots.add(root);
  checkSla(root);
  if (!timer) timer = window.setInterval(() => roots.forEach((r) => r.isConnected && checkSla(r)), 1000);
}

/** @param {string} label */
function disabledButton(label) {
  const button = el("button", "btn btn-sm", label);
  button.setAttribute("type", "button");
  button.setAttribute("disabled", "");
  button.setAttribute("title", `${label} ${OPS_REASON}`);
  button.setAttribute("aria-describedby", "ops-note");
  return button;
}

function create() {
  const name = el("td", "c-chan");
  const paused = el("span", "badge draining", "paused");
  paused.hidden = true;
  name.append(el("span", "chip"), " ", paused);
  const num = () => el("td", "num");
  const sla = el("td", "num");
  const over = el("span", "badge stale sla-over", "over SLA");
  over.hidden = true;
  sla.append(el("span", "sla-v"), " ", over);
  const actions = el("td", "c-act");
  const view = el("a", "btn btn-sm", "View jobs");
  actions.append(disabledButton("Pause"), " ", disabledButton("Purge"), " ", view);
  return newRow(name, num(), num(), num(), num(), num(), ageCell(), sla, actions);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [name, runners, slots, queued, inflight, scheduled, oldest, sla, actions] = tr.cells;
  setText(/** @type {HTMLElement} */ (name.firstElementChild), row.channel);
  /** @type {HTMLElement} */ (name.lastElementChild).hidden = !row.paused;
  setText(runners, count(row.runners));
  setText(slots, count(row.concurrency));
  setText(queued, count(row.queued));
  setText(inflight, count(row.inflight));
  setText(scheduled, count(row.scheduled));
  const age = /** @type {HTMLElement} */ (oldest.firstElementChild);
  if (row.oldest !== undefined) age.dataset.since = String(row.oldest);
  else {
    delete age.dataset.since;
    setText(age, "–");
  }
  setText(/** @type {HTMLElement} */ (sla.querySelector(".sla-v")), row.sla ? span(row.sla) : "–");
  tr.dataset.oldest = row.oldest === undefined ? "" : String(row.oldest);
  tr.dataset.sla = row.sla ? String(row.sla) : "";
  const view = /** @type {HTMLAnchorElement} */ (actions.querySelector("a"));
  const href = `/admin/jobs/table?q=${encodeURIComponent(`channel:${row.channel}`)}`;
  if (view.getAttribute("href") !== href) view.setAttribute("href", href);
  view.setAttribute("aria-label", `View jobs of channel ${row.channel}`);
}

/** Label the channels whose oldest waiting job is older than their SLA. @param {HTMLElement} root */
function checkSla(root) {
  const t = now();
  for (const node of root.querySelectorAll("tbody tr")) {
    const tr = /** @type {HTMLElement} */ (node);
    const oldest = Number(tr.dataset.oldest);
    const sla = Number(tr.dataset.sla);
    const over = Boolean(tr.dataset.oldest && tr.dataset.sla && t - oldest > sla);
    const label = /** @type {HTMLElement} */ (tr.querySelector(".sla-over"));
    if (label.hidden === over) label.hidden = !over;
    if (tr.classList.contains("over-sla") !== over) tr.classList.toggle("over-sla", over);
  }
}
