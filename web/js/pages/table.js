// @ts-check
/**
 * The job table (/admin/jobs/table): one page of a live `jobs?q=&sort=&page=` view (docs/protocol.md 3.10).
 * The server searches, sorts and pages; the page composes the query from the search box and the filter
 * controls, keeps q, sort and page in the URL, and patches rows in place as jobs change.
 */
import { mount, register, socket, start } from "../app.js";
import { count, el, setText } from "../format.js";
import { viewKey } from "../views.js";
import * as health from "../widgets/health.js";
import { STATUSES } from "../widgets/jobs/common.js";
import { attachOpen, renderRows } from "../widgets/jobs/job-rows.js";
import { setTerm, termValue } from "../widgets/jobs/query.js";

const SORTS = ["updated", "queued", "started", "duration", "attempt", "id"];
const DEFAULT_SORT = "-updated";
const MAX_KEY = 400; // the server's longest widget key (server/protocol.py)

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const card = $("jt-card");
const form = /** @type {HTMLFormElement} */ ($("jt-form"));
const input = /** @type {HTMLInputElement} */ ($("jt-q"));
const filters = /** @type {HTMLFormElement} */ ($("jt-filters"));
const statusSelect = /** @type {HTMLSelectElement} */ ($("jt-status"));
// With several sources: the source filter, a `source:` term of the query like the others (absent with one).
const sourceSelect = /** @type {HTMLSelectElement | null} */ (document.getElementById("jt-source"));
const textFilters = /** @type {HTMLInputElement[]} */ ([$("jt-channel"), $("jt-fn"), $("jt-runner")]);
const errorLine = $("jt-error");
const wrap = $("jt-wrap");
const tbody = $("jt-rows");
const empty = $("jt-empty");
const prev = /** @type {HTMLButtonElement} */ ($("jt-prev"));
const next = /** @type {HTMLButtonElement} */ ($("jt-next"));
const helpButton = $("jt-help-btn");
const help = $("jt-help");

/** What the table shows: the search, the sort and the page. */
const state = readUrl();
/** The key of the view mounted now; its first data clears the busy state. */
let currentKey = "";
let lastPages = 1;

/** @returns {{q: string, sort: string, page: number}} */
function readUrl() {
  const params = new URLSearchParams(location.search);
  let sort = params.get("sort") || DEFAULT_SORT;
  if (!SORTS.includes(sort.replace(/^-/, ""))) sort = DEFAULT_SORT;
  const page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  return { q: (params.get("q") || "").trim(), sort, page };
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  if (state.sort !== DEFAULT_SORT) params.set("sort", state.sort);
  if (state.page > 1) params.set("page", String(state.page));
  const search = params.toString().replace(/\+/g, "%20");
  const url = search ? `${location.pathname}?${search}` : location.pathname;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

/**
 * The view for the current state. The sort is always spelled out (the server takes a bare `jobs`, with no
 * parameter at all, for a fixed widget it does not have) and page 1 is left out, so one view has one key.
 */
function currentViewKey() {
  return viewKey("jobs", { q: state.q, sort: state.sort, page: state.page > 1 ? state.page : "" });
}

/** Show the current state: URL, controls, sort indicators, and the view. */
function apply() {
  writeUrl();
  syncControls();
  showSort();
  const key = currentViewKey();
  if (key.length > MAX_KEY) {
    showError("the search is too long; shorten it");
    return;
  }
  if (key === currentKey) return;
  currentKey = key;
  wrap.setAttribute("aria-busy", "true");
  mount(card, key);
}

/** @param {string} message */
function showError(message) {
  errorLine.hidden = !message;
  setText(errorLine, message);
  input.setAttribute("aria-invalid", String(Boolean(message)));
}

/** The search box and filter controls follow the query (a typed `status:failed` selects "failed"). */
function syncControls() {
  if (input.value.trim() !== state.q) input.value = state.q;
  const status = termValue(state.q, "status");
  statusSelect.value = status === null || (status && !STATUSES.includes(status)) ? "__query" : status;
  if (sourceSelect) {
    const source = termValue(state.q, "source");
    const known = [...sourceSelect.options].some((o) => o.value === source && o.value !== "__query");
    sourceSelect.value = source === null || (source && !known) ? "__query" : source;
  }
  for (const box of textFilters) {
    const value = termValue(state.q, box.dataset.filter || "");
    box.value = value ?? "";
    const idle = box.dataset.filter === "channel" ? "any" : "any (wildcards: *)";
    box.placeholder = value === null ? "several: see the search" : idle;
  }
}

function showSort() {
  const name = state.sort.replace(/^-/, "");
  for (const th of card.querySelectorAll("th[data-sort]")) {
    const header = /** @type {HTMLElement} */ (th);
    if (header.dataset.sort === name) {
      header.setAttribute("aria-sort", state.sort.startsWith("-") ? "descending" : "ascending");
    } else header.removeAttribute("aria-sort");
  }
}

/** @param {HTMLElement} root @param {any} data @param {string} key */
function render(root, data, key) {
  if (key !== currentKey) return;
  wrap.removeAttribute("aria-busy");
  showError(data.error || "");
  renderRows(tbody, data);
  empty.hidden = Boolean(data.error) || data.order.length > 0;
  const none = "jobpulse holds no jobs yet: they appear as the job system reports them.";
  setText(empty, state.q ? "No jobs match this search." : none);
  setText($("jt-total"), data.error ? "" : `${count(data.total)} job${data.total === 1 ? "" : "s"} match`);
  lastPages = data.pages || 1;
  setText($("jt-pageinfo"), `Page ${count(data.page)} of ${count(lastPages)}`);
  prev.disabled = state.page <= 1;
  next.disabled = state.page >= lastPages;
  if (typeof data.indexed === "number") setText($("jt-indexed"), count(data.indexed));
  if (!data.error && data.total > 0 && state.page > lastPages) {
    state.page = lastPages; // the jobs of this page have gone (or the URL asked too far): show the last one
    apply();
  }
}

/** The channel filter's suggestions come from the `channels` widget. @param {HTMLElement} root @param {any} data */
function renderChannels(root, data) {
  const names = (data.order || []).join("\n");
  if (root.dataset.names === names) return;
  root.dataset.names = names;
  root.replaceChildren(...(data.order || []).map((/** @type {string} */ name) => {
    const option = /** @type {HTMLOptionElement} */ (el("option"));
    option.value = name;
    return option;
  }));
}

/** @param {string} q */
function search(q) {
  state.q = q.trim();
  state.page = 1;
  apply();
}

function setupControls() {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(input.value);
  });
  $("jt-clear").addEventListener("click", () => {
    search("");
    input.focus();
  });
  statusSelect.addEventListener("change", () => {
    if (statusSelect.value !== "__query") search(setTerm(state.q, "status", statusSelect.value));
  });
  sourceSelect?.addEventListener("change", () => {
    if (sourceSelect.value !== "__query") search(setTerm(state.q, "source", sourceSelect.value));
  });
  const applyFilters = () => {
    let q = state.q;
    for (const box of textFilters) {
      const field = box.dataset.filter || "";
      const current = termValue(q, field); // null: several terms on this field, which an empty box leaves be
      const wanted = box.value.trim();
      if (current === null ? wanted !== "" : current !== wanted) q = setTerm(q, field, wanted);
    }
    if (q !== state.q) search(q);
  };
  for (const box of textFilters) box.addEventListener("change", applyFilters);
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  for (const button of card.querySelectorAll("button.sort-btn")) {
    button.addEventListener("click", () => {
      const name = /** @type {HTMLElement} */ (button).dataset.sort || "updated";
      const current = state.sort.replace(/^-/, "");
      if (current === name) state.sort = state.sort.startsWith("-") ? name : `-${name}`;
      else state.sort = name === "id" ? "id" : `-${name}`; // times and counts: newest / largest first
      state.page = 1;
      apply();
    });
  }
  prev.addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    apply();
  });
  next.addEventListener("click", () => {
    state.page = Math.min(lastPages, state.page + 1);
    apply();
  });
  attachOpen(tbody);
  setupHelp();
  // The server refuses a view it cannot serve (too many open, a bad key): say so instead of waiting.
  socket.addEventListener("server-error", (event) => {
    const { code, message } = /** @type {CustomEvent} */ (event).detail;
    if (wrap.hasAttribute("aria-busy") && (code === "unknown_widget" || code === "rate")) showError(message);
  });
}

function setupHelp() {
  /** @param {boolean} show */
  const toggle = (show) => {
    help.hidden = !show;
    helpButton.setAttribute("aria-expanded", String(show));
  };
  helpButton.addEventListener("click", () => toggle(help.hidden));
  for (const example of help.querySelectorAll(".jt-example")) {
    example.addEventListener("click", () => {
      toggle(false);
      search(example.textContent || "");
      input.focus();
    });
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !help.hidden) {
      toggle(false);
      helpButton.focus();
    }
  });
  document.addEventListener("click", (event) => {
    const target = /** @type {Node} */ (event.target);
    if (!help.hidden && !help.contains(target) && !helpButton.contains(target)) toggle(false);
  });
}

register("health", health.render); // the footer's intake line
register("jobs", render);
register("channels", renderChannels);
setupControls();
start();
// Arrived by "/" on a page without a search box (app.js): the job search, ready to type into.
if (location.hash === "#search") {
  input.focus();
  history.replaceState(null, "", location.pathname + location.search);
}
apply();
