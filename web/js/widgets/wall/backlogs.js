// @ts-check
/**
 * The wall's channel backlogs (`backlogs` widget): the top five channels with their queue and a bar of how
 * long the oldest queued job has waited against the channel's SLA, said in words too. `tick` moves the bars
 * every second between updates (the wait grows while nothing changes).
 */
import { now, span } from "../../clock.js";
import { count, el, setText, slaGrade, slaWords } from "../../format.js";
import { newRow, syncRows } from "../rows.js";
import { fitRows } from "./fit.js";

const SHOWN = 5;

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const order = (data.order || []).slice(0, SHOWN);
  syncRows(/** @type {HTMLElement} */ (root.querySelector('[data-f="rows"]')), { rows: data.rows, order }, create, update);
  /** @type {HTMLElement} */ (root.querySelector('[data-f="empty"]')).hidden = order.length > 0;
  root.dataset.channels = typeof data.channels === "number" ? String(data.channels) : "";
  fit(root);
  tick(root);
}

/** Show the rows that fit and say how many of how many channels are shown. @param {HTMLElement} root */
export function fit(root) {
  const shown = fitRows(root);
  const channels = root.dataset.channels;
  setText(
    /** @type {HTMLElement} */ (root.querySelector('[data-f="count"]')),
    channels ? `top ${count(shown)} of ${count(Number(channels))} channels` : "",
  );
}

function create() {
  const name = el("td", "wall-c-channel");
  name.append(el("div", "wall-line"), el("div", "wall-sub"));
  const queued = el("td", "wall-c-num");
  queued.append(el("div", "wall-line"), el("div", "wall-sub"));
  const sla = el("td", "wall-c-sla");
  const bar = el("div", "wall-bar");
  bar.append(el("div", "wall-bar-fill"));
  sla.append(bar, el("div", "wall-sub"));
  return newRow(name, queued, sla);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [name, queued] = tr.cells;
  setText(/** @type {HTMLElement} */ (name.firstElementChild), row.channel);
  const runners = Number(row.runners || 0);
  const consumers = runners ? `${runners} runner${runners === 1 ? "" : "s"}` : "NO runner";
  setText(/** @type {HTMLElement} */ (name.lastElementChild), `${consumers} · ${count(row.inflight)} running`);
  name.dataset.orphan = String(!runners);
  setText(/** @type {HTMLElement} */ (queued.firstElementChild), count(row.queued));
  setText(/** @type {HTMLElement} */ (queued.lastElementChild), "queued");
  tr.dataset.oldest = typeof row.oldest === "number" ? String(row.oldest) : "";
  tr.dataset.sla = typeof row.sla === "number" ? String(row.sla) : "";
}

/** Move every bar to the current wait. @param {HTMLElement} root */
export function tick(root) {
  const t = now();
  for (const node of root.querySelectorAll("tbody tr")) {
    const tr = /** @type {HTMLTableRowElement} */ (node);
    const oldest = Number(tr.dataset.oldest || NaN);
    const sla = Number(tr.dataset.sla || NaN);
    const cell = tr.cells[2];
    const fill = /** @type {HTMLElement} */ (cell.querySelector(".wall-bar-fill"));
    let level = "ok";
    let width = 0;
    let words = "nothing waiting";
    if (Number.isFinite(oldest) && Number.isFinite(sla) && sla > 0) {
      const age = Math.max(0, t - oldest);
      const ratio = age / sla;
      width = Math.min(1, ratio);
      level = ["ok", "warning", "critical"][slaGrade(ratio)];
      words = `${slaWords(ratio)} · ${span(age)} of ${span(sla)}`;
    } else if (Number.isFinite(oldest)) {
      words = `oldest ${span(Math.max(0, t - oldest))}`;
    }
    const pct = `${(width * 100).toFixed(1)}%`;
    if (fill.style.width !== pct) fill.style.width = pct;
    if (tr.dataset.level !== level) tr.dataset.level = level;
    setText(/** @type {HTMLElement} */ (cell.lastElementChild), words);
  }
}
