// @ts-check
/**
 * The job details modal (the mockup's JobDetailsView), usable from any page:
 *
 *   import { openJobDetails, openJobList } from "/static/js/job-modal.js";
 *   openJobDetails("j_8f2c01");                        // one job: overview, payload, history, error, attempts
 *   openJobList("Jobs on eu-west-web-01-r2", ["j_1", "j_2"]);   // a small live table; a row opens its details
 *
 * It builds its own DOM on first use (a native <dialog>, appended to <body>), needs no markup from the page
 * and links web/css/jobs.css itself if the page did not. While open it shows `job?id=<id>` views mounted
 * through app.js, so a running job's status changes in place; closing unmounts them and returns focus to
 * what had it. Escape closes; Tab stays inside.
 *
 * Retry and Cancel (`job.retry`, `job.cancel`) are enabled when the user may do them and the job's live
 * status allows them: retry a failed, canceled or expired job; cancel a queued, scheduled or running one.
 */
import { perform } from "./action.js";
import { mount, register, unmount } from "./app.js";
import { refreshTimes } from "./clock.js";
import { can } from "./commands.js";
import { clockTime, el, linkStylesheet, setText } from "./format.js";
import { gate, regateAll } from "./gate.js";
import { viewKey } from "./views.js";
import { syncRows } from "./widgets/rows.js";
import { duration, field, setStatus, setTime } from "./widgets/jobs/common.js";

/** At most this many rows in list mode (each is a live `job?id=` view). */
export const LIST_CAP = 50;
/** Which statuses each job action applies to (docs/protocol.md section 2, `retry` and `cancel`). */
const ACTION_STATUSES = /** @type {Record<string, string[]>} */ ({
  retry: ["failed", "canceled", "expired"],
  cancel: ["queued", "scheduled", "running"],
});
const TABS = /** @type {const} */ ([
  ["overview", "Overview"],
  ["payload", "Payload"],
  ["history", "Event history"],
  ["error", "Error"],
  ["attempts", "Attempts"],
]);
const OVERVIEW = /** @type {const} */ ([
  ["id", "Job id"],
  ["status", "Status"],
  ["channel", "Channel"],
  ["fn", "Function"],
  ["runner", "Runner"],
  ["cid", "Correlation id"],
  ["attempt", "Attempt"],
  ["queued", "Queued"],
  ["started", "Started"],
  ["run_at", "Runs"],
  ["duration", "Duration"],
  ["updated", "Last event"],
  ["reason", "Reason"],
]);
const FOCUSABLE = 'a[href], button:not([disabled]), input, select, textarea, [tabindex]:not([tabindex="-1"])';

/** @type {HTMLDialogElement | null} */
let dialog = null;
/** @typedef {{title: HTMLElement, status: HTMLElement, back: HTMLButtonElement, body: HTMLElement}} Box */
/** @type {Box | null} the dialog's parts */
let box = null;
/** @type {Element | null} what had focus before the modal opened */
let opener = null;
/** @type {Set<HTMLElement>} roots the modal has mounted */
const roots = new Set();
/** @type {{title: string, ids: string[], pane: HTMLElement} | null} the list, while in list mode */
let list = null;
let tabSeq = 0;

register("job", (root, data) => {
  if (root.dataset.jm === "row") renderListRow(/** @type {HTMLTableRowElement} */ (root), data);
  else renderDetails(root, data);
});

/**
 * Open the details of one job (replacing whatever the modal showed).
 * @param {string} jobId
 */
export function openJobDetails(jobId) {
  const parts = open();
  list = null;
  showDetails(parts, jobId, false);
}

/**
 * Open a small live table of jobs; a row opens that job's details (with a way back to the list).
 * @param {string} title
 * @param {string[]} jobIds
 */
export function openJobList(title, jobIds) {
  const parts = open();
  unmountAll();
  const ids = [...new Set(jobIds)];
  list = { title, ids, pane: buildList(ids) };
  showList(parts);
}

/** Close the modal (if open), stop its live views and give focus back. */
export function closeJobModal() {
  if (dialog?.open) dialog.close();
  cleanup();
}

/** @returns {boolean} whether the modal is open */
export function isJobModalOpen() {
  return Boolean(dialog?.open);
}

// -- the dialog -----------------------------------------------------------------------------------

/** Whether the modal is showing (from open() until cleanup()). */
let shown = false;

/** Show the dialog (building it once) and return its parts. @returns {Box} */
function open() {
  const parts = ensureDialog();
  const d = /** @type {HTMLDialogElement} */ (dialog);
  if (!shown) {
    shown = true;
    opener = document.activeElement;
    document.documentElement.classList.add("jm-open");
  }
  if (!d.open) d.showModal();
  return parts;
}

/** @returns {Box} */
function ensureDialog() {
  if (box) return box;
  ensureStyles();
  const d = /** @type {HTMLDialogElement} */ (el("dialog", "jm"));
  d.id = "job-modal";
  d.setAttribute("role", "dialog");
  d.setAttribute("aria-modal", "true");
  d.setAttribute("aria-labelledby", "jm-title");
  const frame = el("div", "jm-box");
  const head = el("div", "jm-head");
  const back = /** @type {HTMLButtonElement} */ (el("button", "btn jm-back", "← Back to list"));
  back.type = "button";
  back.hidden = true;
  const title = el("h2", "jm-title");
  title.id = "jm-title";
  title.tabIndex = -1;
  const status = el("span", "badge");
  status.hidden = true;
  const close = el("button", "jm-close", "×");
  close.setAttribute("type", "button");
  close.setAttribute("aria-label", "Close");
  close.title = "Close (Escape)";
  head.append(back, title, status, close);
  const body = el("div", "jm-body");
  frame.append(head, body);
  d.append(frame);
  document.body.append(d);

  close.addEventListener("click", () => closeJobModal());
  back.addEventListener("click", () => showList(/** @type {Box} */ (box)));
  d.addEventListener("click", (event) => {
    if (event.target === d) closeJobModal(); // a click on the backdrop
  });
  d.addEventListener("keydown", (event) => trap(d, event));
  d.addEventListener("cancel", (event) => {
    event.preventDefault(); // Escape: close through our own path, so focus returns where it was
    closeJobModal();
  });
  d.addEventListener("close", () => {
    if (!d.open) cleanup(); // closed some other way (cleanup does nothing when closeJobModal did it)
  });
  box = { title, status, back, body };
  dialog = d;
  return box;
}

/** The page may not link jobs.css; the modal then links it itself. */
function ensureStyles() {
  linkStylesheet(new URL("../css/jobs.css", import.meta.url).href);
}

/**
 * Escape closes; Tab and Shift+Tab cycle inside the dialog.
 * @param {HTMLDialogElement} d @param {KeyboardEvent} event
 */
function trap(d, event) {
  if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    closeJobModal();
    return;
  }
  if (event.key !== "Tab") return;
  const items = /** @type {HTMLElement[]} */ ([...d.querySelectorAll(FOCUSABLE)]).filter(
    (node) => node.tabIndex >= 0 && node.getClientRects().length > 0,
  );
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  const active = document.activeElement;
  if (event.shiftKey && (active === first || !d.contains(active))) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (active === last || !d.contains(active))) {
    event.preventDefault();
    first.focus();
  }
}

function unmountAll() {
  for (const root of roots) unmount(root);
  roots.clear();
}

/** Stop the live views, empty the dialog and give focus back (once per opening). */
function cleanup() {
  if (!shown) return;
  shown = false;
  unmountAll();
  list = null;
  document.documentElement.classList.remove("jm-open");
  box?.body.replaceChildren();
  const back = opener;
  opener = null;
  if (back instanceof HTMLElement && back.isConnected) {
    back.focus();
    return;
  }
  // The opener went away (a table row that left its page): fall back to its twin or the page's search.
  const key = back instanceof HTMLElement ? back.dataset.key : undefined;
  const twin = key ? document.querySelector(`[data-key="${CSS.escape(key)}"][tabindex]`) : null;
  const target = /** @type {HTMLElement | null} */ (twin || document.querySelector("[data-search]") || document.body);
  target?.focus();
}

/** @param {HTMLElement} root @param {string} key */
function mountHere(root, key) {
  roots.add(root);
  mount(root, key);
}

/** @param {HTMLElement} root */
function unmountHere(root) {
  roots.delete(root);
  unmount(root);
}

// -- list mode --------------------------------------------------------------------------------------

/** @param {Box} parts */
function showList(parts) {
  if (!list) return;
  for (const root of [...roots]) if (root.dataset.jm === "details") unmountHere(root);
  parts.back.hidden = true;
  parts.status.hidden = true;
  setText(parts.title, list.title);
  parts.title.classList.remove("jm-mono");
  parts.body.replaceChildren(list.pane);
  const rows = /** @type {HTMLElement[]} */ ([...list.pane.querySelectorAll("tr[data-jm]")]);
  if (!roots.size) for (const tr of rows) mountRow(tr);
  const from = rows.find((tr) => tr.classList.contains("jm-from")) || rows[0];
  from?.classList.remove("jm-from");
  (from || parts.title).focus();
  refreshTimes();
}

/** @param {HTMLElement} tr */
function mountRow(tr) {
  mountHere(tr, viewKey("job", { id: tr.dataset.id }));
}

/** @param {string[]} ids */
function buildList(ids) {
  const pane = el("div", "jm-list");
  const visible = ids.slice(0, LIST_CAP);
  const note = el("p", "muted jm-note");
  note.textContent = ids.length
    ? `${ids.length} job${ids.length === 1 ? "" : "s"}, live. Select a row (or press Enter) for its details.`
    : "No jobs.";
  if (ids.length > LIST_CAP) note.textContent += ` Showing the first ${LIST_CAP}.`;
  pane.append(note);
  if (!visible.length) return pane;
  const table = el("table", "tbl jm-list-tbl");
  const head = el("thead");
  const headRow = el("tr");
  for (const label of ["Job", "Channel", "Function", "Status", "Updated"]) {
    const th = el("th", label === "Updated" ? "num" : "", label);
    th.setAttribute("scope", "col");
    headRow.append(th);
  }
  head.append(headRow);
  const tbody = el("tbody");
  for (const id of visible) {
    const tr = /** @type {HTMLTableRowElement} */ (el("tr", "job-row"));
    tr.tabIndex = 0;
    tr.dataset.jm = "row";
    tr.dataset.id = id;
    const first = el("td");
    const stack = el("div", "stack");
    stack.append(el("span", "id", id), el("span", "small"));
    first.append(stack);
    const status = el("td");
    status.append(el("span", "badge", "loading"));
    const age = el("td", "num");
    age.append(el("span"));
    tr.append(first, el("td"), el("td", "fn"), status, age);
    tbody.append(tr);
  }
  /** @param {Event} event */
  const pick = (event) => {
    const tr = /** @type {HTMLElement} */ (event.target).closest("tr[data-jm]");
    if (!(tr instanceof HTMLElement) || !tr.dataset.id) return;
    tr.classList.add("jm-from");
    showDetails(/** @type {Box} */ (box), tr.dataset.id, true);
  };
  tbody.addEventListener("click", pick);
  tbody.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target instanceof HTMLTableRowElement) {
      event.preventDefault();
      pick(event);
    }
  });
  table.append(head, tbody);
  pane.append(table);
  return pane;
}

/** @param {HTMLTableRowElement} tr @param {any} data */
function renderListRow(tr, data) {
  const [first, channel, fn, status, age] = tr.cells;
  const badge = /** @type {Element} */ (status.firstElementChild);
  const small = /** @type {Element} */ (first.querySelector(".small"));
  const ageSpan = /** @type {HTMLElement} */ (age.firstElementChild);
  if (!data.found) {
    setText(badge, "not held");
    badge.className = "badge unknown";
    setText(small, "gone from jobpulse");
    setTime(ageSpan, {});
    return;
  }
  const job = data.job;
  setText(small, job.cid || "");
  setText(channel, job.channel);
  setText(fn, job.fn);
  fn.title = job.fn;
  setStatus(badge, job.status);
  setTime(ageSpan, { since: job.updated, ago: true });
  tr.setAttribute("aria-label", `job ${job.job}, ${job.status}: open details`);
}

// -- details mode -----------------------------------------------------------------------------------

/**
 * May the user retry / cancel the job the pane shows, in its status now?
 * @param {HTMLElement} pane @param {string} op
 */
function jobVerdict(pane, op) {
  const verdict = can(`job.${op}`, pane.dataset.id || "");
  if (!verdict.ok) return verdict;
  const status = pane.dataset.status;
  if (!status) return { ok: false, reason: "waiting for the job's status", local: true };
  if (!ACTION_STATUSES[op].includes(status)) {
    const allowed = ACTION_STATUSES[op].join(", ").replace(/, (?=[^,]*$)/, " or ");
    return { ok: false, reason: `only a ${allowed} job can be ${op === "retry" ? "retried" : "canceled"}; this one is ${status}` };
  }
  return verdict;
}

/** @param {Box} parts @param {string} jobId @param {boolean} fromList */
function showDetails(parts, jobId, fromList) {
  for (const root of [...roots]) {
    if (root.dataset.jm === "details" || !fromList) unmountHere(root);
  }
  parts.back.hidden = !fromList;
  setText(parts.title, `Job ${jobId}`);
  parts.title.classList.add("jm-mono");
  parts.status.hidden = true;
  const pane = buildDetails(jobId);
  parts.body.replaceChildren(pane);
  mountHere(pane, viewKey("job", { id: jobId }));
  parts.title.focus(); // the heading names the job; Tab goes on to the tabs
}

/** @param {string} jobId */
function buildDetails(jobId) {
  const pane = el("div", "jm-details");
  pane.dataset.jm = "details";
  pane.dataset.id = jobId;
  const loading = el("p", "muted jm-loading", `Loading job ${jobId}…`);
  loading.dataset.f = "loading";
  const missing = el("p", "jm-missing");
  missing.dataset.f = "missing";
  missing.hidden = true;
  const found = el("div", "jm-found");
  found.dataset.f = "found";
  found.hidden = true;

  const actions = el("div", "jm-actions");
  const reasonId = `jm-reason-${++tabSeq}`;
  for (const [op, label] of [["retry", "Retry"], ["cancel", "Cancel job"]]) {
    const button = /** @type {HTMLButtonElement} */ (el("button", op === "cancel" ? "btn danger" : "btn", label));
    button.type = "button";
    button.dataset.op = op;
    gate(button, () => jobVerdict(pane, op), { note: reasonId });
    button.addEventListener("click", () => {
      perform(`job.${op}`, { job: jobId }, { title: `${label} ${jobId}`, verb: label, button });
    });
    actions.append(button);
  }
  // A function that misbehaves can be slowed down everywhere it runs (sources that have rate limits).
  const limit = /** @type {HTMLButtonElement} */ (el("button", "btn", "Rate limit…"));
  limit.type = "button";
  limit.dataset.op = "rate";
  gate(limit, () => can("task.rate_limit"), { note: reasonId });
  limit.addEventListener("click", () => {
    const fn = field(pane, "fn").textContent || "";
    import("./forms.js").then((forms) => forms.open("rate", { fn }, limit));
  });
  actions.append(limit);
  const reason = el("span", "muted jm-reason gate-note");
  reason.id = reasonId;
  reason.hidden = true;
  actions.append(reason);

  const tablist = el("div", "jm-tabs");
  tablist.setAttribute("role", "tablist");
  tablist.setAttribute("aria-label", "Job details");
  const panels = el("div", "jm-panels");
  const seq = ++tabSeq;
  for (const [key, label] of TABS) {
    const tab = el("button", "jm-tab", label);
    tab.setAttribute("type", "button");
    tab.setAttribute("role", "tab");
    tab.id = `jm-tab-${seq}-${key}`;
    tab.dataset.tab = key;
    tab.setAttribute("aria-controls", `jm-panel-${seq}-${key}`);
    const selected = key === "overview";
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    tablist.append(tab);
    const panel = el("section", "jm-panel");
    panel.id = `jm-panel-${seq}-${key}`;
    panel.dataset.panel = key;
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    panel.tabIndex = 0;
    panel.hidden = !selected;
    panels.append(panel);
  }
  const tabs = /** @type {HTMLElement[]} */ ([...tablist.children]);
  /** @param {HTMLElement} tab @param {boolean} focus */
  const select = (tab, focus) => {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
      const panel = /** @type {HTMLElement} */ (panels.querySelector(`[data-panel="${other.dataset.tab}"]`));
      panel.hidden = !on;
    }
    if (focus) tab.focus();
  };
  tablist.addEventListener("click", (event) => {
    const tab = /** @type {HTMLElement} */ (event.target).closest('[role="tab"]');
    if (tab instanceof HTMLElement) select(tab, true);
  });
  tablist.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(/** @type {HTMLElement} */ (event.target));
    if (index < 0) return;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    select(tabs[(next + tabs.length) % tabs.length], true);
  });

  // Overview: a definition list, one entry per field.
  const overview = /** @type {HTMLElement} */ (panels.querySelector('[data-panel="overview"]'));
  const dl = el("dl", "jm-dl");
  for (const [key, label] of OVERVIEW) {
    const row = el("div", "jm-field");
    row.dataset.row = key;
    const dd = el("dd");
    dd.dataset.f = key;
    if (key === "status") dd.append(el("span", "badge"));
    if (["queued", "started", "run_at", "updated"].includes(key)) {
      dd.append(el("span", "jm-age"), el("span", "muted jm-clock"));
    }
    if (key === "duration") dd.append(el("span"), el("span", "jm-age"));
    row.append(el("dt", "", label), dd);
    dl.append(row);
  }
  overview.append(dl);

  const payload = /** @type {HTMLElement} */ (panels.querySelector('[data-panel="payload"]'));
  const payloadNote = el("p", "muted jm-note");
  payloadNote.dataset.f = "payload-note";
  const payloadPre = el("pre", "jm-pre");
  payloadPre.dataset.f = "payload";
  payloadPre.tabIndex = 0;
  payload.append(payloadNote, payloadPre);

  const history = /** @type {HTMLElement} */ (panels.querySelector('[data-panel="history"]'));
  history.append(miniTable(["Time", "Event", "Attempt", "Runner"], "history"));
  const historyEmpty = el("p", "muted jm-note", "No events recorded.");
  historyEmpty.dataset.f = "history-empty";
  history.append(historyEmpty);

  const error = /** @type {HTMLElement} */ (panels.querySelector('[data-panel="error"]'));
  const errorLine = el("p", "jm-error");
  errorLine.dataset.f = "error";
  const traceNote = el("p", "muted jm-note");
  traceNote.dataset.f = "trace-note";
  const trace = el("pre", "jm-pre jm-trace");
  trace.dataset.f = "traceback";
  trace.tabIndex = 0;
  trace.setAttribute("aria-label", "stack trace");
  error.append(errorLine, traceNote, trace);

  const attempts = /** @type {HTMLElement} */ (panels.querySelector('[data-panel="attempts"]'));
  attempts.append(miniTable(["Attempt", "Started", "Ended", "Took", "Outcome", "Runner"], "attempts"));
  const attemptsEmpty = el("p", "muted jm-note", "No attempt has started yet.");
  attemptsEmpty.dataset.f = "attempts-empty";
  attempts.append(attemptsEmpty);

  found.append(actions, tablist, panels);
  pane.append(loading, missing, found);
  return pane;
}

/** @param {string[]} labels @param {string} name */
function miniTable(labels, name) {
  const table = el("table", "tbl jm-mini");
  const head = el("thead");
  const row = el("tr");
  for (const label of labels) {
    const th = el("th", "", label);
    th.setAttribute("scope", "col");
    row.append(th);
  }
  head.append(row);
  const body = el("tbody");
  body.dataset.f = name;
  table.append(head, body);
  return table;
}

/** @param {HTMLElement} pane @param {any} data */
function renderDetails(pane, data) {
  field(pane, "loading").hidden = true;
  const missing = field(pane, "missing");
  const found = field(pane, "found");
  if (!data.found) {
    missing.hidden = false;
    found.hidden = true;
    setText(
      missing,
      `jobpulse does not hold job ${data.id} (finished jobs are kept up to JOBPULSE_MAX_JOBS; older ones are gone)`,
    );
    if (box) box.status.hidden = true;
    return;
  }
  missing.hidden = true;
  found.hidden = false;
  const job = data.job;
  if (box) {
    setStatus(box.status, job.status);
    box.status.hidden = false;
  }
  if (pane.dataset.status !== job.status) {
    pane.dataset.status = job.status;
    regateAll(pane);
  }
  renderOverview(pane, job, data.fn_stats);
  renderPayload(pane, job.payload);
  renderHistory(pane, data.history || []);
  renderError(pane, job);
  renderAttempts(pane, data.attempts || {}, job);
}

/**
 * "; this function's p95 is 4.1 s" beside a finished job's runtime: is this run typical? (`fn_stats`, protocol 3.13).
 * @param {any} stats @param {number | undefined} took
 */
function typical(stats, took) {
  if (!stats || typeof stats.p95 !== "number" || typeof took !== "number") return "";
  // The p95 read back may be up to 2% low (the sketch's error): only a run clearly above it is called slow.
  const slow = took > stats.p95 * 1.02 ? " (slower than 95% of its runs)" : "";
  return `; this function's p95 is ${duration(stats.p95)} over ${stats.window} min${slow}`;
}

/** @param {HTMLElement} pane @param {any} job @param {any} [fnStats] its function's percentiles (protocol 3.13) */
function renderOverview(pane, job, fnStats) {
  /** @param {string} key @param {string} text */
  const put = (key, text) => setText(field(pane, key), text);
  put("id", job.job);
  setStatus(/** @type {Element} */ (field(pane, "status").firstElementChild), job.status);
  put("channel", job.channel);
  put("fn", job.fn);
  put("runner", job.runner || "–");
  put("cid", job.cid || "–");
  put("attempt", job.max_attempts ? `${job.attempt} of ${job.max_attempts}` : String(job.attempt ?? "–"));
  for (const key of ["queued", "started", "updated"]) when(pane, key, { since: job[key], ago: true });
  const row = /** @type {HTMLElement} */ (pane.querySelector('[data-row="run_at"]'));
  row.hidden = typeof job.run_at !== "number";
  when(pane, "run_at", { until: job.run_at });
  const [tookText, tookLive] = /** @type {HTMLElement[]} */ ([...field(pane, "duration").children]);
  const running = job.status === "running" && typeof job.started === "number";
  setText(tookText, running ? "running for " : duration(job.duration) + typical(fnStats, job.duration));
  tookLive.hidden = !running;
  setTime(tookLive, running ? { since: job.started } : {});
  if (!running) setText(tookLive, "");
  const reason = /** @type {HTMLElement} */ (pane.querySelector('[data-row="reason"]'));
  reason.hidden = !job.reason;
  put("reason", job.reason || "–");
}

/**
 * A time field: a ticking age (or countdown) and the wall-clock time beside it.
 * @param {HTMLElement} pane @param {string} key @param {{since?: number, until?: number, ago?: boolean}} at
 */
function when(pane, key, at) {
  const dd = field(pane, key);
  const [age, clock] = /** @type {HTMLElement[]} */ ([...dd.children]);
  setTime(age, at);
  const ts = at.since ?? at.until;
  setText(clock, typeof ts === "number" ? ` · ${clockTime(ts)}` : "");
}

/** @param {HTMLElement} pane @param {string | undefined} text */
function renderPayload(pane, text) {
  const note = field(pane, "payload-note");
  const pre = field(pane, "payload");
  if (!text) {
    setText(note, "No payload was reported for this job.");
    pre.hidden = true;
    return;
  }
  pre.hidden = false;
  /** @type {any} */
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    setText(note, "The payload as received (not valid JSON):");
    setText(pre, text);
    return;
  }
  if (parsed && typeof parsed === "object" && parsed.truncated === true && typeof parsed.head === "string") {
    setText(
      note,
      `Truncated: the payload was ${Number(parsed.bytes).toLocaleString("en-US")} bytes and jobpulse keeps at most ` +
        "JOBPULSE_PAYLOAD_CAP bytes (default 4,096). Its beginning, as received:",
    );
    setText(pre, parsed.head);
    return;
  }
  setText(note, "");
  setText(pre, JSON.stringify(parsed, null, 2));
}

/** @param {HTMLElement} pane @param {any[]} history */
function renderHistory(pane, history) {
  /** @type {Record<string, any>} */
  const rows = {};
  const order = history.map((entry, i) => {
    rows[String(i)] = entry;
    return String(i);
  });
  syncRows(field(pane, "history"), { rows, order }, newHistoryRow, updateHistoryRow);
  field(pane, "history-empty").hidden = history.length > 0;
}

function newHistoryRow() {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr"));
  const time = el("td");
  time.append(el("span", "jm-clock"), el("span", "muted jm-age"));
  tr.append(time, el("td"), el("td", "num"), el("td", "id"));
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any[]} entry [ts, event, attempt, runner?] */
function updateHistoryRow(tr, entry) {
  const [ts, event, attempt, runner] = entry;
  const [time, what, number, who] = tr.cells;
  const [clock, age] = /** @type {HTMLElement[]} */ ([...time.children]);
  setText(clock, clockTime(ts));
  setTime(age, { since: ts, ago: true });
  setText(what, event);
  what.className = `jm-ev ev-${event}`;
  setText(number, String(attempt));
  setText(who, runner || "–");
}

/** @param {HTMLElement} pane @param {any} job */
function renderError(pane, job) {
  const line = field(pane, "error");
  const note = field(pane, "trace-note");
  const trace = field(pane, "traceback");
  const tab = /** @type {HTMLElement} */ (pane.querySelector('[role="tab"][data-tab="error"]'));
  tab.classList.toggle("has-error", Boolean(job.error || job.traceback));
  setText(tab, job.error || job.traceback ? "Error •" : "Error");
  tab.setAttribute("aria-label", job.error || job.traceback ? "Error (this job has one)" : "Error");
  setText(line, job.error || "No error recorded for this job.");
  line.classList.toggle("muted", !job.error);
  trace.hidden = !job.traceback;
  setText(trace, job.traceback || "");
  let text = "";
  if (!job.traceback) text = job.error ? "No stack trace was reported." : "";
  else if (job.traceback.startsWith("…")) {
    text = "The start of the trace was cut: jobpulse keeps its last JOBPULSE_TRACEBACK_CAP bytes (default 8,192).";
  }
  setText(note, text);
  note.hidden = !text;
}

/** @param {HTMLElement} pane @param {Record<string, any>} attempts @param {any} job */
function renderAttempts(pane, attempts, job) {
  const order = Object.keys(attempts).sort((a, b) => Number(a) - Number(b));
  /** @type {Record<string, any>} */
  const rows = {};
  for (const key of order) {
    rows[key] = { n: key, running: job.status === "running" && Number(key) === job.attempt, ...attempts[key] };
  }
  syncRows(field(pane, "attempts"), { rows, order }, newAttemptRow, updateAttemptRow);
  field(pane, "attempts-empty").hidden = order.length > 0;
}

function newAttemptRow() {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr"));
  const outcome = el("td");
  outcome.append(el("span", "badge"));
  tr.append(el("td", "num"), el("td"), el("td"), el("td", "num"), outcome, el("td", "id"));
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} a */
function updateAttemptRow(tr, a) {
  const [n, started, ended, took, outcome, runner] = tr.cells;
  setText(n, a.n);
  setText(started, typeof a.started === "number" ? clockTime(a.started) : "–");
  setText(ended, typeof a.ended === "number" ? clockTime(a.ended) : "–");
  const seconds = typeof a.started === "number" && typeof a.ended === "number" ? a.ended - a.started : null;
  setText(took, duration(seconds));
  const badge = /** @type {Element} */ (outcome.firstElementChild);
  if (a.outcome) setStatus(badge, a.outcome);
  else setStatus(badge, a.running ? "running" : "unknown");
  setText(runner, a.runner || "–");
}
