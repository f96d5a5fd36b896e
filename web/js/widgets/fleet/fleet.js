// @ts-check
/**
 * The runner grid (`fleet?q=&region=&status=&page=`): one keyed card per runner of the page, by id. A card is
 * built once and updated in place (card.js); a re-sort moves the fewest cards (those off the longest
 * run already in order), with moveBefore where the browser has it so focus and state survive the move.
 *
 * Cards never move under the operator: while the pointer is over the grid, keyboard focus is in it, or a card's
 * menu is open, an update changes cards in place only (a runner that joined goes at the end, one that left is
 * dimmed), and the grid takes its order once the pointer and focus leave. Problem runners (offline, stale) are
 * named in a strip of their own above it, one line high whatever it holds, so the grid need not sort them first.
 */
import { count, el, field, setText } from "../../format.js";
import { cardRow, createCard, pulse, setCardSelected, updateCard } from "./card.js";

/** @typedef {import("./card.js").RunnerCard} RunnerCard */
/**
 * @typedef {{rows: Record<string, RunnerCard>, order: string[], total: number, all: number, page: number,
 *   pages: number, size: number, counts: Record<string, number>, regions: Record<string, number>,
 *   problems?: Record<string, string>, problem_order?: string[], problem_total?: number}} FleetData
 */

/** Runner ids the operator selected (kept across updates, re-sorts, pages and filters). */
export const selected = new Set();

/** @type {FleetData | null} the data the grid last showed */
export let lastData = null;

/** @type {WeakMap<HTMLElement, string>} grid root -> the key it last rendered */
const lastKey = new WeakMap();

/** The card of runner `id` on the page, if shown. @param {ParentNode} root @param {string} id */
export function cardOf(root, id) {
  for (const node of root.querySelectorAll(".rcard")) {
    if (/** @type {HTMLElement} */ (node).dataset.key === id) return /** @type {HTMLElement} */ (node);
  }
  return null;
}

/** The data shown on runner `id`'s card. @param {ParentNode} root @param {string} id */
export function rowOf(root, id) {
  const card = cardOf(root, id);
  return card ? cardRow(card) : null;
}

/**
 * Positions (indexes into `seq`) of a longest strictly increasing subsequence, ignoring -1 entries.
 * @param {number[]} seq
 * @returns {Set<number>}
 */
function longestRun(seq) {
  /** @type {number[]} */
  const tails = []; // tails[k]: index in seq of the smallest tail of an increasing run of length k + 1
  const prev = new Array(seq.length).fill(-1);
  for (let i = 0; i < seq.length; i++) {
    const v = seq[i];
    if (v < 0) continue;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seq[tails[mid]] < v) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[i] = tails[lo - 1];
    tails[lo] = i;
  }
  const keep = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) keep.add(i);
  return keep;
}

/** Move `node` before `ref` in `parent`, keeping focus and state where the browser can. */
function place(/** @type {HTMLElement} */ parent, /** @type {HTMLElement} */ node, /** @type {Element | null} */ ref) {
  const move = /** @type {any} */ (parent).moveBefore;
  if (typeof move === "function" && node.isConnected) {
    try {
      move.call(parent, node, ref);
      return;
    } catch {
      // fall through: not movable atomically here
    }
  }
  parent.insertBefore(node, ref);
}

/** Is the operator on the grid: its pointer over it, its focus in it, or a card's menu open? @param {HTMLElement} grid */
function inUse(grid) {
  const menu = document.getElementById("runner-menu");
  return grid.matches(":hover") || grid.contains(document.activeElement) || (!!menu && !menu.hidden);
}

/**
 * Update the cards in place without moving one: new runners at the end, gone ones dimmed until the order is
 * applied. Returns whether anything waits for that.
 * @param {HTMLElement} grid
 * @param {FleetData} data
 */
function updateInPlace(grid, data) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of grid.children) existing.set(/** @type {HTMLElement} */ (child).dataset.key || "", /** @type {HTMLElement} */ (child));
  let waiting = false;
  const shown = new Set();
  for (const key of data.order || []) {
    const row = data.rows[key];
    if (!row) continue;
    shown.add(key);
    let card = existing.get(key);
    if (!card) {
      card = createCard(key, selected.has(key));
      grid.append(card);
      pulse(card);
      waiting = true;
    }
    updateCard(card, row);
    if (card.classList.contains("rcard-gone")) card.classList.remove("rcard-gone");
  }
  for (const [key, card] of existing) {
    if (!shown.has(key)) {
      card.classList.add("rcard-gone");
      waiting = true;
    }
  }
  return waiting || (data.order || []).some((key, i) => grid.children[i]?.getAttribute("data-key") !== key);
}

/** @type {WeakSet<HTMLElement>} grids with a pending re-order, waiting for the pointer and focus to leave */
const holding = new WeakSet();

/** Once the operator leaves `grid`, give it the order of the data it last got. @param {HTMLElement} root @param {HTMLElement} grid */
function applyOnLeave(root, grid) {
  if (holding.has(grid)) return;
  holding.add(grid);
  const release = () => {
    // Leaving a card for its own menu (outside the grid) is not leaving: the menu's close brings focus back.
    requestAnimationFrame(() => {
      if (inUse(grid) || !holding.has(grid)) return;
      holding.delete(grid);
      grid.removeEventListener("pointerleave", release);
      grid.removeEventListener("focusout", release);
      document.removeEventListener("pointerup", release);
      const key = lastKey.get(root);
      if (lastData && key !== undefined) syncCards(grid, lastData, true);
    });
  };
  grid.addEventListener("pointerleave", release);
  grid.addEventListener("focusout", release);
  document.addEventListener("pointerup", release); // a menu item chosen or dismissed away from the grid
}

/**
 * Make `grid`'s cards those of `data.order`, in order; reuse every card that is still shown.
 * @param {HTMLElement} grid
 * @param {FleetData} data
 * @param {boolean} flashNew highlight cards that were not there (a runner joined), not a filter change
 */
function syncCards(grid, data, flashNew) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  /** @type {Map<HTMLElement, number>} */
  const position = new Map();
  let i = 0;
  for (const child of grid.children) {
    const card = /** @type {HTMLElement} */ (child);
    existing.set(card.dataset.key || "", card);
  }
  /** @type {HTMLElement[]} */
  const wanted = [];
  /** @type {HTMLElement[]} */
  const fresh = [];
  for (const key of data.order || []) {
    const row = data.rows[key];
    if (!row) continue;
    let card = existing.get(key);
    if (card) existing.delete(key);
    else {
      card = createCard(key, selected.has(key));
      fresh.push(card);
    }
    updateCard(card, row);
    wanted.push(card);
  }
  for (const card of existing.values()) card.remove();
  for (const card of wanted) if (card.classList.contains("rcard-gone")) card.classList.remove("rcard-gone");
  for (const child of grid.children) position.set(/** @type {HTMLElement} */ (child), i++);
  const keep = longestRun(wanted.map((card) => position.get(card) ?? -1));
  /** @type {Element | null} */
  let next = null;
  for (let k = wanted.length - 1; k >= 0; k--) {
    const card = wanted[k];
    if (!keep.has(k)) place(grid, card, next);
    next = card;
  }
  if (flashNew) fresh.forEach(pulse);
}

/**
 * @param {HTMLElement} root the #fleet section
 * @param {FleetData} data
 * @param {string} key
 */
export function render(root, data, key) {
  const grid = /** @type {HTMLElement} */ (root.querySelector('[data-f="cards"]'));
  const flashNew = lastKey.get(root) === key;
  lastKey.set(root, key);
  lastData = data;
  // The same view updating (not a filter or page the operator chose) while they are on the grid: hold the order.
  if (flashNew && inUse(grid)) {
    if (updateInPlace(grid, data)) applyOnLeave(root, grid);
  } else {
    holding.delete(grid);
    syncCards(grid, data, flashNew);
  }
  renderProblems(root, data);

  const shown = data.order.length;
  const first = (data.page - 1) * data.size + 1;
  setText(field(root, "range"), shown ? `${count(first)}–${count(first + shown - 1)}` : "0");
  setText(field(root, "total"), count(data.total));
  setText(field(root, "all"), count(data.all));
  const empty = field(root, "empty");
  setText(empty, data.all ? "No runners match these filters." : "No runners have reported yet.");
  if (empty.hidden !== shown > 0) empty.hidden = shown > 0;

  const pager = field(root, "pager");
  const paged = data.pages > 1;
  if (pager.hidden === paged) pager.hidden = !paged;
  if (paged) {
    setText(field(root, "pageinfo"), `Page ${count(data.page)} of ${count(data.pages)}`);
    for (const node of pager.querySelectorAll("[data-page]")) {
      const button = /** @type {HTMLButtonElement} */ (node);
      const back = button.dataset.page === "first" || button.dataset.page === "prev";
      const disabled = back ? data.page <= 1 : data.page >= data.pages;
      if (button.disabled !== disabled) button.disabled = disabled;
    }
  }
}

/**
 * The strip naming the problem runners among the matches (offline first, then stale); a name scrolls to its card
 * when the card is on this page, and otherwise links to a search for it.
 * @param {HTMLElement} root
 * @param {FleetData} data
 */
function renderProblems(root, data) {
  const strip = field(root, "problems");
  if (!strip) return;
  const order = data.problem_order || [];
  const list = /** @type {HTMLElement} */ (strip.querySelector("ul"));
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of list.children) existing.set(/** @type {HTMLElement} */ (child).dataset.key || "", /** @type {HTMLElement} */ (child));
  /** @type {HTMLElement[]} */
  const items = [];
  for (const id of order) {
    let li = existing.get(id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = id;
      const link = document.createElement("a");
      link.href = `?q=${encodeURIComponent(id)}`;
      link.className = "problem";
      link.append(el("span", "problem-id", id), el("span", "badge"));
      li.append(link);
    }
    const status = (data.problems || {})[id] || "";
    const badge = /** @type {HTMLElement} */ (li.querySelector(".badge"));
    if (badge.textContent !== status) {
      badge.textContent = status;
      badge.className = `badge ${status}`;
    }
    items.push(li);
  }
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
  const more = (data.problem_total || 0) - order.length;
  setText(field(root, "problem-more"), more > 0 ? `and ${count(more)} more` : "");
  // Always there, one line high, so that it appearing or growing never moves the grid under the pointer.
  const none = field(root, "problem-none");
  if (none.hidden !== order.length > 0) none.hidden = order.length > 0;
}

/** A problem's name scrolls to its card when the card is on this page (else the link searches for it). */
export function setupProblems(/** @type {HTMLElement} */ root) {
  const strip = field(root, "problems");
  strip?.addEventListener("click", (event) => {
    const link = /** @type {HTMLElement} */ (event.target).closest("a.problem");
    const id = link?.parentElement?.dataset.key;
    const card = id ? cardOf(root, id) : null;
    if (!card) return;
    event.preventDefault();
    card.scrollIntoView({ block: "center", behavior: "smooth" });
    /** @type {HTMLElement | null} */ (card.querySelector(".rc-more"))?.focus({ preventScroll: true });
    pulse(card);
  });
}

/** Show the selection on every card of `root`. @param {HTMLElement} root */
export function showSelection(root) {
  for (const node of root.querySelectorAll(".rcard")) {
    const card = /** @type {HTMLElement} */ (node);
    setCardSelected(card, selected.has(card.dataset.key || ""));
  }
}
