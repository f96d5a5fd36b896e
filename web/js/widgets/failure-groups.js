// @ts-check
/**
 * Failure groups (`failure_groups`, docs/protocol.md 3.13): each cause of failures with its count, first and
 * last seen, the functions and channels it hit, an hour's trend, and its newest failed jobs; new and muted
 * groups are marked in words. The Failures page shows every group the widget carries, with Retry and Mute;
 * the Overview's card (`compact`) the five that failed most in the last hour. Rows are keyed by fingerprint.
 */
import { now } from "../clock.js";
import { can } from "../commands.js";
import { clockTime, count, el, field, setText } from "../format.js";
import { gate } from "../gate.js";

const SVG = "http://www.w3.org/2000/svg";

/** What the page filters by (the Failures page sets these and calls `redraw`). */
export const view = { q: "", muted: true, compact: false };

/** @type {Map<HTMLElement, any>} */
const last = new Map();
/** @type {WeakMap<HTMLElement, Map<string, HTMLElement>>} lines the filters hide, kept to come back as they were */
const spare = new WeakMap();

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  last.set(root, data);
  draw(root, data);
}

export function redraw() {
  for (const [root, data] of last) draw(root, data);
}

/** @type {{group: string, action: string} | null} a button to give the focus to once it shows */
let pendingFocus = null;

/**
 * Mute and Unmute take turns in one place: once one is done, the other gets the focus the first had (it was
 * lost when the button went busy, then hidden) as soon as the update that shows it arrives.
 * @param {string} group @param {string} action the button's action
 */
export function focusWhenShown(group, action) {
  pendingFocus = { group, action };
  takeFocus();
}

function takeFocus() {
  if (!pendingFocus) return;
  const line = `li.fg-group[data-key="${pendingFocus.group}"]`;
  const target = document.querySelector(`${line} button[data-action="${pendingFocus.action}"]`);
  if (!(target instanceof HTMLElement) || target.hidden) return;
  pendingFocus = null;
  const at = document.activeElement;
  if (!at || at === document.body || at.closest(`${line} .fg-tools`)) target.focus();
}

/** @param {any} g @param {string} q */
function matches(g, q) {
  if (!q) return true;
  const text = [g.type, g.message, g.frame, ...g.functions.map((/** @type {any[]} */ f) => f[0]),
    ...g.channels.map((/** @type {any[]} */ c) => c[0])].join(" ").toLowerCase();
  return text.includes(q);
}

/** @param {HTMLElement} root @param {any} data */
function draw(root, data) {
  const compact = root.dataset.compact !== undefined;
  const q = view.q.trim().toLowerCase();
  let ids = data.order.filter((/** @type {string} */ id) => {
    const g = data.rows[id];
    return g && (compact ? !g.muted && g.hour > 0 : (view.muted || !g.muted) && matches(g, q));
  });
  if (compact) ids = ids.sort((/** @type {string} */ a, /** @type {string} */ b) => data.rows[b].hour - data.rows[a].hour).slice(0, 5);
  const list = field(root, "groups");
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map(spare.get(root));
  for (const li of /** @type {HTMLCollectionOf<HTMLElement>} */ (list.children)) existing.set(li.dataset.key || "", li);
  let cursor = list.firstElementChild;
  for (const id of ids) {
    let li = existing.get(id);
    if (!li) li = create(id, compact);
    else existing.delete(id);
    fill(li, data.rows[id], data, compact);
    if (li !== cursor) list.insertBefore(li, cursor);
    else cursor = cursor.nextElementSibling;
  }
  // A line the filters hide now is kept (its samples open or not) for when it shows again; a group gone, not.
  /** @type {Map<string, HTMLElement>} */
  const kept = new Map();
  for (const [id, li] of existing) {
    li.remove();
    if (data.rows[id]) kept.set(id, li);
  }
  spare.set(root, kept);
  if (!compact) takeFocus();
  const empty = field(root, "empty");
  empty.hidden = ids.length > 0;
  // The template's text says nothing failed; with groups there but none shown, say what hides them.
  empty.dataset.none ??= empty.textContent || "";
  let none = empty.dataset.none || "";
  if (!compact && data.total > 0) {
    if (!q) none = "Every failure group is muted: check “Show muted groups” to see them.";
    else none = view.muted ? "No failure group matches the search." : "No failure group that is not muted matches the search.";
  }
  setText(empty, none);
  const muted = data.order.filter((/** @type {string} */ id) => data.rows[id].muted).length;
  const hour = data.order.filter((/** @type {string} */ id) => !data.rows[id].muted && data.rows[id].hour > 0).length;
  const summary = compact
    ? `${count(hour)} group${hour === 1 ? "" : "s"} failing`
    : `${count(ids.length)} shown of ${count(data.total)} group${data.total === 1 ? "" : "s"}${muted ? ` · ${count(muted)} muted` : ""}`;
  setText(field(root, "summary"), summary);
}

/** @param {string} action @param {string} label @param {string} id */
function button(action, label, id) {
  const b = /** @type {HTMLButtonElement} */ (el("button", "btn small", label));
  b.type = "button";
  b.dataset.action = action;
  b.dataset.group = id;
  // The page's note (#fg-note) lists why disabled buttons are: "Retry failed jobs…, Mute 24 h: needs the operator role".
  gate(b, () => can(action), { note: "fg-note" });
  return b;
}

/** @param {string} id @param {boolean} compact */
function create(id, compact) {
  const li = el("li", "fg-group");
  li.dataset.key = id;
  if (!compact) li.id = `g-${id}`;
  const head = el("div", "fg-head");
  const title = el("div", "fg-title");
  title.append(el("span", "fg-type"), el("span", "fg-badges"), el("span", "fg-message"));
  const spark = document.createElementNS(SVG, "svg");
  spark.setAttribute("class", "fg-spark");
  spark.setAttribute("viewBox", "0 0 60 20");
  spark.setAttribute("preserveAspectRatio", "none");
  spark.setAttribute("role", "img");
  spark.append(document.createElementNS(SVG, "path"));
  const numbers = el("div", "fg-numbers");
  numbers.append(el("span", "fg-count"), el("span", "small fg-hour"));
  head.append(title, spark, numbers);
  li.append(head, el("div", "small muted fg-where"), el("div", "small muted fg-when"));
  if (!compact) {
    const tools = el("div", "fg-tools");
    const samples = /** @type {HTMLButtonElement} */ (el("button", "btn small", "Samples"));
    samples.type = "button";
    samples.dataset.samples = id;
    samples.setAttribute("aria-expanded", "false");
    tools.append(samples, button("group.retry", "Retry failed jobs…", id), button("group.mute", "Mute 24 h", id),
      button("group.unmute", "Unmute", id));
    const box = el("div", "fg-samples");
    box.hidden = true;
    box.append(el("pre", "fg-example"), el("ol", "fg-sample-list"));
    li.append(tools, box);
  }
  return li;
}

/** @param {HTMLElement} li @param {any} g @param {any} data @param {boolean} compact */
function fill(li, g, data, compact) {
  const part = (/** @type {string} */ name) => /** @type {HTMLElement} */ (li.querySelector(`.${name}`));
  setText(part("fg-type"), g.type);
  setText(part("fg-message"), g.message ? `: ${g.message}` : "");
  const badges = part("fg-badges");
  const marks = JSON.stringify([g.new, g.muted]);
  if (badges.dataset.marks !== marks) {
    badges.dataset.marks = marks;
    badges.replaceChildren();
    if (g.new) badges.append(el("span", "badge info", "New"));
    if (g.muted) {
      const badge = el("span", "badge idle", `Muted until ${untilText(g.muted.until)}`);
      badge.title = `Muted by ${g.muted.by}${g.muted.reason ? `: ${g.muted.reason}` : ""}`;
      badges.append(badge);
    }
  }
  li.classList.toggle("muted-group", Boolean(g.muted));
  setText(part("fg-count"), count(g.count));
  setText(part("fg-hour"), `${count(g.hour)} in the last hour`);
  const fns = g.functions.map((/** @type {any[]} */ f) => `${f[0]} (${count(f[1])})`).join(", ");
  const chans = g.channels.map((/** @type {any[]} */ c) => c[0]).join(", ");
  setText(part("fg-where"), `${g.frame ? `at ${g.frame} · ` : ""}${fns}${chans ? ` · on ${chans}` : ""}`);
  setText(part("fg-when"), `first ${clockTime(g.first)} · last ${clockTime(g.last)}`);
  drawSpark(/** @type {SVGSVGElement} */ (/** @type {unknown} */ (li.querySelector(".fg-spark"))), g.trend, data.trend_minutes, g.last);
  if (compact) return;
  const unmute = /** @type {HTMLElement} */ (li.querySelector('[data-action="group.unmute"]'));
  const mute = /** @type {HTMLElement} */ (li.querySelector('[data-action="group.mute"]'));
  unmute.hidden = !g.muted;
  mute.hidden = Boolean(g.muted);
  setText(part("fg-example"), g.example);
  // Rebuilt only when they changed: every update of any group fills every line, and a sample button replaced
  // under the pointer or the keyboard's focus loses the click, or the focus.
  const samples = part("fg-sample-list");
  const newest = JSON.stringify(g.samples);
  if (samples.dataset.samples === newest) return;
  samples.dataset.samples = newest;
  samples.replaceChildren(
    ...g.samples.map((/** @type {any[]} */ s) => {
      const item = el("li");
      const open = /** @type {HTMLButtonElement} */ (el("button", "link", s[0]));
      open.type = "button";
      open.dataset.job = s[0];
      open.title = "Open the job: its payload, history and traceback";
      item.append(open, el("span", "small muted", ` ${clockTime(s[1])} · ${s[2]} on ${s[3]}${s[4] ? ` · ${s[4]}` : ""}`));
      return item;
    }),
  );
}

/** When a mute ends: its time, and its day when that is not today (a 24 h mute ends tomorrow). @param {number} ts */
function untilText(ts) {
  const day = new Date(ts * 1000);
  if (day.toDateString() === new Date(now() * 1000).toDateString()) return clockTime(ts);
  return `${day.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${clockTime(ts)}`;
}

/**
 * The hour's failures per minute, as bars, the current minute at the right edge; a minute without failures is
 * empty. (Anchored on now, not on the group's last failure: a group that stopped failing half an hour ago has
 * its bars in the left half.)
 * @param {SVGSVGElement} svg @param {Record<string, number>} trend @param {number} minutes @param {number} lastSeen
 */
function drawSpark(svg, trend, minutes, lastSeen) {
  const keys = Object.keys(trend).map(Number);
  const end = Math.max(...keys, Math.floor(Math.max(now(), lastSeen) / 60) * 60);
  const top = Math.max(1, ...Object.values(trend));
  let d = "";
  for (const key of keys) {
    const x = minutes - 1 - (end - key) / 60;
    if (x < 0) continue;
    const h = Math.max(1, (trend[String(key)] / top) * 20);
    d += `M${x + 0.5} 20V${(20 - h).toFixed(1)}`;
  }
  const path = /** @type {SVGPathElement} */ (svg.firstElementChild);
  path.setAttribute("d", d);
  const total = Object.values(trend).reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", `${total} failures in the last ${minutes} minutes`);
}
