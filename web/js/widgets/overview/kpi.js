// @ts-check
/**
 * A KPI card (`kpi?gran=…&metric=…`): the window's value, its trend against the window before (arrow,
 * percentage and words, not colour alone) and a sparkline in which unwatched buckets are gaps, not zeros.
 * The card's granularity control lives in pages/overview.js: it swaps the card's view key.
 */
import { now, span } from "../../clock.js";
import { clockTime, count, setText } from "../../format.js";
import { field, setAttr } from "./list.js";
import { drawSpark, elapsedShare } from "./spark.js";

/** Metrics that are gauges: the value is the latest sample, the server adds the window's peak. */
const GAUGES = new Set(["inflight", "backlog"]);
/** Metrics for which going up is good news (the trend's colour; the words say it either way). */
const UP_IS_GOOD = new Set(["completed", "published"]);
const UNITS = /** @type {Record<string, [string, string]>} */ ({
  minutes: ["min", "per minute"],
  hours: ["h", "per hour"],
  days: ["days", "per day"],
});

/** The window a KPI view covers, in words ("last 60 min"). @param {string} gran @param {number} [n] */
export function windowText(gran, n) {
  const points = n ?? (gran === "minutes" ? 60 : gran === "hours" ? 24 : 14);
  return `${points} ${UNITS[gran]?.[0] ?? gran}`;
}

/** @param {string} metric @param {number | undefined} v */
export function formatValue(metric, v) {
  if (typeof v !== "number") return "–";
  return metric === "inflight" ? span(v) : count(v);
}

/**
 * @typedef {{metric: string, gran: string, step: number, from: number, to: number,
 *   points: Record<string, number>, value: number, prev?: number, peak?: number}} KpiData
 * @param {HTMLElement} root the card
 * @param {KpiData} data
 */
export function render(root, data) {
  const n = data.to - data.from + 1;
  const win = windowText(data.gran, n);
  const gauge = GAUGES.has(data.metric);
  root.removeAttribute("aria-busy");
  setText(field(root, "value"), formatValue(data.metric, data.value));
  const latest = data.metric === "inflight" ? "longest job now" : "queued now";
  // Where the window reaches back into the demo's made-up hours, it says so (docs/protocol.md 3.8).
  const synthetic = typeof data.synthetic_until === "number" ? ` · synthetic demo history before ${clockTime(data.synthetic_until)}` : "";
  setText(field(root, "window"), (gauge ? `${latest} · peak ${formatValue(data.metric, data.peak)} in ${win}` : `last ${win}`) + synthetic);
  setAttr(root, "data-synthetic", synthetic ? "true" : "false");

  const trend = field(root, "trend");
  if (typeof data.prev === "number") {
    const delta = data.value - data.prev;
    const arrow = delta > 0 ? "▲" : delta < 0 ? "▼" : "=";
    const what = gauge ? `the previous ${win}'s peak` : `the previous ${win}`;
    let text;
    if (delta === 0) text = `= same as ${what}`;
    else if (data.prev === 0) text = `${arrow} up from 0 in ${what}`;
    else {
      const pct = Math.round((Math.abs(delta) / data.prev) * 100);
      text = `${arrow} ${delta > 0 ? "+" : "−"}${pct}% vs ${what}`;
    }
    setText(trend, text);
    setAttr(trend, "title", `${formatValue(data.metric, data.value)} now, ${formatValue(data.metric, data.prev)} in ${what}`);
    const good = delta === 0 ? "" : (delta > 0) === UP_IS_GOOD.has(data.metric) ? "good" : "bad";
    setAttr(trend, "class", `kpi-trend ${good}`.trim());
  } else {
    setText(trend, `no data from the previous ${win}`);
    setAttr(trend, "title", "jobpulse was not watching during the window before this one");
    setAttr(trend, "class", "kpi-trend");
  }

  const values = [];
  const gaps = [];
  let missing = 0;
  let peak = 0;
  for (let k = data.from; k <= data.to; k++) {
    const v = data.points[String(k)];
    values.push(v);
    gaps.push(v === undefined);
    if (v === undefined) missing += 1;
    else peak = Math.max(peak, v);
  }
  const svg = /** @type {SVGSVGElement | null} */ (root.querySelector('[data-f="spark"]'));
  if (svg) {
    // A count's last bucket is still filling: drawn as its pace (spark.js), not as a dip. A gauge's is a sample.
    const partial = gauge ? undefined : elapsedShare(data.to * data.step, data.step, now());
    drawSpark(svg, n, [{ cls: "main", values, area: true, partial }], { gaps });
    const label = `${field(root, "title")?.textContent ?? data.metric} ${UNITS[data.gran]?.[1] ?? ""}, last ${win}: peak ${formatValue(data.metric, peak)}${missing ? `, ${missing} of ${n} not watched (shaded gaps)` : ""}`;
    setAttr(svg, "aria-label", label);
  }
}
