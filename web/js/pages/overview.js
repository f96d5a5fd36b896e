// @ts-check
/**
 * The Jobs Overview (/admin/jobs/overview, mockup section 1): KPI cards whose granularity swaps their view
 * key (remembered in the URL, `?kpi=completed:hours,failed:days`), service health, runner pulse, channel
 * backlogs, hot issues, snapshot cards, and a chart modal (uPlot, loaded on first open) that follows
 * `chart?gran=…&metric=…` live while it is open.
 */
import { mount, register, start, unmount } from "../app.js";
import { kpiParams, scopePage, setupPicker, source } from "../source-scope.js";
import { viewKey } from "../views.js";
import * as failureGroups from "../widgets/failure-groups.js";
import * as health from "../widgets/health.js";
import * as backlogs from "../widgets/overview/backlogs.js";
import * as hotIssues from "../widgets/overview/hot-issues.js";
import * as kpi from "../widgets/overview/kpi.js";
import { field } from "../widgets/overview/list.js";
import * as pulse from "../widgets/overview/pulse.js";
import * as service from "../widgets/overview/service.js";
import * as snapshot from "../widgets/overview/snapshot.js";

register("health", health.render);
register("service", service.render);
register("pulse", pulse.render);
register("backlogs", backlogs.render);
register("hot_issues", hotIssues.render);
register("snapshot", snapshot.render);
register("failure_groups", failureGroups.render);
register("kpi", kpi.render);

const GRANS = ["minutes", "hours", "days"];
const DEFAULT_GRAN = "minutes";

// -- KPI cards: granularity per card, in the URL -------------------------------------------------------

/** @returns {HTMLElement[]} */
function cards() {
  return /** @type {HTMLElement[]} */ ([...document.querySelectorAll(".kpi[data-metric]")]);
}

/** The granularities the URL asks for (`kpi=completed:hours,failed:days`). @returns {Record<string, string>} */
function gransFromUrl() {
  /** @type {Record<string, string>} */
  const grans = {};
  for (const part of (new URLSearchParams(location.search).get("kpi") || "").split(",")) {
    const [metric, gran] = part.split(":");
    if (metric && GRANS.includes(gran)) grans[metric] = gran;
  }
  return grans;
}

/** Write the cards' granularities to the URL (only those off the default), keeping other parameters. */
function gransToUrl() {
  const parts = cards()
    .filter((card) => card.dataset.kpiGran && card.dataset.kpiGran !== DEFAULT_GRAN)
    .map((card) => `${card.dataset.metric}:${card.dataset.kpiGran}`);
  const params = new URLSearchParams(location.search);
  params.delete("kpi");
  let search = params.toString();
  if (parts.length) search += `${search ? "&" : ""}kpi=${parts.join(",")}`;
  const url = `${location.pathname}${search ? `?${search}` : ""}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(history.state, "", url);
}

/** Show `card` at granularity `gran`: swap its view key (the old one is unmounted). @param {HTMLElement} card @param {string} gran */
function setGran(card, gran) {
  const metric = card.dataset.metric || "";
  const changed = card.dataset.kpiGran !== gran;
  card.dataset.kpiGran = gran;
  for (const button of card.querySelectorAll("button[data-gran]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.gran === gran));
  }
  const params = kpiParams(metric, gran); // one source's where it has one (count KPIs, not days)
  const key = viewKey("kpi", params);
  // A source is chosen but this card cannot show one (a gauge, or days): it says it shows every source's.
  if (source && !("source" in params)) {
    card.dataset.scope = "all";
  } else delete card.dataset.scope;
  if (changed && card.dataset.widget && card.dataset.widget !== key) {
    // Until the new view's snapshot arrives, say so rather than show the old window's numbers.
    card.setAttribute("aria-busy", "true");
    field(card, "value").textContent = "–";
    field(card, "trend").textContent = "loading…";
  }
  mount(card, key);
}

function setupCards() {
  const fromUrl = gransFromUrl();
  for (const card of cards()) {
    setGran(card, fromUrl[card.dataset.metric || ""] || DEFAULT_GRAN);
    card.addEventListener("click", (event) => {
      const target = /** @type {HTMLElement} */ (event.target);
      const granButton = /** @type {HTMLElement | null} */ (target.closest("button[data-gran]"));
      if (granButton) {
        setGran(card, granButton.dataset.gran || DEFAULT_GRAN);
        gransToUrl();
        return;
      }
      const opener = /** @type {HTMLElement | null} */ (card.querySelector("[data-open-chart]"));
      if (opener && (target.closest("[data-open-chart]") || target.closest(".kpi-chart"))) {
        // The full chart (and its library) loads on first use: the page's first load carries none of it.
        import("../chart-modal.js").then((modal) =>
          modal.openChart(card.dataset.metric || "completed", card.dataset.kpiGran || DEFAULT_GRAN, opener),
        );
      }
    });
  }
}

setupCards();
// Several sources: service, backlogs and hot issues of the chosen one (the pulse and gauge KPIs are every source's).
scopePage();
setupPicker();
start();
