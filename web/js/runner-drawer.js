// @ts-check
/**
 * A runner's detail drawer (the mockup's "Runner detail drawer", from a dashboard runner row or a runner card):
 * its card, its actions, its current jobs, its heartbeat history and its recent events, live from the
 * `runner?id=` view (docs/protocol.md 3.9). Loaded on first use; the view is watched only while it is open.
 */
import { mount, register, unmount } from "./app.js";
import { span } from "./clock.js";
import { openDialog } from "./dialog.js";
import { count, el, field, linkStylesheet, setText } from "./format.js";
import { gate, regate } from "./gate.js";
import { runnerAction, VERBS } from "./runner-actions.js";
import { viewKey } from "./views.js";
import { isDraining, runnerVerdict } from "./widgets/fleet/card.js";
import { drawSpark } from "./widgets/overview/spark.js";
import { syncRows } from "./widgets/rows.js";

const ACTIONS = ["drain", "restart", "shutdown", "ping", "logs"];

/** @type {WeakMap<HTMLElement, any>} drawer body -> the runner's latest card data (what the buttons ask) */
const rowOf = new WeakMap();

register("runner", (root, data) => render(root, data));

/**
 * Open runner `id`'s drawer; focus returns to `opener` when it closes.
 * @param {string} id @param {HTMLElement | null} [opener]
 */
export function openRunner(id, opener = null) {
  linkStylesheet(new URL("../css/drawer.css", import.meta.url).href);
  const dlg = openDialog({ title: `Runner ${id}`, opener, className: "rdrawer", wide: true });
  const body = dlg.body;
  body.classList.add("rd");
  const head = el("p", "rd-head");
  head.dataset.f = "head";
  const missing = el("p", "rd-missing", "jobpulse does not know this runner (any more): it has not beaten lately.");
  missing.dataset.f = "missing";
  missing.hidden = true;

  const actions = el("div", "rd-actions");
  const note = el("span", "muted gate-note rd-note");
  note.id = `rd-note-${Math.random().toString(36).slice(2, 8)}`;
  note.hidden = true;
  for (const op of ACTIONS) {
    const label = op === "logs" ? "Logs" : VERBS[op];
    const button = /** @type {HTMLButtonElement} */ (el("button", op === "shutdown" ? "btn danger" : "btn", label));
    button.type = "button";
    button.dataset.op = op;
    gate(
      button,
      () => {
        const row = rowOf.get(body) || null;
        const action = op === "drain" && isDraining(row) ? "runner.undrain" : `runner.${op === "logs" ? "logs" : op}`;
        return runnerVerdict(action, row);
      },
      { note: note.id },
    );
    button.addEventListener("click", () => {
      const draining = op === "drain" && isDraining(rowOf.get(body));
      runnerAction(draining ? "undrain" : op, id, button);
    });
    actions.append(button);
  }
  const link = /** @type {HTMLAnchorElement} */ (el("a", "rd-link", "Open in the Runners console"));
  link.href = `/admin/jobs/runners?q=${encodeURIComponent(id)}`;
  actions.append(note, link);

  const jobs = section("Current jobs", "jobs", ["Job", "Channel", "Function", "Running for"]);
  const beats = el("section", "rd-section");
  const spark = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  spark.setAttribute("class", "spark rd-spark");
  spark.setAttribute("viewBox", "0 0 300 60");
  spark.setAttribute("preserveAspectRatio", "none");
  spark.setAttribute("role", "img");
  spark.dataset.f = "spark";
  const beatLine = el("p", "muted rd-beats");
  beatLine.dataset.f = "beats";
  beats.append(el("h3", "", "Heartbeats"), beatLine, spark);
  const events = section("Recent events", "events", ["When", "Event", "Severity"]);
  body.append(head, missing, actions, jobs, beats, events);

  mount(body, viewKey("runner", { id }));
  dlg.closed.then(() => unmount(body));
  return dlg;
}

/** @param {string} title @param {string} part @param {string[]} columns */
function section(title, part, columns) {
  const box = el("section", "rd-section");
  const table = el("table", "tbl compact rd-tbl");
  const thead = el("thead");
  const tr = el("tr");
  for (const name of columns) tr.append(el("th", "", name));
  thead.append(tr);
  const tbody = el("tbody");
  tbody.dataset.f = part;
  table.append(thead, tbody);
  const empty = el("p", "empty", part === "jobs" ? "No job running on it now." : "No events for it yet.");
  empty.dataset.f = `${part}-empty`;
  box.append(el("h3", "", title), table, empty);
  return box;
}

/** @param {HTMLElement} root @param {any} data */
function render(root, data) {
  const known = Boolean(data.known);
  field(root, "missing").hidden = known;
  if (!known) return;
  const card = data.card || {};
  rowOf.set(root, card);
  for (const button of root.querySelectorAll(".rd-actions [data-op]")) {
    const node = /** @type {HTMLButtonElement} */ (button);
    if (node.dataset.op === "drain") setText(node, isDraining(card) ? "Undrain" : "Drain");
    regate(node);
  }
  const head = field(root, "head");
  head.replaceChildren(
    el("span", `badge ${card.status || ""}`, card.status || "unknown"),
    " ",
    [card.region, card.host, card.version, card.pid ? `pid ${card.pid}` : ""].filter(Boolean).join(" · "),
    " · ",
    `${count(card.active)}/${count(card.concurrency)} slots busy · ${count(card.processed)} done, ${count(card.failed)} failed`,
  );
  if (typeof card.boot === "number") {
    const up = el("span", "rd-up");
    up.dataset.since = String(card.boot);
    head.append(" · up ", up);
  }

  syncRows(field(root, "jobs"), data.jobs, createJob, updateJob);
  field(root, "jobs-empty").hidden = data.jobs.order.length > 0;
  syncRows(field(root, "events"), data.events, createEvent, updateEvent);
  field(root, "events-empty").hidden = data.events.order.length > 0;

  const beats = /** @type {Array<{at: number, latency: number, gap?: number}>} */ (data.beats || []);
  const last = beats[beats.length - 1];
  const words = last
    ? `${beats.length} most recent beats, one every ${span(Number(data.interval || 0))} expected; ` +
      `latency ${(last.latency * 1000).toFixed(0)} ms now, ${count(data.gaps)} gaps since it joined`
    : "no heartbeat yet";
  setText(field(root, "beats"), words);
  const svg = /** @type {SVGSVGElement} */ (/** @type {unknown} */ (field(root, "spark")));
  drawSpark(svg, beats.length, [{ cls: "main", values: beats.map((b) => Math.max(0, b.latency * 1000)), area: true }]);
  svg.setAttribute("aria-label", `heartbeat latency, ms, over the last ${beats.length} beats`);
}

function createJob() {
  const tr = el("tr");
  const open = /** @type {HTMLButtonElement} */ (el("button", "linkish mono"));
  open.type = "button";
  const job = el("td");
  job.append(open);
  const since = el("span");
  const running = el("td", "num");
  running.append(since);
  tr.append(job, el("td"), el("td", "mono"), running);
  open.addEventListener("click", () => {
    import("./job-modal.js").then((modal) => modal.openJobDetails(open.textContent || ""));
  });
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function updateJob(tr, row) {
  const [job, channel, fn, running] = tr.cells;
  setText(/** @type {HTMLElement} */ (job.firstElementChild), row.job);
  setText(channel, row.channel);
  setText(fn, row.fn);
  const since = /** @type {HTMLElement} */ (running.firstElementChild);
  since.dataset.since = String(row.started);
}

function createEvent() {
  const tr = el("tr");
  const when = el("td");
  when.append(el("span"));
  tr.append(when, el("td"), el("td"));
  return tr;
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function updateEvent(tr, row) {
  const [when, message, severity] = tr.cells;
  /** @type {HTMLElement} */ (when.firstElementChild).dataset.since = String(row.at);
  setText(message, row.message);
  severity.replaceChildren(el("span", `badge ${row.severity === "info" ? "" : row.severity === "error" ? "offline" : "stale"}`.trim(), row.severity));
}
