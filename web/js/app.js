// @ts-check
/**
 * The page runtime every page shares: one live socket, widget renderers by kind, mounting and unmounting
 * widget keys on DOM roots (a filter change swaps a view), rendering on the next animation frame, the
 * connection indicator and banner, the theme toggle, the Menu button of narrow screens, the column names
 * of table cells (for tables shown as stacked rows on phones) and keyboard navigation.
 *
 * A page module registers its renderers and calls `start()`. Elements with `data-widget="<key>"` are mounted
 * at start; pages mount parametrized views (`fleet?status=stale`) with `mount(root, key)`.
 */
import { refreshTimes, startTicker } from "./clock.js";
import { LiveSocket } from "./socket.js";
import * as health from "./widgets/health.js";

/** @typedef {(root: HTMLElement, data: any, key: string) => void} Render */

/** @type {Map<string, Render>} kind (the key's name) -> renderer */
const renderers = new Map();
/** @type {Map<string, Set<HTMLElement>>} key -> roots showing it */
const mounted = new Map();
/** @type {WeakMap<HTMLElement, string>} root -> the key it shows */
const keyOf = new WeakMap();
/** @type {Map<string, any>} key -> data waiting for the next frame */
const pending = new Map();
let frame = 0;

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
export const socket = new LiveSocket(`${scheme}//${location.host}${document.body.dataset.wsPath || "/ws"}`, []);

/** The widget kind of a key: its name, before any parameters. @param {string} key */
export function kindOf(key) {
  return key.split("?", 1)[0];
}

/** Render widgets of `kind` with `render`. @param {string} kind @param {Render} render */
export function register(kind, render) {
  renderers.set(kind, render);
}

/** Show widget `key` in `root` (replacing what it showed). @param {HTMLElement} root @param {string} key */
export function mount(root, key) {
  const old = keyOf.get(root);
  if (old === key) return;
  if (old !== undefined) unmount(root);
  keyOf.set(root, key);
  root.dataset.widget = key;
  let roots = mounted.get(key);
  if (!roots) {
    roots = new Set();
    mounted.set(key, roots);
    socket.watch([key]);
  }
  roots.add(root);
  const data = socket.data(key);
  if (data !== undefined) schedule(key, data);
}

/** Stop showing anything in `root`. @param {HTMLElement} root */
export function unmount(root) {
  const key = keyOf.get(root);
  if (key === undefined) return;
  keyOf.delete(root);
  const roots = mounted.get(key);
  if (!roots) return;
  roots.delete(root);
  if (!roots.size) {
    mounted.delete(key);
    pending.delete(key);
    socket.unwatch([key]);
  }
}

/** @param {string} key @param {any} data */
function schedule(key, data) {
  pending.set(key, data);
  if (!frame) frame = requestAnimationFrame(renderPending);
}

function renderPending() {
  frame = 0;
  for (const [key, data] of pending) {
    const render = renderers.get(kindOf(key));
    if (!render) continue;
    for (const root of mounted.get(key) || []) render(root, data, key);
  }
  pending.clear();
  refreshTimes();
}

/** Listeners for one widget key's data, outside the DOM (e.g. the banner follows `health`). */
/** @type {Map<string, Set<(data: any) => void>>} */
const listeners = new Map();

/** Call `fn` with every new version of widget `key` (and watch it). @param {string} key @param {(data: any) => void} fn */
export function listen(key, fn) {
  let set = listeners.get(key);
  if (!set) {
    set = new Set();
    listeners.set(key, set);
    socket.watch([key]);
  }
  set.add(fn);
  const data = socket.data(key);
  if (data !== undefined) fn(data);
}

socket.addEventListener("widget", (event) => {
  const { name, data } = /** @type {CustomEvent} */ (event).detail;
  for (const fn of listeners.get(name) || []) fn(data);
  if (mounted.has(name)) schedule(name, data);
});

// -- connection indicator and banner ------------------------------------------------------------

let sourceDown = "";
let databaseOnly = false; // only the job system's database is down (django-mojo's Postgres), not its Redis
let someDown = ""; // several sources, some down: a warning naming them (the others stay live)
const LABELS = /** @type {Record<string, string>} */ ({
  connecting: "connecting",
  live: "live",
  stale: "stale",
  reconnecting: "reconnecting",
  paused: "paused",
  closed: "disconnected",
  refused: "refused",
});

/** @param {string} status @param {string} [detail] */
function showStatus(status, detail = "") {
  const conn = document.getElementById("conn");
  const banner = document.getElementById("banner");
  const state = status === "live" && sourceDown ? "source-down" : status;
  if (conn) {
    conn.dataset.state = state;
    const label = conn.querySelector(".conn-label");
    if (label) label.textContent = state === "source-down" ? "source down" : LABELS[status] || status;
    conn.title = detail || state;
  }
  if (!banner) return;
  let text = "";
  let warn = false;
  if (status === "reconnecting") text = "Connection to jobpulse lost: reconnecting…";
  else if (status === "closed") text = `Disconnected: ${detail}. Reload the page to try again.`;
  else if (status === "refused") {
    text =
      `The connection was refused (${detail}): jobpulse accepts live connections only from its own site ` +
      "(cross-origin connections are refused). Open this page at jobpulse's own address.";
  }
  else if (status === "stale") {
    text = "No updates from jobpulse for a while: what you see may be out of date.";
    warn = true;
  } else if (someDown) {
    text = `${someDown}. The other sources are live; its rows show their last known state until it is back.`;
    warn = true;
  } else if (sourceDown) {
    text =
      (databaseOnly
        ? `Database down: the job system's Postgres is unreachable (${sourceDown}). `
        : `Broker down: the job system's Redis is unreachable (${sourceDown}). `) +
      "Showing the last known state; jobpulse reconnects by itself.";
  }
  banner.hidden = !text;
  banner.textContent = text;
  banner.classList.toggle("warn", warn);
}

socket.addEventListener("status", (event) => {
  const { status, detail } = /** @type {CustomEvent} */ (event).detail;
  showStatus(status, detail);
});

// -- theme, live toggle, keyboard -----------------------------------------------------------------

function setupTheme() {
  const badge = /** @type {HTMLElement | null} */ (document.querySelector(".env-badge[data-color]"));
  if (badge?.dataset.color) badge.style.background = badge.dataset.color;
  const saved = localStorage.getItem("jobpulse-theme");
  if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
  document.getElementById("btn-theme")?.addEventListener("click", () => {
    const dark =
      (document.documentElement.dataset.theme ||
        (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")) === "dark";
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("jobpulse-theme", next);
  });
}

function setupLiveToggle() {
  document.getElementById("btn-resync")?.addEventListener("click", () => socket.resync());
  const live = document.getElementById("btn-live");
  live?.addEventListener("click", () => {
    const on = live.getAttribute("aria-pressed") !== "true";
    live.setAttribute("aria-pressed", String(on));
    live.textContent = on ? "Live" : "Paused";
    socket.setPaused(!on);
  });
}

/** Keyboard: g then a letter goes to a page (the nav's data-key), / focuses the page's search. */
function setupKeys() {
  let armed = 0;
  document.addEventListener("keydown", (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    if (target.closest("input, textarea, select, [contenteditable]") || event.metaKey || event.ctrlKey || event.altKey) {
      return;
    }
    if (event.key === "/") {
      // The page's own search, or, on a page without one, the job search (the footer promises "/" everywhere).
      const search = /** @type {HTMLElement | null} */ (document.querySelector("[data-search]"));
      event.preventDefault();
      if (search) search.focus();
      else location.href = "/admin/jobs/table#search";
      return;
    }
    if (event.key === "g") {
      armed = Date.now();
      return;
    }
    if (armed && Date.now() - armed < 1500) {
      armed = 0;
      const link = /** @type {HTMLAnchorElement | null} */ (document.querySelector(`.nav a[data-key="${event.key}"]`));
      if (link) location.href = link.href;
    }
  });
}

/** The Menu button (narrow screens, base.html): a disclosure of the pages and the signed-in user; Escape closes it. */
function setupMenu() {
  const button = document.getElementById("nav-toggle");
  const menu = document.getElementById("site-menu");
  if (!button || !menu) return;
  /** @param {boolean} open */
  const show = (open) => button.setAttribute("aria-expanded", String(open));
  button.addEventListener("click", () => show(button.getAttribute("aria-expanded") !== "true"));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") return;
    const inside = menu.contains(document.activeElement) || document.activeElement === button;
    show(false);
    if (inside) button.focus();
  });
}

/**
 * On a phone app.css shows the rows of some tables as stacked cards, each cell under its column's name: its
 * `data-label`, copied here from the table's header onto the cells of every row, as rows come.
 * @param {HTMLTableElement} table
 */
function labelCells(table) {
  const head = table.tHead?.rows[0];
  const body = table.tBodies[0];
  if (!head || !body) return;
  /** @type {string[]} */
  const labels = [];
  for (const th of head.cells) {
    // The header's own words, without an aside such as "(click to expand)".
    const words = [...th.childNodes].filter((n) => !(n instanceof Element && n.matches(".muted, .sr-only")));
    const text = words.map((n) => n.textContent).join("").replace(/\s+/g, " ").trim();
    for (let i = 0; i < th.colSpan; i++) labels.push(text);
  }
  /** @param {HTMLTableRowElement} tr */
  const label = (tr) => {
    let column = 0;
    for (const td of tr.cells) {
      const text = labels[column];
      if (text && td.dataset.label !== text) td.dataset.label = text;
      column += td.colSpan;
    }
  };
  for (const tr of body.rows) label(tr);
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) if (node instanceof HTMLTableRowElement) label(node);
    }
  }).observe(body, { childList: true });
}

/**
 * Other operators' commands that changed something, run on whichever jobpulse process (the audit feed reaches
 * every one): a toast on every page. The first data is history, not news; one's own commands toast already.
 */
function listenForNotices() {
  /** @type {Set<string> | null} */
  let known = null;
  const me = document.querySelector("#who .who-name")?.textContent || "";
  listen("notices", (data) => {
    const order = /** @type {string[]} */ (data.order || []);
    if (known !== null) {
      for (const id of [...order].reverse()) {
        const row = data.rows[id];
        if (known.has(id) || !row || row.user === me) continue;
        const text = `${row.user}: ${row.message || `${row.action} ${row.target}`}`;
        import("./toast.js").then((t) => t.toast("info", text));
      }
    }
    known = new Set(order); // only the newest few are sent: older ones cannot come back
  });
}

/** Mount every `[data-widget]` element, connect, and start the clocks. */
export function start() {
  if (!renderers.has("health")) register("health", health.render); // the footer of every page
  for (const node of document.querySelectorAll("[data-widget]")) {
    const root = /** @type {HTMLElement} */ (node);
    if (root.dataset.widget) mount(root, root.dataset.widget);
  }
  listen("health", (data) => {
    const order = Array.isArray(data.source_order) ? data.source_order : [];
    const links = order.map((label) => [label, (data.sources || {})[label] || {}]);
    const lost = links.filter(([, link]) => !link.connected);
    // With several sources the console goes blind only when all are down; one down is a warning naming it.
    const partial =
      lost.length && lost.length < links.length
        ? lost.map(([label, link]) => `Source ${label} (${link.kind || "?"}) down: ${link.error || "not connected"}`).join("; ")
        : "";
    const down = data.connected || partial ? "" : data.error || "not connected";
    const dbOnly = Array.isArray(data.down) && data.down.length === 1 && data.down[0] === "Postgres";
    if (down !== sourceDown || dbOnly !== databaseOnly || partial !== someDown) {
      sourceDown = down;
      databaseOnly = dbOnly;
      someDown = partial;
      showStatus(socket.status);
    }
  });
  // Other operators' commands as toasts: not on the wall, whose read-only link may not see them (the server refuses).
  if (document.body.dataset.page !== "wall") listenForNotices();
  setupTheme();
  setupMenu();
  for (const table of document.querySelectorAll("table.tbl")) labelCells(/** @type {HTMLTableElement} */ (table));
  setupLiveToggle();
  setupKeys();
  startTicker();
  socket.connect();
}
