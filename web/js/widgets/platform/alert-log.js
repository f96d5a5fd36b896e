// @ts-check
/**
 * The alert timeline (`alert_log` widget, docs/protocol.md 3.11): each alert raised, escalated, eased and
 * cleared, newest first. Rows are keyed by the log's sequence number, so an entry's row is made once and a
 * new entry is inserted on top without touching the others. The server keeps at most 100. With an alert target
 * configured, the newest entry of an alert still open offers Acknowledge and Silence 1 h, as the Hot Issues card.
 */
import { count, el, setText } from "../../format.js";
import * as alertTools from "../alert-tools.js";
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

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  alertTools.wire(root);
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
  tstack.append(el("span", "st-title"), el("span", "small id"), ...alertTools.make());
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
  const marks = /** @type {HTMLElement} */ (title.querySelector(".alert-marks"));
  const tools = /** @type {HTMLElement} */ (title.querySelector(".alert-tools"));
  alertTools.fill(marks, tools, row, row.id, Boolean(row.open));
}
