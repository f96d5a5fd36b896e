// @ts-check
/**
 * The chart modal's plot (`chart?gran=…&metric=…`): jobs per channel over the last 60 minutes or 24 hours,
 * drawn with uPlot. uPlot is loaded on first use (a dynamic import and a stylesheet link), so it is not
 * part of the page's first load. Buckets nobody watched are gaps (null), not zeros. A new version of the
 * data updates the same plot in place (setData) unless the set of channels changed.
 */
import { now } from "../../clock.js";
import { clockTime, count, linkStylesheet, setText } from "../../format.js";
import { field } from "./list.js";

// Eight channels at most; the legend names each series, and the later ones are dashed, so no series is told
// apart by colour alone.
const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
const DASHES = [undefined, undefined, undefined, undefined, [6, 3], [6, 3], [2, 3], [2, 3]];
const METRIC_WORDS = /** @type {Record<string, string>} */ ({
  published: "published",
  completed: "completed",
  failed: "failed",
  retried: "retried",
});

/** @type {Promise<any> | null} */
let loading = null;

/** Load uPlot (module and stylesheet) once; resolves to the uPlot constructor. */
export function loadUPlot() {
  if (!loading) {
    linkStylesheet(new URL("../../../vendor/uplot/uPlot.min.css", import.meta.url).href);
    loading = import("../../../vendor/uplot/uPlot.esm.js").then((module) => module.default);
    loading.catch(() => {
      loading = null; // let the next open try again
    });
  }
  return loading;
}

/** @typedef {{metric: string, gran: string, step: number, from: number, to: number, series: Record<string, Record<string, number>>, by?: string}} ChartData */

/** @type {WeakMap<HTMLElement, ChartData>} root -> the data to draw (absent once the chart is closed) */
const wanted = new WeakMap();
/** @type {WeakMap<HTMLElement, {plot: any, shape: string, names: string[]}>} */
const plots = new WeakMap();
/** @type {WeakMap<HTMLElement, Array<Array<number | null>>>} root -> each series' own counts (what the legend says) */
const raws = new WeakMap();

/** @param {HTMLElement} root @param {ChartData} data */
export function render(root, data) {
  wanted.set(root, data);
  root.setAttribute("aria-busy", "true");
  loadUPlot().then(
    (UPlot) => {
      const latest = wanted.get(root);
      if (latest) draw(root, UPlot, latest);
    },
    (error) => {
      setText(field(root, "summary"), `The chart library did not load: ${error}`);
    },
  );
}

/** Forget the chart of `root` (the modal closed): no late draw, the plot is destroyed. @param {HTMLElement} root */
export function destroy(root) {
  wanted.delete(root);
  plots.get(root)?.plot.destroy();
  plots.delete(root);
  setText(field(root, "summary"), "");
}

/** Fit the plot of `root` to its box (the window was resized). @param {HTMLElement} root */
export function resize(root) {
  const held = plots.get(root);
  if (held) held.plot.setSize(size(field(root, "plot")));
}

/** @param {HTMLElement} host */
function size(host) {
  const wide = window.innerWidth >= 2400;
  const height = Math.round(Math.max(220, Math.min(window.innerHeight * 0.55, wide ? 1000 : 480)));
  return { width: Math.max(280, host.clientWidth), height };
}

/**
 * Each series plus all the series after it, slot by slot (a slot no series watched stays a gap).
 * @param {Array<Array<number | null>>} series
 */
function stack(series) {
  const out = series.map((values) => values.slice());
  for (let k = out.length - 2; k >= 0; k--) {
    out[k] = out[k].map((v, i) => {
      const below = out[k + 1][i];
      return v === null && below === null ? null : (v ?? 0) + (below ?? 0);
    });
  }
  return out;
}

/** Draw `root`'s chart again from its latest data (its mode changed). @param {HTMLElement} root */
export function redraw(root) {
  const data = wanted.get(root);
  if (data) render(root, data);
}

/** @param {HTMLElement} root @param {any} UPlot @param {ChartData} data */
function draw(root, UPlot, data) {
  let raw = raws.get(root);
  if (!raw) {
    raw = [];
    raws.set(root, raw);
  }
  const n = Math.max(0, data.to - data.from + 1);
  const xs = Array.from({ length: n }, (_, i) => (data.from + i) * data.step);
  const totals = Object.entries(data.series).map(([name, points]) => {
    let total = 0;
    for (const v of Object.values(points)) total += v;
    return { name, total };
  });
  totals.sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : 1));
  let names = totals.map((t) => t.name);
  const host = field(root, "plot");
  // The plot is rebuilt only when its metric or width changes. Channels keep the place (colour, dash, legend
  // row) they got when they first appeared, however their ranks move; a channel that appears is added as a
  // series, one that goes is removed, and the data moves in place.
  const stacked = root.dataset.mode === "stacked";
  const shape = `${data.metric}|${data.gran}|${n}|${stacked ? "stacked" : "lines"}`;
  let held = plots.get(root);
  if (held && held.shape !== shape) {
    held.plot.destroy();
    plots.delete(root);
    held = undefined;
  }
  if (held) {
    const kept = held.names.filter((name) => names.includes(name));
    for (let i = held.names.length - 1; i >= 0; i--) {
      if (!names.includes(held.names[i])) held.plot.delSeries(i + 1);
    }
    const wide = window.innerWidth >= 2400;
    for (const name of names) {
      if (kept.includes(name)) continue;
      held.plot.addSeries(seriesOptions(name, kept.length, wide, stacked, raw), kept.length + 1);
      kept.push(name);
    }
    held.names = kept;
    names = kept;
  }
  raw.length = 0;
  for (const name of names) raw.push(xs.map((_, i) => data.series[name][String(data.from + i)] ?? null));
  // Stacked: each series is drawn as itself plus every series after it, the first (the total) first, so each
  // band's fill covers the one before from the bottom; the legend and the hover still say each one's own count.
  const ys = stacked ? stack(raw) : raw.map((values) => values.slice());
  if (held) held.plot.setData([xs, ...ys]);
  else if (names.length) {
    const plot = new UPlot(options(data, names, host, stacked, raw), [xs, ...ys], host);
    plots.set(root, { plot, shape, names });
  }
  field(root, "empty").hidden = names.length > 0;
  const all = totals.reduce((a, t) => a + t.total, 0);
  const win = data.gran === "hours" ? "24 h" : "60 min";
  const busiest = totals[0] ? ` · busiest ${totals[0].name} (${count(totals[0].total)})` : "";
  setText(
    field(root, "summary"),
    `${count(all)} ${METRIC_WORDS[data.metric] || data.metric} in the last ${win} across ${names.length} ${data.by === "source" ? "source" : "channel"}${names.length === 1 ? "" : "s"}${busiest} · updated ${clockTime(now())}`,
  );
  root.removeAttribute("aria-busy");
}

/**
 * One channel's line: its colour and dash by its place; stacked, a filled band without dashes, whose legend value is
 * the channel's own count (from `raw`), not the stack's height.
 * @param {string} name @param {number} i @param {boolean} wide @param {boolean} stacked
 * @param {Array<Array<number | null>>} raw
 */
function seriesOptions(name, i, wide, stacked, raw) {
  const colour = PALETTE[i % PALETTE.length];
  return {
    label: name,
    stroke: colour,
    width: wide ? 2.5 : 1.75,
    dash: stacked ? undefined : DASHES[i % DASHES.length],
    fill: stacked ? `${colour}55` : undefined,
    spanGaps: false,
    value: (/** @type {any} */ _u, /** @type {number | null} */ v, /** @type {number} */ sidx, /** @type {number} */ idx) => {
      const own = stacked && idx !== null && idx !== undefined ? raw[sidx - 1]?.[idx] : v;
      return own === null || own === undefined ? "–" : count(own);
    },
  };
}

/**
 * @param {ChartData} data @param {string[]} names @param {HTMLElement} host @param {boolean} stacked
 * @param {Array<Array<number | null>>} raw
 */
function options(data, names, host, stacked, raw) {
  const style = getComputedStyle(document.documentElement);
  const muted = style.getPropertyValue("--muted").trim() || "#64748b";
  const line = style.getPropertyValue("--line").trim() || "#e2e8f0";
  const wide = window.innerWidth >= 2400;
  const font = `${wide ? 16 : 12}px system-ui, sans-serif`;
  const axis = { stroke: muted, font, labelFont: font, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  const per = data.gran === "hours" ? "hour" : "minute";
  return {
    ...size(host),
    scales: { x: { time: true } },
    series: [
      { label: "time" },
      ...names.map((name, i) => seriesOptions(name, i, wide, stacked, raw)),
    ],
    axes: [
      { ...axis, size: wide ? 60 : 44 },
      { ...axis, label: `jobs per ${per}`, size: wide ? 80 : 56, labelSize: wide ? 28 : 20 },
    ],
    legend: { live: true },
  };
}
