// @ts-check
/**
 * Functions (/admin/jobs/functions): the live table of functions and channels with their percentiles, and,
 * for the function picked, its chart by minute, hour or day. The picked function and resolution are in the
 * URL (?fn=…&gran=…), so a link opens the same chart.
 */
import { mount, register, start, unmount } from "../app.js";
import { el } from "../format.js";
import { viewKey } from "../views.js";
import * as chart from "../widgets/function-chart.js";
import * as table from "../widgets/functions.js";
import * as health from "../widgets/health.js";

register("health", health.render);
register("functions", (root, data) => {
  table.render(root, data);
  syncChannels();
});
register("function", chart.render);

const detail = /** @type {HTMLElement} */ (document.getElementById("fn-detail"));
const channelPick = /** @type {HTMLSelectElement} */ (document.getElementById("fn-channel"));
const sourcePick = /** @type {HTMLSelectElement | null} */ (document.getElementById("fn-source"));
const search = /** @type {HTMLInputElement} */ (document.getElementById("fn-q"));
const params = new URLSearchParams(location.search);
let gran = ["minutes", "hours", "days"].includes(params.get("gran") || "") ? String(params.get("gran")) : "minutes";
/** @type {string} */
let picked = params.get("fn") || "";

/** Keep the channel filter's options in step with the channels the data names. */
function syncChannels() {
  const names = table.channelNames();
  const have = [...channelPick.options].slice(1).map((o) => o.value);
  if (have.join("\n") === names.join("\n")) return;
  const current = channelPick.value;
  channelPick.length = 1;
  for (const name of names) {
    const option = /** @type {HTMLOptionElement} */ (el("option", "", name));
    option.value = name;
    channelPick.append(option);
  }
  channelPick.value = names.includes(current) ? current : "";
}

function remember() {
  const url = new URL(location.href);
  if (picked) url.searchParams.set("fn", picked);
  else url.searchParams.delete("fn");
  if (gran !== "minutes") url.searchParams.set("gran", gran);
  else url.searchParams.delete("gran");
  history.replaceState(null, "", url);
}

/** The widget key the chart shows, or "" when it is closed. */
let shown = "";

/** Show `name`'s chart (or close it with ""). @param {string} name */
function openFunction(name) {
  picked = name;
  remember();
  if (!name) {
    chart.reset(detail, "");
    unmount(detail);
    shown = "";
    detail.hidden = true;
    return;
  }
  detail.hidden = false;
  const link = /** @type {HTMLAnchorElement} */ (detail.querySelector('[data-f="jobs-link"]'));
  link.href = `/admin/jobs/table?q=${encodeURIComponent(`fn:${name.includes(" ") ? JSON.stringify(name) : name}`)}`;
  for (const button of detail.querySelectorAll("[data-fn-gran]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.fnGran === gran));
  }
  const key = viewKey("function", { name, gran });
  // The same function at the same resolution (its name or the pressed button clicked again): the chart stays. A
  // remount would not bring the data back (mount ignores the key it already shows), only blank the chart.
  if (key === shown) return;
  shown = key;
  chart.reset(detail, name);
  mount(detail, key);
}

table.view.open = (name, kind) => {
  if (kind === "channels") {
    // A channel's row: show the functions that run on it.
    channelPick.value = name;
    table.view.channel = name;
    setKind("functions");
    return;
  }
  openFunction(name);
  detail.scrollIntoView({ block: "nearest" });
};

/** @param {string} kind */
function setKind(kind) {
  table.view.kind = kind;
  for (const button of document.querySelectorAll("[data-fn-kind]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.fnKind === kind));
  }
  // Rows are made per kind (their click opens a function or filters by a channel): start the table afresh.
  const tbody = document.querySelector('[data-widget="functions"] [data-f="rows"]');
  if (tbody) tbody.textContent = "";
  table.redraw();
}

document.addEventListener("click", (event) => {
  const target = /** @type {HTMLElement} */ (event.target);
  const kind = target.closest("[data-fn-kind]");
  if (kind) setKind(/** @type {string} */ (/** @type {HTMLElement} */ (kind).dataset.fnKind));
  const sort = /** @type {HTMLElement | null} */ (target.closest("button.sort"));
  if (sort) {
    const key = /** @type {string} */ (sort.dataset.sort);
    table.view.descending = table.view.sort === key ? !table.view.descending : key !== "name";
    table.view.sort = key;
    table.redraw();
  }
  const g = /** @type {HTMLElement | null} */ (target.closest("[data-fn-gran]"));
  if (g) {
    gran = /** @type {string} */ (g.dataset.fnGran);
    openFunction(picked);
  }
  const measure = /** @type {HTMLElement | null} */ (target.closest("[data-fn-measure]"));
  if (measure) {
    chart.state.measure = /** @type {string} */ (measure.dataset.fnMeasure);
    for (const button of detail.querySelectorAll("[data-fn-measure]")) {
      button.setAttribute("aria-pressed", String(button === measure));
    }
    chart.destroy(detail);
    chart.redraw(detail);
  }
  if (target.closest("[data-fn-close]")) openFunction("");
});

channelPick.addEventListener("change", () => {
  table.view.channel = channelPick.value;
  table.redraw();
});
sourcePick?.addEventListener("change", () => {
  table.view.source = sourcePick.value;
  table.redraw();
});
search.addEventListener("input", () => {
  table.view.q = search.value;
  table.redraw();
});
window.addEventListener("resize", () => {
  if (!detail.hidden) chart.redraw(detail);
});

if (picked) openFunction(picked);
start();
