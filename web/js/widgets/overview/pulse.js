// @ts-check
/**
 * Runner Pulse (`pulse`): heartbeat latency (p50 and max, ms) and the gap between beats (s) per second
 * that had beats, and "Last heartbeat: 32s ago", which the browser ticks (data-since, data-ago).
 */
import { count, setText } from "../../format.js";
import { field, setAttr } from "./list.js";
import { drawSpark } from "./spark.js";

/** @param {number} v @param {number} digits */
const fixed = (v, digits) => (typeof v === "number" ? v.toFixed(digits) : "–");

/**
 * @param {HTMLElement} root
 * @param {{points?: Record<string, [number, number, number, number]>, last?: number, live?: number}} data
 */
export function render(root, data) {
  const last = field(root, "last");
  if (typeof data.last === "number") last.dataset.since = String(data.last);
  else {
    delete last.dataset.since;
    setText(last, "none yet");
  }
  setText(field(root, "live"), count(data.live ?? 0));

  const points = data.points || {};
  const seconds = Object.keys(points)
    .map(Number)
    .sort((a, b) => a - b);
  const first = seconds[0] ?? 0;
  const n = seconds.length ? seconds[seconds.length - 1] - first + 1 : 0;
  /** @type {Array<number | undefined>} */
  const p50 = new Array(n).fill(undefined);
  /** @type {Array<number | undefined>} */
  const max = new Array(n).fill(undefined);
  /** @type {Array<number | undefined>} */
  const gap = new Array(n).fill(undefined);
  let worstLatency = 0;
  let worstGap = 0;
  for (const t of seconds) {
    const [a, b, g] = points[String(t)];
    p50[t - first] = a;
    max[t - first] = b;
    gap[t - first] = g;
    worstLatency = Math.max(worstLatency, b);
    worstGap = Math.max(worstGap, g);
  }
  const latencySvg = /** @type {SVGSVGElement} */ (root.querySelector('[data-f="latency-spark"]'));
  const gapSvg = /** @type {SVGSVGElement} */ (root.querySelector('[data-f="gap-spark"]'));
  drawSpark(latencySvg, n, [
    { cls: "max", values: max, join: true },
    { cls: "main", values: p50, join: true },
  ]);
  drawSpark(gapSvg, n, [{ cls: "main", values: gap, join: true, area: true }]);

  const latest = seconds.length ? points[String(seconds[seconds.length - 1])] : null;
  setText(
    field(root, "latency"),
    latest ? `now p50 ${fixed(latest[0], 1)} · max ${fixed(latest[1], 1)} ms · worst ${fixed(worstLatency, 1)} ms` : "no beats yet",
  );
  setText(field(root, "gap"), latest ? `now ${fixed(latest[2], 1)} s · worst ${fixed(worstGap, 1)} s` : "no beats yet");
  const span = n ? `over the last ${n} s` : "";
  setAttr(latencySvg, "aria-label", `heartbeat latency ${span}: worst ${fixed(worstLatency, 1)} ms`);
  setAttr(gapSvg, "aria-label", `gap between heartbeats ${span}: worst ${fixed(worstGap, 1)} s`);
}
