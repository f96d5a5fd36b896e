// @ts-check
/**
 * One function's chart (`function?gran=…&name=…`, docs/protocol.md 3.13): its runtime or wait percentiles
 * (p50, p90, p95, p99, max) or its runs and failures per minute, hour or day, with its runners' restarts and
 * deploys drawn as vertical lines. uPlot is loaded on first use (as the Overview's chart modal does). Points
 * arrive keyed by slot, so a tick patches the open slot only; only slots with numbers are sent, so the chart lays
 * them on a grid of every slot from its first point (at least MIN_SLOTS back, never before `since`) to now: an
 * idle slot is a gap in a percentile line and a zero in the runs.
 */
import { now } from "../clock.js";
import { clockTime, count, field, setText } from "../format.js";
import { duration } from "./jobs/common.js";
import { loadUPlot } from "./overview/chart.js";

export const state = { measure: "runtime" };

const PCT = [
  { label: "p50", colour: "#16a34a", dash: undefined },
  { label: "p90", colour: "#2563eb", dash: undefined },
  { label: "p95", colour: "#d97706", dash: undefined },
  { label: "p99", colour: "#dc2626", dash: [6, 3] },
  { label: "max", colour: "#64748b", dash: [2, 3] },
];
const RUNS = [
  { label: "completed", colour: "#16a34a", dash: undefined },
  { label: "failed", colour: "#dc2626", dash: undefined },
  { label: "retried", colour: "#d97706", dash: [6, 3] },
];
// A point: [runs, completed, failed, retried, runtime p50, p90, p95, p99, max, wait p50, p90, p95, p99, max].
const OFFSET = /** @type {Record<string, number>} */ ({ runtime: 4, wait: 9, runs: 1 });
const MIN_SLOTS = 60; // the grid spans at least this many slots (an hour of minutes), so a lone point is not alone
const MAX_SLOTS = 2000; // and at most this many (a clock far off cannot make it huge)
const FLOOR = 1e-5; // the log scale has no zero: a 0 s runtime (the sketch reads 0.1 ms and less as 0) is drawn here

/** @type {WeakMap<HTMLElement, {plot: any, shape: string, marks: number[]}>} */
const plots = new WeakMap();
/** @type {WeakMap<HTMLElement, any>} */
const wanted = new WeakMap();

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  wanted.set(root, data);
  setText(field(root, "name"), data.name);
  if (!data.found) {
    destroy(root);
    setText(field(root, "summary"), `jobpulse holds no numbers for ${data.name} (yet).`);
    return;
  }
  loadUPlot().then(
    (UPlot) => {
      const latest = wanted.get(root);
      if (latest && latest.found) draw(root, UPlot, latest);
    },
    (error) => setText(field(root, "summary"), `The chart library did not load: ${error}`),
  );
}

/** Draw again (the measure changed). @param {HTMLElement} root */
export function redraw(root) {
  const data = wanted.get(root);
  if (data) render(root, data);
}

/** @param {HTMLElement} root */
export function destroy(root) {
  plots.get(root)?.plot.destroy();
  plots.delete(root);
}

/**
 * Start afresh for `name` (another function or resolution is about to be shown, or "" when the chart closes):
 * no plot, no data held (a resize or a measure change must not draw the previous one), the new name at once and
 * no numbers of the previous one. @param {HTMLElement} root @param {string} name
 */
export function reset(root, name) {
  destroy(root);
  wanted.delete(root);
  setText(field(root, "name"), name);
  setText(field(root, "summary"), name ? "Loading…" : "");
  setText(field(root, "marks"), "");
  field(root, "empty").hidden = true;
}

/** @param {HTMLElement} root @param {any} UPlot @param {any} data */
function draw(root, UPlot, data) {
  const measure = state.measure;
  const slots = Object.keys(data.points).map(Number).sort((a, b) => a - b);
  const xs = grid(slots, data.step, data.since);
  const lines = measure === "runs" ? RUNS : PCT;
  const at = OFFSET[measure];
  const idle = measure === "runs" ? 0 : null; // a slot without numbers: no runs, no percentile
  const ys = lines.map((_, i) =>
    xs.map((t) => {
      const point = data.points[String(t)];
      const v = point ? point[at + i] : undefined;
      if (typeof v !== "number") return idle;
      return measure === "runs" ? v : Math.max(v, FLOOR);
    }),
  );
  const host = field(root, "plot");
  const marks = (data.marks || []).map((/** @type {any[]} */ m) => m[0]);
  const shape = `${measure}|${data.gran}|${host.clientWidth}`;
  let held = plots.get(root);
  if (held && held.shape !== shape) {
    destroy(root);
    held = undefined;
  }
  field(root, "empty").hidden = slots.length > 0;
  if (held) {
    held.marks = marks;
    held.plot.setData([xs, ...ys]);
  } else if (slots.length) {
    const box = { plot: null, shape, marks };
    box.plot = new UPlot(options(data, lines, host, measure, box), [xs, ...ys], host);
    plots.set(root, /** @type {any} */ (box));
  }
  const row = data.row || {};
  const rt = row.runtime || [];
  const wt = row.wait || [];
  const rate = typeof row.fail_rate === "number" ? ` (${(row.fail_rate * 100).toFixed(1)}% failed)` : "";
  setText(
    field(root, "summary"),
    `Last ${data.window} min: ${count(row.runs || 0)} runs${rate} · runtime p50 ${dur(rt[0])}, p95 ${dur(rt[2])}, p99 ${dur(rt[3])} · wait p95 ${dur(wt[2])} · updated ${clockTime(Date.now() / 1000)}`,
  );
  const told = (data.marks || []).slice(0, 5).map((/** @type {any[]} */ m) => `${clockTime(m[0])} ${m[1]} ${m[2]}`);
  setText(field(root, "marks"), told.length ? `Runner restarts and deploys (dashed lines): ${told.join(" · ")}` : "");
}

/** @param {number | undefined} v */
function dur(v) {
  return typeof v === "number" ? duration(v) : "–";
}

/**
 * Every slot start from the first point (or MIN_SLOTS before the last, if earlier; never before `since`) to the
 * slot open now on the server's clock (or the last point, if later).
 * @param {number[]} slots the slots with numbers, sorted @param {number} step @param {number} since
 */
function grid(slots, step, since) {
  if (!slots.length || !(step > 0)) return slots;
  const last = Math.max(slots[slots.length - 1], Math.floor(now() / step) * step);
  let first = Math.min(slots[0], last - (MIN_SLOTS - 1) * step);
  if (typeof since === "number" && since > first) first = Math.min(since, slots[0]);
  first = Math.max(first, last - (MAX_SLOTS - 1) * step);
  /** @type {number[]} */
  const out = [];
  for (let t = first; t <= last; t += step) out.push(t);
  return out;
}

/** Seconds on the axis or in the legend: a duration, in µs below a millisecond (where a duration says "0 ms"), 0 at
 * FLOOR; no label for a tick uPlot's log-scale filter left out (null). @param {number | null} t */
function tick(t) {
  if (t === null || t === undefined) return "";
  if (t <= FLOOR) return "0 ms";
  return t < 0.001 ? `${Number((t * 1e6).toPrecision(2))} µs` : duration(t);
}

/**
 * @param {any} data @param {{label: string, colour: string, dash: number[] | undefined}[]} lines
 * @param {HTMLElement} host @param {string} measure @param {{marks: number[]}} box
 */
function options(data, lines, host, measure, box) {
  const style = getComputedStyle(document.documentElement);
  const muted = style.getPropertyValue("--muted").trim() || "#64748b";
  const line = style.getPropertyValue("--line").trim() || "#e2e8f0";
  const font = "12px system-ui, sans-serif";
  const axis = { stroke: muted, font, labelFont: font, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  const seconds = measure !== "runs";
  const per = data.gran === "minutes" ? "minute" : data.gran === "hours" ? "hour" : "day";
  return {
    width: Math.max(280, host.clientWidth),
    height: Math.round(Math.max(220, Math.min(window.innerHeight * 0.45, 420))),
    scales: { x: { time: true }, y: seconds ? { distr: 3 } : {} },
    series: [
      { label: "time" },
      ...lines.map((l) => ({
        label: l.label,
        stroke: l.colour,
        width: 1.75,
        dash: l.dash,
        spanGaps: false,
        value: (/** @type {any} */ _u, /** @type {number | null} */ v) =>
          v === null || v === undefined ? "–" : seconds ? tick(v) : count(v),
      })),
    ],
    axes: [
      { ...axis, size: 44 },
      {
        ...axis,
        label: seconds ? `${measure} (s, log scale)` : `runs per ${per}`,
        size: 60,
        labelSize: 20,
        values: (/** @type {any} */ _u, /** @type {number[]} */ ticks) => ticks.map((t) => (t === null ? "" : seconds ? tick(t) : count(t))),
      },
    ],
    hooks: {
      draw: [
        (/** @type {any} */ u) => {
          // The runners' restarts and deploys: a dashed vertical line each.
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = muted;
          ctx.setLineDash([4, 4]);
          for (const t of box.marks) {
            const x = Math.round(u.valToPos(t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        },
      ],
    },
    legend: { live: true },
  };
}
