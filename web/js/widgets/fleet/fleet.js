// @ts-check
/**
 * The runner grid (`fleet?q=&region=&status=&page=`): one keyed card per runner of the page. A card is
 * built once and updated in place (card.js); a re-sort moves the fewest cards (those off the longest
 * run already in order), with moveBefore where the browser has it so focus and state survive the move.
 */
import { count, setText } from "../../format.js";
import { cardRow, createCard, pulse, setCardSelected, updateCard } from "./card.js";

/** @typedef {import("./card.js").RunnerCard} RunnerCard */
/**
 * @typedef {{rows: Record<string, RunnerCard>, order: string[], total: number, all: number, page: number,
 *   pages: number, size: number, counts: Record<string, number>, regions: Record<string, number>}} FleetData
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
  syncCards(grid, data, flashNew);

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

/** @param {HTMLElement} root @param {string} name */
function field(root, name) {
  return /** @type {HTMLElement} */ (root.querySelector(`[data-f="${name}"]`));
}

/** Show the selection on every card of `root`. @param {HTMLElement} root */
export function showSelection(root) {
  for (const node of root.querySelectorAll(".rcard")) {
    const card = /** @type {HTMLElement} */ (node);
    setCardSelected(card, selected.has(card.dataset.key || ""));
  }
}
