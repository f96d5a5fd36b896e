// @ts-check
/**
 * The per-channel chart modal (the mockup's "click the mini chart -> full MetricsChart"), shared by the
 * Overview's KPI cards and the Dashboard's Jobs Published chart. It builds its own <dialog> on first use,
 * follows `chart?gran=…&metric=…` live while open (uPlot, loaded on first open), traps focus, closes on
 * Escape or the backdrop, and returns focus to the control that opened it.
 */
import { mount, register, unmount } from "./app.js";
import { linkStylesheet } from "./format.js";
import { sources } from "./source-scope.js";
import { viewKey } from "./views.js";
import * as chart from "./widgets/overview/chart.js";
import { field } from "./widgets/overview/list.js";

const CHART_METRICS = ["published", "completed", "failed", "retried"];

register("chart", chart.render);

const MARKUP = `
  <div class="modal-head">
    <h2 id="chart-modal-title" data-f="chart-title">Per channel</h2>
    <div class="seg" role="group" aria-label="Metric">
      <button type="button" data-chart-metric="published" aria-pressed="false">Published</button>
      <button type="button" data-chart-metric="completed" aria-pressed="false">Completed</button>
      <button type="button" data-chart-metric="failed" aria-pressed="false">Failed</button>
      <button type="button" data-chart-metric="retried" aria-pressed="false">Retried</button>
    </div>
    <div class="seg" role="group" aria-label="Window">
      <button type="button" data-chart-gran="minutes" aria-pressed="false" title="per minute">60 min</button>
      <button type="button" data-chart-gran="hours" aria-pressed="false" title="per hour">24 h</button>
    </div>
    <div class="seg" role="group" aria-label="Series" data-chart-bys hidden>
      <button type="button" data-chart-by="channel" aria-pressed="true" title="a series per channel">Channels</button>
      <button type="button" data-chart-by="source" aria-pressed="false" title="a series per job system">Sources</button>
    </div>
    <div class="seg" role="group" aria-label="Display">
      <button type="button" data-chart-mode="lines" aria-pressed="true" title="a line per channel">Lines</button>
      <button type="button" data-chart-mode="stacked" aria-pressed="false" title="channels stacked: the top is the total">Stacked</button>
    </div>
    <button type="button" class="btn" data-close aria-label="Close the chart (Escape)">Close</button>
  </div>
  <div class="chart-body" data-chart>
    <p class="small muted" data-f="summary"></p>
    <div class="chart-plot" data-f="plot"></div>
    <p class="empty" data-f="empty" hidden>No jobs in this window yet.</p>
  </div>`;

function build() {
  linkStylesheet(new URL("../css/chart.css", import.meta.url).href);
  dialog = document.createElement("dialog");
  dialog.className = "modal";
  dialog.id = "chart-modal";
  dialog.setAttribute("aria-labelledby", "chart-modal-title");
  dialog.innerHTML = MARKUP; // static markup of this module, no data in it
  document.body.append(dialog);
  chartRoot = /** @type {HTMLElement} */ (dialog.querySelector("[data-chart]"));
  setupModal();
}

/** @type {HTMLDialogElement} */
let dialog;
/** @type {HTMLElement} */
let chartRoot;
let chartMetric = "completed";
let chartGran = "minutes";
/** Lines or stacked bands: kept for the page's life, so the chart opens as the operator last left it. */
let chartMode = "lines";
/** A series per channel, or (several sources) per source. */
let chartBy = "channel";
/** @type {HTMLElement | null} */
let returnFocus = null;

/**
 * Open the chart of `metric` per channel, at `gran` (days show as hours); focus returns to `opener` on close.
 * @param {string} metric @param {string} gran @param {HTMLElement | null} opener
 */
export function openChart(metric, gran, opener) {
  if (!dialog) build();
  returnFocus = opener;
  chartMetric = CHART_METRICS.includes(metric) ? metric : "published";
  chartGran = gran === "minutes" ? "minutes" : "hours";
  chart.loadUPlot().catch(() => {}); // start fetching while the modal opens
  if (!dialog.open) dialog.showModal();
  showChart();
  /** @type {HTMLElement} */ (dialog.querySelector("[data-close]")).focus();
}

function showChart() {
  for (const button of dialog.querySelectorAll("[data-chart-metric]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.chartMetric === chartMetric));
  }
  for (const button of dialog.querySelectorAll("[data-chart-gran]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.chartGran === chartGran));
  }
  for (const button of dialog.querySelectorAll("[data-chart-mode]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.chartMode === chartMode));
  }
  // Several sources: the chart can also show one series per source (docs/protocol.md 3.8).
  const bys = /** @type {HTMLElement} */ (dialog.querySelector("[data-chart-bys]"));
  bys.hidden = sources.length < 2;
  if (bys.hidden) chartBy = "channel";
  for (const button of bys.querySelectorAll("[data-chart-by]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.chartBy === chartBy));
  }
  chartRoot.dataset.mode = chartMode;
  const label = chartMetric[0].toUpperCase() + chartMetric.slice(1);
  field(dialog, "chart-title").textContent = `${label} per ${chartBy}`;
  const key = viewKey("chart", { by: chartBy === "source" ? "source" : "", gran: chartGran, metric: chartMetric });
  if (chartRoot.dataset.widget !== key) {
    chart.destroy(chartRoot);
    field(chartRoot, "summary").textContent = "loading…";
  }
  mount(chartRoot, key);
}

function closeChart() {
  if (dialog.open) dialog.close();
}

function setupModal() {
  dialog.addEventListener("close", () => {
    unmount(chartRoot);
    chart.destroy(chartRoot);
    delete chartRoot.dataset.widget;
    returnFocus?.focus();
    returnFocus = null;
  });
  dialog.addEventListener("click", (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    if (target === dialog) return closeChart(); // the backdrop
    if (target.closest("[data-close]")) return closeChart();
    const metric = /** @type {HTMLElement | null} */ (target.closest("[data-chart-metric]"));
    if (metric) {
      chartMetric = metric.dataset.chartMetric || chartMetric;
      return showChart();
    }
    const gran = /** @type {HTMLElement | null} */ (target.closest("[data-chart-gran]"));
    if (gran) {
      chartGran = gran.dataset.chartGran || chartGran;
      showChart();
      return;
    }
    const by = /** @type {HTMLElement | null} */ (target.closest("[data-chart-by]"));
    if (by) {
      chartBy = by.dataset.chartBy === "source" ? "source" : "channel";
      showChart();
      return;
    }
    const mode = /** @type {HTMLElement | null} */ (target.closest("[data-chart-mode]"));
    if (mode) {
      chartMode = mode.dataset.chartMode === "stacked" ? "stacked" : "lines";
      showChart();
      chart.redraw(chartRoot); // the same view, drawn the other way
    }
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closeChart();
      return;
    }
    if (event.key !== "Tab") return;
    // Keep focus inside the modal: wrap from the last control to the first and back.
    const focusable = /** @type {HTMLElement[]} */ (
      [...dialog.querySelectorAll("button:not([disabled]), a[href], input, select, [tabindex]:not([tabindex='-1'])")]
    ).filter((node) => node.offsetParent !== null);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const active = document.activeElement;
    if (event.shiftKey && (active === first || !dialog.contains(active))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (active === last || !dialog.contains(active))) {
      event.preventDefault();
      first.focus();
    }
  });
  let resizing = 0;
  window.addEventListener("resize", () => {
    if (!dialog.open) return;
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(() => chart.resize(chartRoot));
  });
}
