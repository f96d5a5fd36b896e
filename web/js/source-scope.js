// @ts-check
/**
 * One source of several, for a whole page (`?source=<label>` in its URL; docs/protocol.md 7.2): which source
 * is chosen, the widget keys that show its part (`counters?source=pay`: the wall's widgets, and the count KPIs
 * by minute or hour), and the page's Source picker. With one source, or none chosen, keys stay as they are and
 * there is no picker.
 */
import { viewKey } from "./views.js";

/** The fixed widgets the server also serves for one source. */
const SCOPED = new Set(["counters", "published", "service", "hot_issues", "backlogs", "fleet_summary"]);
/** What a KPI of one source can show: counts, by minute or hour (a source's series keep a day). */
const KPI_METRICS = new Set(["published", "completed", "failed", "retried"]);

/** The labels of the sources this jobpulse watches (empty with one). */
export const sources = (document.body.dataset.sources || "").split(",").filter(Boolean);
const wanted = new URLSearchParams(location.search).get("source") || "";
/** The chosen source, or "" for all. */
export const source = sources.includes(wanted) ? wanted : "";

/** The key of fixed widget `name` on this page: the chosen source's view of it, where the server has one. @param {string} name */
export function scoped(name) {
  return source && SCOPED.has(name) ? viewKey(name, { source }) : name;
}

/** The params of a KPI view: with the chosen source where it can show one. @param {string} metric @param {string} gran */
export function kpiParams(metric, gran) {
  return source && KPI_METRICS.has(metric) && gran !== "days" ? { gran, metric, source } : { gran, metric };
}

/**
 * Point every `[data-widget]` of the page that has a view of one source at it (before the page starts); the
 * others are marked `data-scope="all"`, and say so ("· all sources", CSS), so no one takes them for the source's.
 */
export function scopePage() {
  if (!source) return;
  for (const node of document.querySelectorAll("[data-widget]")) {
    const root = /** @type {HTMLElement} */ (node);
    const name = root.dataset.widget;
    // The footer's intake line is jobpulse's own; a view (`kpi?...`) was keyed by its page, scope and all.
    if (!name || name === "health" || name.includes("?")) continue;
    if (SCOPED.has(name)) root.dataset.widget = scoped(name);
    else root.dataset.scope = "all";
  }
}

/**
 * The page's Source picker (`<select id="source-pick">`, rendered only with several sources): choosing one puts
 * it in the URL and reloads, so a link shows the same.
 */
export function setupPicker() {
  const select = /** @type {HTMLSelectElement | null} */ (document.getElementById("source-pick"));
  if (!select) return;
  select.value = source;
  select.addEventListener("change", () => {
    const params = new URLSearchParams(location.search);
    if (select.value) params.set("source", select.value);
    else params.delete("source");
    const query = params.toString();
    location.assign(`${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
  });
}
