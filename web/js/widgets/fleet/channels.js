// @ts-check
/**
 * Channel Capacity (`channels`): live runners and their slots beside each channel's depth and SLA, with the
 * channel actions (pause / resume, purge, clear stuck). The oldest job's age ticks in the browser, and the
 * "over SLA" label is re-checked every second. The buttons carry `data-op`; the page handles their clicks.
 */
import { now, span } from "../../clock.js";
import { can, canClearStuck } from "../../commands.js";
import { count, el, setText } from "../../format.js";
import { gate, regate } from "../../gate.js";
import { ageCell, newRow, syncRows } from "../rows.js";

/** The visible line under the table listing why channel actions are disabled (runners.html). */
const NOTE = "cap-note";

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

/**
 * A channel action button, gated by `verdict`.
 * @param {string} op @param {string} label @param {() => import("../../gate.js").Verdict} verdict
 */
function actionButton(op, label, verdict) {
  const button = el("button", op === "pause" ? "btn btn-sm" : "btn btn-sm danger", label);
  button.setAttribute("type", "button");
  button.dataset.op = op;
  gate(button, verdict, { note: NOTE });
  return button;
}

/** @param {any} row @param {string} key */
function create(row, key) {
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
  actions.dataset.paused = row.paused ? "1" : "";
  const pause = actionButton("pause", row.paused ? "Resume" : "Pause", () => can(pauseAction(actions), key));
  const purge = actionButton("purge", "Purge", () => can("channel.purge", key));
  const stuck = actionButton("stuck", "Clear stuck", () => canClearStuck(key));
  actions.append(pause, " ", purge, " ", stuck, " ", view);
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
  const pause = /** @type {HTMLElement} */ (actions.querySelector('[data-op="pause"]'));
  const label = row.paused ? "Resume" : "Pause";
  if (pause.textContent !== label) {
    actions.dataset.paused = row.paused ? "1" : "";
    pause.textContent = label;
    regate(pause);
  }
  for (const button of actions.querySelectorAll("[data-op]")) {
    const op = /** @type {HTMLElement} */ (button).dataset.op;
    const name = op === "pause" ? label : op === "purge" ? "Purge" : "Clear stuck jobs of";
    button.setAttribute("aria-label", `${name} channel ${row.channel}`);
  }
}

/** The action the pause button does now: resume a paused channel, else pause it. @param {HTMLElement} actions */
function pauseAction(actions) {
  return actions.dataset.paused ? "channel.resume" : "channel.pause";
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
