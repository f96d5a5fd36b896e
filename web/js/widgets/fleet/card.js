// @ts-check
/**
 * One runner card of the Runners Console. A card is built once per runner (cloned from a prototype) and
 * then updated field by field: only what changed since the card was last filled is written, so one
 * runner's heartbeat touches its own card and no other. Ages tick in the browser (clock.js data-since).
 */
import { span } from "../../clock.js";
import { can } from "../../commands.js";
import { count, el, setText } from "../../format.js";
import { gate, regate } from "../../gate.js";

/** The visible line that lists why runner actions are disabled (runners.html), for aria-describedby. */
export const OPS_NOTE = "ops-note";

/**
 * Whether a runner is draining (its Drain button becomes Undrain).
 * @param {RunnerCard | null} row
 */
export function isDraining(row) {
  return Boolean(row && (row.status === "draining" || row.state === "draining" || row.state === "drained"));
}

/**
 * May the user do runner action `action` on this one runner now? An offline runner cannot answer, which its
 * card already says in its badge, so that reason stays in the button's title.
 * @param {string} action @param {RunnerCard | null} row
 * @returns {import("../../gate.js").Verdict}
 */
export function runnerVerdict(action, row) {
  const verdict = can(action, row?.id || "");
  if (verdict.ok && row?.status === "offline") return { ok: false, reason: "the runner is offline: it cannot answer", local: true };
  return verdict;
}

/**
 * A runner card's data (docs/protocol.md section 3.9, `fleet` rows).
 * @typedef {{id: string, status: string, state?: string, hb?: number, region?: string, host?: string,
 *   boot?: number, active?: number, concurrency?: number, channels?: Record<string, number>, jobs?: string[],
 *   processed?: number, failed?: number, version?: string, pid?: number, stopped?: string,
 *   source?: string}} RunnerCard
 */

/**
 * The parts of a card that change, found once when it is built.
 * @typedef {{select: HTMLInputElement, badge: HTMLElement, more: HTMLButtonElement, hb: HTMLElement,
 *   up: HTMLElement, where: HTMLElement, activeText: HTMLElement, activeBox: HTMLElement, fill: HTMLElement,
 *   chips: HTMLElement, chipOf: Map<string, HTMLElement>, note: HTMLElement, totals: HTMLElement,
 *   row: RunnerCard | null}} Parts
 */

const calm = matchMedia("(prefers-reduced-motion: reduce)");

/**
 * Briefly highlight `node` (a status that changed, a card that arrived). The Web Animations API needs no
 * class change and no forced layout, so highlighting many cards in one frame stays cheap.
 * @param {HTMLElement} node
 */
export function pulse(node) {
  if (calm.matches || !node.animate) return;
  node.animate([{ boxShadow: "0 0 0 3px rgba(37, 99, 235, 0.55)" }, { boxShadow: "0 0 0 3px rgba(37, 99, 235, 0)" }], {
    duration: 1200,
    easing: "ease-out",
  });
}

/** @type {WeakMap<HTMLElement, Parts>} */
const partsOf = new WeakMap();

/** @type {HTMLElement | null} */
let proto = null;

/** @param {string} label @param {HTMLElement} value @param {string} [className] */
function fact(label, value, className) {
  const box = el("div", className);
  const dd = el("dd");
  dd.append(value);
  box.append(el("dt", undefined, label), dd);
  return box;
}

/** The prototype card every card is cloned from (built once). */
function prototype() {
  if (proto) return proto;
  const card = el("article", "rcard");
  const head = el("div", "rc-head");
  const select = /** @type {HTMLInputElement} */ (el("input", "rc-select"));
  select.type = "checkbox";
  const more = el("button", "rc-more", "⋯");
  more.setAttribute("type", "button");
  more.setAttribute("aria-haspopup", "menu");
  more.setAttribute("aria-expanded", "false");
  // The id opens the runner's detail drawer (runners.js): a button, so the keyboard reaches it too.
  const name = el("h3", "rc-id");
  const open = /** @type {HTMLButtonElement} */ (el("button", "rc-open linkish mono"));
  open.type = "button";
  name.append(open);
  head.append(select, name, el("span", "badge"), more);

  const facts = el("dl", "rc-facts");
  const hb = el("span", "rc-hb");
  hb.setAttribute("data-ago", "");
  const active = el("span", "rc-active");
  const activeText = el("span", "rc-active-text");
  const bar = el("span", "rc-bar");
  bar.setAttribute("aria-hidden", "true");
  bar.append(el("span", "rc-fill"));
  active.append(activeText, bar);
  facts.append(
    fact("Last heartbeat", hb),
    fact("Uptime", el("span", "rc-up")),
    fact("Active jobs", active),
    fact("Region / host", el("span", "rc-where"), "rc-wide"),
  );

  const chips = el("div", "rc-chips");
  const note = el("p", "rc-note");
  note.hidden = true;
  const foot = el("div", "rc-foot");
  const actions = el("div", "rc-actions");
  for (const [op, label] of [["drain", "Drain"], ["restart", "Restart"], ["logs", "Logs"]]) {
    const button = el("button", "btn btn-sm", label);
    button.setAttribute("type", "button");
    button.setAttribute("disabled", "");
    button.dataset.op = op;
    actions.append(button);
  }
  foot.append(el("span", "rc-totals"), actions);
  card.append(head, facts, chips, note, foot);
  proto = card;
  return card;
}

/**
 * A new, empty card for runner `id` (fill it with updateCard).
 * @param {string} id
 * @param {boolean} selected
 * @returns {HTMLElement}
 */
export function createCard(id, selected) {
  const card = /** @type {HTMLElement} */ (prototype().cloneNode(true));
  card.dataset.key = id;
  card.setAttribute("aria-label", `runner ${id}`);
  const q = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (card.querySelector(sel));
  const select = /** @type {HTMLInputElement} */ (q(".rc-select"));
  select.checked = selected;
  select.setAttribute("aria-label", `Select runner ${id}`);
  if (selected) card.classList.add("is-selected");
  q(".rc-open").textContent = id;
  q(".rc-open").title = `Details of runner ${id}`;
  const more = /** @type {HTMLButtonElement} */ (q(".rc-more"));
  more.setAttribute("aria-label", `More for runner ${id}`);
  // Each button asks its verdict from the card's latest data, so a runner that goes offline or starts
  // draining changes its buttons at the next regate (updateCard).
  for (const node of card.querySelectorAll(".rc-actions [data-op]")) {
    const button = /** @type {HTMLButtonElement} */ (node);
    const op = button.dataset.op || "";
    button.setAttribute("aria-label", `${button.textContent} runner ${id}`);
    gate(
      button,
      () => {
        const row = cardRow(card);
        const action = op === "drain" && isDraining(row) ? "runner.undrain" : `runner.${op}`;
        return runnerVerdict(action, row);
      },
      { note: OPS_NOTE },
    );
  }
  partsOf.set(card, {
    select,
    badge: q(".badge"),
    more,
    hb: q(".rc-hb"),
    up: q(".rc-up"),
    where: q(".rc-where"),
    activeText: q(".rc-active-text"),
    activeBox: q(".rc-active"),
    fill: q(".rc-fill"),
    chips: q(".rc-chips"),
    chipOf: new Map(),
    note: q(".rc-note"),
    totals: q(".rc-totals"),
    row: null,
  });
  return card;
}

/** The latest data a card shows. @param {HTMLElement} card @returns {RunnerCard | null} */
export function cardRow(card) {
  return partsOf.get(card)?.row ?? null;
}

/** Set an attribute only when its value changes. @param {Element} node @param {string} name @param {string} value */
function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

/** @param {Element} node @param {string} name */
function dropAttr(node, name) {
  if (node.hasAttribute(name)) node.removeAttribute(name);
}

/** @param {HTMLElement} node @param {boolean} hidden */
function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

/**
 * Fill `card` from `row`, writing only the fields that differ from what it shows.
 * @param {HTMLElement} card
 * @param {RunnerCard} row
 */
export function updateCard(card, row) {
  const p = partsOf.get(card);
  if (!p || p.row === row) return; // merge patches keep unchanged rows' identity
  const prev = p.row;
  p.row = row;
  const live = row.status !== "offline";

  if (!prev || prev.status !== row.status || prev.state !== row.state) {
    setText(p.badge, row.status);
    p.badge.className = `badge ${row.status}`;
    card.dataset.status = row.status;
    if (prev && prev.status !== row.status) pulse(p.badge);
    const drain = /** @type {HTMLButtonElement} */ (card.querySelector('[data-op="drain"]'));
    const label = isDraining(row) ? "Undrain" : "Drain";
    setText(drain, label);
    drain.setAttribute("aria-label", `${label} runner ${row.id}`);
    for (const button of card.querySelectorAll("[data-op]")) regate(/** @type {HTMLElement} */ (button));
  }
  if (!prev || prev.hb !== row.hb) {
    if (row.hb !== undefined) setAttr(p.hb, "data-since", String(row.hb));
    else {
      dropAttr(p.hb, "data-since");
      setText(p.hb, "never");
    }
  }
  if (!prev || prev.boot !== row.boot || (prev.status === "offline") !== !live || (!live && prev.hb !== row.hb)) {
    if (row.boot !== undefined && live) {
      setAttr(p.up, "data-since", String(row.boot));
      dropAttr(p.up, "title");
    } else {
      dropAttr(p.up, "data-since");
      const ran = row.boot !== undefined && row.hb !== undefined ? span(row.hb - row.boot) : "";
      setText(p.up, ran ? `ran ${ran}` : "–");
      setAttr(p.up, "title", "offline: how long it had been up when it last beat");
    }
  }
  if (!prev || prev.region !== row.region || prev.host !== row.host || prev.pid !== row.pid || prev.source !== row.source) {
    // With several sources a card says whose it is first: its id carries the label too, but this reads at a glance.
    const where = `${row.source ? `${row.source} · ` : ""}${row.region || "no region"} · ${row.host || "unknown host"}`;
    setText(p.where, where);
    setAttr(p.where, "title", row.pid ? `${where} · pid ${row.pid}` : where);
  }
  if (!prev || prev.active !== row.active || prev.concurrency !== row.concurrency) {
    const active = row.active || 0;
    const slots = row.concurrency || 0;
    setText(p.activeText, `${active}/${slots}`);
    const width = `${slots ? Math.min(100, Math.round((active / slots) * 100)) : 0}%`;
    if (p.fill.style.width !== width) p.fill.style.width = width;
    const full = slots > 0 && active >= slots;
    if (p.activeBox.classList.contains("full") !== full) p.activeBox.classList.toggle("full", full);
  }
  if (!prev || prev.jobs !== row.jobs) {
    const jobs = row.jobs || [];
    setAttr(p.activeBox, "title", jobs.length ? `running ${jobs.join(", ")}` : "no jobs running");
  }
  if (!prev || prev.channels !== row.channels) syncChips(p, row.channels || {}, row.source);
  if (!prev || prev.state !== row.state || prev.stopped !== row.stopped) {
    const parts = [];
    if (row.state && row.state !== "running") parts.push(`state: ${row.state}`);
    if (row.stopped) parts.push(`stopped: ${row.stopped}`);
    setText(p.note, parts.join(" · "));
    setHidden(p.note, !parts.length);
  }
  if (!prev || prev.processed !== row.processed || prev.failed !== row.failed || prev.version !== row.version) {
    setText(p.totals, `${count(row.processed ?? 0)} done · ${count(row.failed ?? 0)} failed`);
    setAttr(p.totals, "title", `since it started${row.version ? ` · ${row.version}` : ""}`);
  }
}

/**
 * The channel chips, keyed by channel: a chip is created once and only its count changes. A card of one of
 * several sources names its channels without their label (the card says it once); the title keeps it.
 * @param {Parts} p
 * @param {Record<string, number>} channels
 * @param {string} [source]
 */
function syncChips(p, channels, source = "") {
  const names = Object.keys(channels);
  let cursor = p.chips.firstElementChild;
  for (const name of names) {
    let chip = p.chipOf.get(name);
    if (!chip) {
      chip = el("span", "chip rc-chip");
      const shown = source && name.startsWith(`${source}:`) ? name.slice(source.length + 1) : name;
      chip.append(el("span", "rc-chip-name", shown), el("b", "rc-chip-n"));
      p.chipOf.set(name, chip);
    }
    const n = channels[name];
    setText(/** @type {HTMLElement} */ (chip.lastElementChild), String(n));
    setAttr(chip, "title", `${name}: ${n} active job${n === 1 ? "" : "s"}`);
    if (chip.classList.contains("idle") !== !n) chip.classList.toggle("idle", !n);
    if (chip !== cursor) p.chips.insertBefore(chip, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [name, chip] of p.chipOf) {
    if (!Object.hasOwn(channels, name)) {
      chip.remove();
      p.chipOf.delete(name);
    }
  }
  setHidden(p.chips, !names.length);
}

/** Show a card as selected or not. @param {HTMLElement} card @param {boolean} selected */
export function setCardSelected(card, selected) {
  const p = partsOf.get(card);
  if (p && p.select.checked !== selected) p.select.checked = selected;
  if (card.classList.contains("is-selected") !== selected) card.classList.toggle("is-selected", selected);
}
