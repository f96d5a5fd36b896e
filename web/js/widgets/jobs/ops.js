// @ts-check
/**
 * The live parts of the Job Operations Center's tiles: what each action would touch, now. Each renderer
 * builds its part once and then changes text and keyed rows in place.
 *
 * - channels (docs/protocol.md 3.9): the channels a job could go to; queued counts per channel (Purge)
 * - snapshot (3.8): the last hour's outcomes (Test Batch); the longest-running job (Clear Stuck)
 * - fleet_summary (3.9): the runners a broadcast would reach
 * - hot_issues (3.8): `stuck_jobs` alerts per channel (Clear Stuck), `silent_runner` alerts (Cleanup Consumers)
 */
import { count, el, setText } from "../../format.js";
import { ageCell, newRow, stackCell, syncRows } from "../rows.js";
import { field, openJob, setTime } from "./common.js";

/**
 * Build `root`'s content once from `make()`; later calls return the same nodes.
 * @param {HTMLElement} root @param {() => Node[]} make
 */
function once(root, make) {
  if (root.dataset.built !== "1") {
    root.replaceChildren(...make());
    root.dataset.built = "1";
  }
  return root;
}

/** @param {string} name @param {string} [className] @param {string} [text] */
function part(name, className = "", text = "") {
  const node = el("span", className, text);
  node.dataset.f = name;
  return node;
}

/** @param {string} name @param {string} text */
function emptyLine(name, text) {
  const p = el("p", "empty", text);
  p.dataset.f = name;
  return p;
}

/** @param {string[]} labels @param {string} name */
function table(labels, name) {
  const wrap = el("div", "scroll");
  const t = el("table", "tbl");
  const head = el("tr");
  for (const label of labels) {
    const th = el("th", label === labels[0] ? "" : "num", label);
    th.setAttribute("scope", "col");
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const body = el("tbody");
  body.dataset.f = name;
  t.append(thead, body);
  wrap.append(t);
  wrap.dataset.f = `${name}-table`;
  return wrap;
}

// -- channels -------------------------------------------------------------------------------------------

/** Run Simple Job: the channels jobpulse knows. @param {HTMLElement} root @param {any} data */
export function channelsList(root, data) {
  once(root, () => [el("p", "", ""), emptyLine("empty", "No channel has reported its depth yet.")]);
  const names = data.order || [];
  const line = /** @type {HTMLElement} */ (root.firstElementChild);
  line.hidden = !names.length;
  setText(line, `${names.length} channel${names.length === 1 ? "" : "s"} known: ${names.join(", ")}`);
  field(root, "empty").hidden = names.length > 0;
}

/**
 * Purge Channel: what a purge would delete (queued) and leave (scheduled, running).
 * @param {HTMLElement} root @param {any} data
 */
export function purge(root, data) {
  once(root, () => [
    table(["Channel", "Queued", "Scheduled", "Running"], "rows"),
    emptyLine("empty", "No channel has reported its depth yet."),
  ]);
  syncRows(field(root, "rows"), data, newPurgeRow, updatePurgeRow);
  field(root, "rows-table").hidden = !(data.order || []).length;
  field(root, "empty").hidden = (data.order || []).length > 0;
}

function newPurgeRow() {
  return newRow(el("td", "id"), el("td", "num"), el("td", "num"), el("td", "num"));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function updatePurgeRow(tr, row) {
  const [name, queued, scheduled, inflight] = tr.cells;
  setText(name, row.channel);
  setText(queued, count(row.queued));
  queued.classList.toggle("strong", row.queued > 0);
  setText(scheduled, count(row.scheduled));
  setText(inflight, count(row.inflight));
}

// -- snapshot -------------------------------------------------------------------------------------------

/** Run Test Batch: how the last hour went. @param {HTMLElement} root @param {any} data */
export function lastHour(root, data) {
  once(root, () => {
    const p = el("p", "");
    p.append(
      "Last hour: ",
      part("completed"),
      " completed · ",
      part("failed"),
      " failed · ",
      part("retries"),
      " retries. ",
      part("scheduled"),
      " scheduled for the rest of today.",
    );
    return [p];
  });
  setText(field(root, "completed"), count(data.completed_hour));
  setText(field(root, "failed"), count(data.failed_hour));
  setText(field(root, "retries"), count(data.retries_hour));
  setText(field(root, "scheduled"), count(data.scheduled_today));
}

/**
 * Clear Stuck Jobs: the longest-running job, with a way into its details.
 * @param {HTMLElement} root @param {any} data
 */
export function longest(root, data) {
  once(root, () => {
    const p = el("p", "");
    const button = el("button", "link-btn");
    button.setAttribute("type", "button");
    button.dataset.f = "job";
    button.addEventListener("click", () => {
      if (button.dataset.job) openJob(button.dataset.job);
    });
    const age = part("age");
    p.append("Longest running now: ", button, " on ", part("channel"), ", for ", age, ".");
    p.dataset.f = "line";
    return [p, emptyLine("none", "No job is running now.")];
  });
  const job = data.longest;
  field(root, "line").hidden = !job;
  field(root, "none").hidden = Boolean(job);
  if (!job) return;
  const button = field(root, "job");
  setText(button, job.job);
  button.dataset.job = job.job;
  button.setAttribute("aria-label", `job ${job.job}: open details`);
  setText(field(root, "channel"), job.channel);
  setTime(field(root, "age"), { since: job.since });
}

// -- fleet_summary --------------------------------------------------------------------------------------

/** Broadcast to Runners: who would answer. @param {HTMLElement} root @param {any} data */
export function broadcast(root, data) {
  once(root, () => {
    const reach = el("p", "");
    reach.append("Would reach ", part("live", "strong"), " live runners (", part("detail"), ").");
    const silent = el("p", "muted");
    silent.dataset.f = "silent";
    return [reach, silent];
  });
  const c = data.counts || {};
  const live = (c.online || 0) + (c.busy || 0) + (c.draining || 0);
  setText(field(root, "live"), count(live));
  const detail = `${count(c.online || 0)} online, ${count(c.busy || 0)} busy, ${count(c.draining || 0)} draining`;
  setText(field(root, "detail"), detail);
  const quiet = (c.stale || 0) + (c.offline || 0);
  const silent = field(root, "silent");
  silent.hidden = !quiet;
  setText(silent, `${count(c.stale || 0)} stale and ${count(c.offline || 0)} offline would not answer.`);
}

// -- hot_issues -----------------------------------------------------------------------------------------

/**
 * The alerts of one rule, as `{rows, order}`.
 * @param {any} data @param {string} rule
 */
function alertsOf(data, rule) {
  const order = (data.order || []).filter((/** @type {string} */ id) => data.rows[id]?.rule === rule);
  return { rows: data.rows || {}, order };
}

/** Clear Stuck Jobs: stuck jobs per channel. @param {HTMLElement} root @param {any} data */
export function stuck(root, data) {
  once(root, () => [
    table(["Stuck jobs", "Raised"], "rows"),
    emptyLine("empty", "No stuck jobs: no running job has passed the stuck threshold (JOBPULSE_STUCK_AFTER_S)."),
  ]);
  const alerts = alertsOf(data, "stuck_jobs");
  syncRows(field(root, "rows"), alerts, newAlertRow, updateAlertRow);
  field(root, "rows-table").hidden = !alerts.order.length;
  field(root, "empty").hidden = alerts.order.length > 0;
}

/**
 * Cleanup Consumers: runners that went silent without saying they stopped.
 * @param {HTMLElement} root @param {any} data
 */
export function silent(root, data) {
  once(root, () => [
    table(["Silent runner", "Raised"], "rows"),
    emptyLine("empty", "No silent runners: every runner that stopped said so."),
  ]);
  const alerts = alertsOf(data, "silent_runner");
  syncRows(field(root, "rows"), alerts, newAlertRow, updateAlertRow);
  field(root, "rows-table").hidden = !alerts.order.length;
  field(root, "empty").hidden = alerts.order.length > 0;
}

function newAlertRow() {
  const tr = newRow(stackCell(), ageCell(true));
  const label = el("span", "badge");
  tr.cells[0].querySelector(".stack")?.prepend(label);
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} alert */
function updateAlertRow(tr, alert) {
  const [what, since] = tr.cells;
  const stack = /** @type {Element} */ (what.firstElementChild);
  const [badge, title, detail] = /** @type {HTMLElement[]} */ ([...stack.children]);
  if (alert.rule === "silent_runner") {
    const status = alert.severity === "critical" ? "offline" : "stale";
    setText(badge, status);
    badge.className = `badge ${status}`;
    setText(title, alert.key);
  } else {
    setText(badge, alert.severity);
    badge.className = "badge stale";
    setText(title, alert.title);
  }
  setText(detail, alert.detail || "");
  what.title = `${alert.title}: ${alert.detail || ""}`;
  setTime(/** @type {HTMLElement} */ (since.firstElementChild), { since: alert.since, ago: true });
}
