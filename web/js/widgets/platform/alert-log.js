// @ts-check
/**
 * The alert timeline (`alert_log` widget, docs/protocol.md 3.11): each alert raised, escalated, eased and
 * cleared, newest first. Rows are keyed by the log's sequence number, so an entry's row is made once and a
 * new entry is inserted on top without touching the others. The server keeps at most 100. With an alert target
 * configured, the newest entry of an alert still open offers Acknowledge and Silence 1 h, as the Hot Issues card.
 */
import { can, onRights } from "../../commands.js";
import { clockTime, count, el, setText } from "../../format.js";
import { newRow, syncRows } from "../rows.js";
import { fillPill } from "./severity.js";

/** What happened, in words and an icon (never colour alone). */
const WHAT = /** @type {Record<string, [string, string]>} */ ({
  raised: ["▲", "raised"],
  escalated: ["⇧", "escalated"],
  eased: ["⇩", "eased"],
  cleared: ["✓", "cleared"],
});

const two = (/** @type {number} */ n) => String(n).padStart(2, "0");

/** 24-hour local time, seconds included (the date is in the title). @param {number} ts epoch seconds */
function hms(ts) {
  const d = new Date(ts * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** @type {WeakSet<HTMLElement>} */
const wired = new WeakSet();

/** Enable the alert buttons this user may use; the others say why on hover. @param {ParentNode} root */
function rights(root) {
  for (const node of root.querySelectorAll(".st-tools button")) {
    const button = /** @type {HTMLButtonElement} */ (node);
    const verdict = can(/** @type {string} */ (button.dataset.action));
    button.disabled = !verdict.ok;
    button.title = verdict.ok ? "" : verdict.reason;
  }
}
onRights(() => rights(document));

/** The alert buttons: sent like every command (the action module loads on first use). @param {Event} event */
function act(event) {
  const button = /** @type {HTMLButtonElement | null} */ (
    /** @type {HTMLElement} */ (event.target).closest(".st-tools button[data-action]")
  );
  if (!button) return;
  const alert = /** @type {string} */ (button.dataset.alert);
  const args = button.dataset.action === "alert.silence" ? { alert, minutes: 60 } : { alert };
  import("../../action.js").then((a) => a.perform(/** @type {string} */ (button.dataset.action), args, { button }));
}

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  if (!wired.has(root)) {
    wired.add(root);
    root.addEventListener("click", act);
  }
  const tbody = /** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]'));
  syncRows(tbody, data, create, update);
  const n = data.order.length;
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = n > 0;
  setText(
    /** @type {HTMLElement} */ (root.querySelector('[data-f="summary"]')),
    n ? `newest first · last ${count(n)} changes` : "newest first",
  );
}

function create() {
  const time = el("td", "st-c-time");
  const stack = el("div", "stack");
  const ago = el("span", "small");
  ago.setAttribute("data-ago", "");
  stack.append(el("span", "st-clock"), ago);
  time.append(stack);
  const what = el("td", "st-c-what");
  const tag = el("span", "st-what");
  tag.append(el("span", "st-what-icon"), el("span", "st-what-text"));
  tag.firstElementChild?.setAttribute("aria-hidden", "true");
  what.append(tag);
  const sev = el("td", "st-c-sev");
  const pill = el("span", "st-pill st-pill-sm");
  pill.append(el("span", "st-pill-icon"), el("span", "st-pill-text"));
  pill.firstElementChild?.setAttribute("aria-hidden", "true");
  sev.append(pill);
  const title = el("td", "st-c-title");
  const tstack = el("div", "stack");
  const tools = el("span", "st-tools");
  for (const [action, label] of [["alert.ack", "Acknowledge"], ["alert.silence", "Silence 1 h"]]) {
    const button = /** @type {HTMLButtonElement} */ (el("button", "btn small", label));
    button.type = "button";
    button.dataset.action = action;
    tools.append(button);
  }
  tstack.append(el("span", "st-title"), el("span", "small id"), el("span", "small st-marks"), tools);
  title.append(tstack);
  return newRow(time, what, sev, title);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [time, what, sev, title] = tr.cells;
  setText(/** @type {HTMLElement} */ (time.querySelector(".st-clock")), hms(row.at));
  time.title = new Date(row.at * 1000).toLocaleString();
  /** @type {HTMLElement} */ (time.querySelector("[data-ago]")).dataset.since = String(row.at);
  const [icon, words] = WHAT[row.what] || ["•", String(row.what)];
  const tag = /** @type {HTMLElement} */ (what.firstElementChild);
  tag.dataset.what = row.what;
  setText(/** @type {HTMLElement} */ (tag.querySelector(".st-what-icon")), icon);
  setText(/** @type {HTMLElement} */ (tag.querySelector(".st-what-text")), words);
  fillPill(/** @type {HTMLElement} */ (sev.firstElementChild), row.severity);
  setText(/** @type {HTMLElement} */ (title.querySelector(".st-title")), row.title);
  title.title = row.title;
  setText(/** @type {HTMLElement} */ (title.querySelector(".id")), row.id);
  // The newest entry of an alert still open: what the notifier says of it, and its buttons.
  const said = [];
  if (row.notified) said.push(`notified ${clockTime(row.notified)}`);
  if (row.acked_by) said.push(`acknowledged by ${row.acked_by}`);
  if (row.silenced_until) said.push(`silenced until ${clockTime(row.silenced_until)}`);
  const marks = /** @type {HTMLElement} */ (title.querySelector(".st-marks"));
  setText(marks, said.join(" · "));
  marks.hidden = !said.length;
  const tools = /** @type {HTMLElement} */ (title.querySelector(".st-tools"));
  tools.hidden = !row.open;
  const [ack, mute] = /** @type {HTMLButtonElement[]} */ ([...tools.children]);
  ack.dataset.alert = mute.dataset.alert = row.id;
  ack.hidden = !row.notified || Boolean(row.acked_by);
  mute.hidden = Boolean(row.silenced_until);
  ack.setAttribute("aria-label", `Acknowledge: ${row.title}`);
  mute.setAttribute("aria-label", `Silence for an hour: ${row.title}`);
  rights(tools);
}
