// @ts-check
/**
 * Platform Status (`platform` widget, docs/protocol.md 3.11): the KPI strip (jobpulse's own API latency and
 * load, jobs health with the rule that set it, open incidents, webhooks, connected clients) and the service
 * matrix with each component's last incident.
 * The same widget feeds two roots; each root says which part it is with `data-part` ("kpis" or "matrix").
 * Everything is updated in place: matrix rows are keyed by component.
 */
import { clockTime, count, el, field, setText } from "../../format.js";
import { ageCell, newRow, stackCell, syncRows } from "../rows.js";
import { fillPill, levelLabel } from "./severity.js";

/** Where to look closer at each component of the matrix. */
const LINKS = /** @type {Record<string, [string, string]>} */ ({
  redis: ["/api/jobs/health", "Health"],
  connector: ["/admin/jobs/logs", "Logs"],
  runners: ["/admin/jobs/runners", "Runners"],
  jobpulse: ["/api/stats", "Stats"],
});

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  if (root.dataset.part === "matrix") renderMatrix(root, data);
  else renderKpis(root, data);
}

/** @param {number | undefined} n @param {number} [digits] */
function num(n, digits = 1) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  return n >= 100 ? count(Math.round(n)) : n.toFixed(digits).replace(/\.0+$/, "");
}

/** @param {HTMLElement} root @param {any} data */
function renderKpis(root, data) {
  const p = data.process || {};
  // jobpulse's own latency over the last five minutes (docs/protocol.md 3.11); "–" until there is a sample.
  for (const ring of ["http", "push"]) {
    for (const q of ["p50", "p95", "p99"]) {
      const node = root.querySelector(`[data-f="${ring}-${q}"]`);
      if (node) setText(/** @type {HTMLElement} */ (node), num(p[`${ring}_${q}_ms`]));
    }
  }
  setText(field(root, "http-n"), typeof p.http_n === "number" ? `${count(p.http_n)} requests` : "–");
  const hooks = data.webhooks || {};
  const failing = hooks.failing ? ` · ${count(hooks.failing)} failing` : "";
  const targets = hooks.configured ? `${count(hooks.configured)} target${hooks.configured === 1 ? "" : "s"}${failing}` : "Not configured";
  setText(field(root, "webhooks"), targets);
  setText(field(root, "webhooks-detail"), hooks.detail || "");
  const kpi = /** @type {HTMLElement | null} */ (root.querySelector('[data-kpi="webhooks"]'));
  if (kpi) kpi.dataset.level = !hooks.configured ? "" : hooks.failing || hooks.dead ? "warning" : "ok";
  setText(field(root, "flush"), typeof p.flush_ms === "number" ? p.flush_ms.toFixed(2) : "–");
  setText(field(root, "events"), num(p.events_per_s));
  setText(field(root, "flushes"), num(p.flushes_per_s));
  setText(field(root, "rss"), num(p.rss_mb));
  const uptime = field(root, "uptime");
  if (typeof p.started === "number" && uptime.dataset.since !== String(p.started)) {
    uptime.dataset.since = String(p.started);
    uptime.title = `started ${clockTime(p.started)}`;
  }

  const status = field(root, "status");
  fillPill(status, data.status);
  setText(field(root, "rule"), data.status === "ok" ? `${levelLabel("ok")}: ${data.rule}` : `Rule: ${data.rule}`);
  const card = /** @type {HTMLElement | null} */ (root.querySelector('[data-kpi="health"]'));
  if (card && card.dataset.status !== status.dataset.status) card.dataset.status = status.dataset.status;

  const incidents = Number(data.incidents || 0);
  setText(field(root, "incidents"), count(incidents));
  setText(field(root, "incidents-unit"), incidents === 1 ? " open alert" : " open alerts");
  root.querySelector('[data-kpi="incidents"]')?.classList.toggle("st-open", incidents > 0);
  setText(field(root, "crashes"), count(p.crashes));

  setText(field(root, "clients"), count(p.clients));
  setText(field(root, "clients-unit"), p.clients === 1 ? " page live" : " pages live");
  setText(field(root, "views"), count(p.views));
  setText(field(root, "pid"), p.pid === undefined ? "–" : String(p.pid));
  setText(field(root, "epoch"), p.epoch || "–");
}

/** @param {HTMLElement} root @param {any} data */
function renderMatrix(root, data) {
  const matrix = data.matrix || { rows: {}, order: [] };
  syncRows(field(root, "rows"), matrix, createRow, updateRow);
  field(root, "empty").hidden = matrix.order.length > 0;
  /** @type {Record<string, number>} */
  const tally = {};
  for (const key of matrix.order) {
    const status = matrix.rows[key]?.status || "unknown";
    tally[status] = (tally[status] || 0) + 1;
  }
  const parts = ["critical", "warning", "ok"].filter((s) => tally[s]).map((s) => `${tally[s]} ${levelLabel(s)}`);
  setText(field(root, "summary"), `${matrix.order.length} components · ${parts.join(" · ") || "no status yet"}`);
}

/** @param {any} _row @param {string} key */
function createRow(_row, key) {
  const pill = el("span", "st-pill");
  pill.append(el("span", "st-pill-icon"), el("span", "st-pill-text"));
  pill.firstElementChild?.setAttribute("aria-hidden", "true");
  const status = el("td");
  status.append(pill);
  const link = el("td", "st-c-link");
  const target = LINKS[key];
  if (target) {
    const a = /** @type {HTMLAnchorElement} */ (el("a", "", target[1]));
    a.href = target[0];
    link.append(a);
  }
  const incident = el("td", "st-incident");
  incident.append(el("span", "st-incident-title"), el("span", "small st-incident-at"));
  const tr = newRow(stackCell("st-name"), status, el("td", "st-detail"), ageCell(true), incident, link);
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function updateRow(tr, row) {
  const [name, status, detail, since, incident] = tr.cells;
  // Its latest incident since jobpulse started: what it was, and when (a clock time, so it reads at a glance).
  const title = /** @type {HTMLElement} */ (incident.querySelector(".st-incident-title"));
  const at = /** @type {HTMLElement} */ (incident.querySelector(".st-incident-at"));
  if (typeof row.incident_at === "number") {
    setText(title, row.incident || "");
    setText(at, ` ${levelLabel(row.incident_severity || "warning")}, ${clockTime(row.incident_at)}`);
    incident.title = `${row.incident} (${row.incident_severity}) at ${clockTime(row.incident_at)}`;
  } else {
    setText(title, "none since start");
    setText(at, "");
    incident.title = "";
  }
  setText(/** @type {HTMLElement} */ (name.querySelector(".st-name")), row.name || tr.dataset.key || "");
  setText(/** @type {HTMLElement} */ (name.querySelector(".small")), tr.dataset.key || "");
  fillPill(/** @type {HTMLElement} */ (status.firstElementChild), row.status);
  tr.dataset.status = row.status || "unknown";
  setText(detail, row.detail || "");
  detail.title = row.detail || "";
  const span = /** @type {HTMLElement} */ (since.firstElementChild);
  if (typeof row.since === "number") {
    span.dataset.since = String(row.since);
    span.title = `since ${clockTime(row.since)}`;
  } else {
    delete span.dataset.since;
    span.title = "";
    setText(span, "–");
  }
}
