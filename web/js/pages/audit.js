// @ts-check
/**
 * The audit log (/admin/jobs/audit): entries from `GET /api/audit` (newest first, a page at a time, "Older
 * entries" follows `next`), filtered by user, action, result and time. The filters live in the URL, so a
 * view can be linked, and the "Download CSV" link carries the same filters to `/api/audit.csv`.
 *
 * New entries arrive live through the `activity` widget: one that is newer than the newest shown and
 * matches the filters is put on top. The widget's rows carry fewer fields than the log (no arguments,
 * phase, duration, command id or address); those cells say "–" until the page is reloaded.
 */
import { listen, register, socket, start } from "../app.js";
import { el, setText } from "../format.js";
import * as activity from "../widgets/activity.js";
import * as health from "../widgets/health.js";

/** @typedef {import("../widgets/activity.js").Entry & {id: string, args?: string, cmd?: string, addr?: string,
 *   source?: string}} AuditEntry */
/** @typedef {{user: string, action: string, ok: string, since: string, until: string, source: string}} Filters */

const PAGE = 50; // entries a request: the first load stays small
const FILTERS = /** @type {(keyof Filters)[]} */ (["user", "action", "ok", "since", "until", "source"]);

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($("audit-filters"));
const user = /** @type {HTMLInputElement} */ ($("f-user"));
const action = /** @type {HTMLSelectElement} */ ($("f-action"));
const ok = /** @type {HTMLSelectElement} */ ($("f-ok"));
const since = /** @type {HTMLInputElement} */ ($("f-since"));
const until = /** @type {HTMLInputElement} */ ($("f-until"));
// With several sources: which one a command went to (absent with one source).
const source = /** @type {HTMLSelectElement | null} */ (document.getElementById("f-source"));
const rows = $("audit-rows");
const more = /** @type {HTMLButtonElement} */ ($("audit-more"));
const summary = $("audit-summary");
const errorBox = $("audit-error");
const csv = /** @type {HTMLAnchorElement} */ ($("audit-csv"));

/** @type {Filters} */
let filters = fromUrl();
/** @type {string | null} the `before` of the next page, null at the end */
let next = null;
/** Ids shown, so a live entry is not added twice. */
const seen = new Set();
/** The newest entry shown (stream id): only entries after it are new. */
let newest = "";
let shown = 0;
/** Whether the first page of the current filters is in: live entries wait for it (to know what is new). */
let loaded = false;
/** Bumped by every reload, so an answer to an older request is dropped. */
let generation = 0;

/** @returns {Filters} */
function fromUrl() {
  const q = new URLSearchParams(location.search);
  const number = (/** @type {string} */ name) => {
    const v = q.get(name) || "";
    return v && Number.isFinite(Number(v)) ? v : "";
  };
  const okValue = q.get("ok") || "";
  return {
    user: (q.get("user") || "").slice(0, 200),
    action: (q.get("action") || "").slice(0, 64),
    ok: okValue === "true" || okValue === "false" ? okValue : "",
    since: number("since"),
    until: number("until"),
    source: (q.get("source") || "").slice(0, 16),
  };
}

/** The filters as query parameters (empty ones left out). @param {Filters} f */
function query(f) {
  const q = new URLSearchParams();
  for (const name of FILTERS) if (f[name]) q.set(name, f[name]);
  return q;
}

/** epoch seconds -> the value of a datetime-local input (local time). @param {string} value */
function toLocalInput(value) {
  if (!value) return "";
  const d = new Date(Number(value) * 1000);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** a datetime-local value -> epoch seconds, as text ("" when empty or bad). @param {string} value */
function fromLocalInput(value) {
  if (!value) return "";
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? String(Math.floor(t / 1000)) : "";
}

function showFilters() {
  user.value = filters.user;
  if (filters.action && ![...action.options].some((o) => o.value === filters.action)) {
    const option = /** @type {HTMLOptionElement} */ (el("option", "", filters.action));
    option.value = filters.action;
    action.append(option);
  }
  action.value = filters.action;
  ok.value = filters.ok;
  since.value = toLocalInput(filters.since);
  until.value = toLocalInput(filters.until);
  if (source) source.value = filters.source;
}

function readFilters() {
  return {
    user: user.value.trim().slice(0, 200),
    action: action.value,
    ok: ok.value,
    since: fromLocalInput(since.value),
    until: fromLocalInput(until.value),
    source: source ? source.value : "",
  };
}

/** Compare two stream ids ("ms-seq"): negative, zero or positive. @param {string} a @param {string} b */
function compareIds(a, b) {
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  return Number(am) - Number(bm) || Number(as) - Number(bs);
}

/** Does a (live) entry pass the filters? The server's rules (server/audit.py Filters). @param {AuditEntry} e */
function matches(e) {
  if (filters.user && e.user !== filters.user) return false;
  if (filters.action) {
    const prefix = filters.action.endsWith(".");
    if (!(e.action === filters.action || (prefix && (e.action || "").startsWith(filters.action)))) return false;
  }
  if (filters.ok && String(Boolean(e.ok)) !== filters.ok) return false;
  if (filters.since && e.ts < Number(filters.since)) return false;
  if (filters.until && e.ts > Number(filters.until)) return false;
  if (filters.source && !(e.source || "").split(",").includes(filters.source)) return false;
  return true;
}

// -- rows -------------------------------------------------------------------------------------------------

/** @param {AuditEntry} e */
function makeRow(e) {
  const tr = activity.create();
  tr.dataset.key = e.id;
  const extra = [el("td", "mono c-args"), el("td", "c-phase"), el("td", "num c-ms"), el("td", "mono c-cmd")];
  tr.append(...extra);
  const cells = /** @type {HTMLTableCellElement[]} */ ([...tr.cells]);
  activity.fillCells(cells, e);
  // The log's time is a date and a time: entries go back weeks.
  setText(cells[0], typeof e.ts === "number" ? new Date(e.ts * 1000).toLocaleString() : "–");
  const [args, phase, ms, cmd] = extra;
  setText(args, e.args || "–");
  args.title = e.args || "";
  setText(phase, [e.phase, e.source].filter(Boolean).join(" · ") || "–"); // and the source(s) it went to
  setText(ms, typeof e.ms === "number" && e.ms > 0 ? String(Math.round(e.ms)) : "–");
  setText(cmd, [e.cmd, e.addr].filter(Boolean).join(" · ") || "–");
  cmd.title = cmd.textContent || "";
  return tr;
}

function showCounts() {
  setText(summary, shown ? `${shown} entr${shown === 1 ? "y" : "ies"} shown${next ? ", more below" : ""}, newest first` : "no entries");
  $("audit-empty").hidden = shown > 0;
  more.hidden = !next;
}

/** @param {string} text */
function showError(text) {
  setText(errorBox, text);
  errorBox.hidden = !text;
}

/** Fetch one page (the first, or the one before `before`) and add its rows below. @param {string | null} before */
async function load(before) {
  const mine = generation;
  const q = query(filters);
  q.set("limit", String(PAGE));
  if (before) q.set("before", before);
  more.disabled = true;
  try {
    const response = await fetch(`/api/audit?${q}`, { headers: { accept: "application/json" }, credentials: "same-origin" });
    if (mine !== generation) return;
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      return;
    }
    const body = await response.json().catch(() => null);
    if (mine !== generation) return;
    if (!response.ok || !body) {
      showError(`The audit log could not be read: ${body?.message || response.statusText || response.status}`);
      return;
    }
    showError("");
    const entries = /** @type {AuditEntry[]} */ (body.entries || []);
    const fragment = document.createDocumentFragment();
    for (const e of entries) {
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      if (!newest || compareIds(e.id, newest) > 0) newest = e.id;
      fragment.append(makeRow(e));
      shown += 1;
    }
    rows.append(fragment);
    next = body.next || null;
    if (!before) {
      loaded = true;
      const live = socket.data("activity");
      if (live) onActivity(live); // entries that came while the page was being fetched
    }
    if (typeof body.retention_days === "number") {
      setText($("audit-retention"), `Entries are kept ${body.retention_days} days (JOBPULSE_AUDIT_RETENTION_DAYS).`);
    }
    showCounts();
  } catch (error) {
    if (mine === generation) showError(`The audit log could not be read: ${error}`);
  } finally {
    more.disabled = false;
  }
}

/** Start over with the current filters: the URL, the CSV link, the rows. */
function reload() {
  generation += 1;
  const q = query(filters);
  const url = location.pathname + (q.size ? `?${q}` : "");
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  csv.href = `/api/audit.csv${q.size ? `?${q}` : ""}`;
  rows.replaceChildren();
  seen.clear();
  newest = "";
  shown = 0;
  next = null;
  loaded = false;
  setText(summary, "Loading…");
  load(null);
}

// -- live entries -----------------------------------------------------------------------------------------

/** @param {{rows: Record<string, import("../widgets/activity.js").Entry>, order: string[]}} data */
function onActivity(data) {
  if (!loaded) return;
  const fresh = [];
  for (const id of data.order || []) {
    if (seen.has(id)) continue;
    if (newest && compareIds(id, newest) <= 0) continue; // older than what the page shows: not new
    const row = data.rows[id];
    if (!row) continue;
    fresh.push(/** @type {AuditEntry} */ ({ ...row, id }));
  }
  // order is newest first: insert the oldest fresh entry first, each on top.
  for (const e of fresh.reverse()) {
    seen.add(e.id);
    if (!newest || compareIds(e.id, newest) > 0) newest = e.id;
    if (!matches(e)) continue;
    const tr = makeRow(e);
    tr.classList.add("is-new");
    rows.prepend(tr);
    shown += 1;
  }
  if (fresh.length) showCounts();
}

// -- wiring -----------------------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  filters = readFilters();
  reload();
});
for (const control of [action, ok, since, until]) {
  control.addEventListener("change", () => {
    filters = readFilters();
    reload();
  });
}
$("f-reset").addEventListener("click", () => {
  filters = { user: "", action: "", ok: "", since: "", until: "", source: "" };
  showFilters();
  reload();
});
more.addEventListener("click", () => {
  if (next) load(next);
});

register("health", health.render);
showFilters();
reload();
start();
// Live entries are taken only once the first page is in (onActivity waits for `loaded`), so what is "new"
// is decided against what the page shows.
listen("activity", onActivity);
