// @ts-check
/**
 * Jobs Published: a per-minute sparkline; minutes nobody watched are drawn as gaps, not zeros. The minute still
 * under way is drawn dashed, at the pace it is on, not as the dip that its first seconds' count would make.
 */
import { now } from "../clock.js";
import { count, setText } from "../format.js";
import { elapsedShare, splitPartial } from "./overview/spark.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 70;

/** @param {HTMLElement} root @param {{from: number, to: number, buckets: Record<string, number>}} data */
export function render(root, data) {
  const svg = /** @type {SVGSVGElement} */ (root.querySelector('[data-f="chart"]'));
  const n = data.to - data.from + 1;
  /** @type {Array<number | undefined>} */
  const all = [];
  let total = 0;
  for (let m = data.from; m <= data.to; m++) {
    const v = data.buckets[String(m)];
    all.push(v);
    if (typeof v === "number") total += v;
  }
  const share = elapsedShare(data.to * 60, 60, now());
  const { values, pace } = splitPartial(all, share);
  let peak = 0; // of the minutes that are over
  for (const v of values) if (typeof v === "number") peak = Math.max(peak, v);
  const max = Math.max(1, peak, pace ?? 0);
  const x = (/** @type {number} */ i) => (n <= 1 ? 0 : (i / (n - 1)) * W);
  const y = (/** @type {number} */ v) => H - 2 - (v / max) * (H - 6);
  // Split into runs of watched minutes; each run is its own path so a gap stays a gap.
  let line = "";
  let area = "";
  let gaps = "";
  let run = [];
  const flush = () => {
    if (!run.length) return;
    const pts = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    line += `M${pts.join("L")}`;
    area += `M${x(run[0][0]).toFixed(1)},${H}L${pts.join("L")}L${x(run[run.length - 1][0]).toFixed(1)},${H}Z`;
    run = [];
  };
  values.forEach((v, i) => {
    if (typeof v === "number") run.push([i, v]);
    else {
      flush();
      // The minute under way is not a gap: it has a count, drawn as its pace below.
      if (i < n - 1 || typeof all[i] !== "number") {
        gaps += `M${(x(i) - W / n / 2).toFixed(1)},0h${(W / n).toFixed(1)}v${H}h-${(W / n).toFixed(1)}Z`;
      }
    }
  });
  flush();
  let partial = "";
  if (pace !== null) {
    const before = values[n - 2];
    const end = `${x(n - 1).toFixed(1)},${y(pace).toFixed(1)}`;
    partial = typeof before === "number" ? `M${x(n - 2).toFixed(1)},${y(before).toFixed(1)}L${end}` : `M${end}h-0.1`;
  }
  let paths = svg.querySelectorAll("path");
  if (paths.length !== 4) {
    svg.replaceChildren();
    for (const cls of ["gap", "area", "line", "line partial"]) {
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("class", cls);
      svg.appendChild(p);
    }
    paths = svg.querySelectorAll("path");
  }
  paths[0].setAttribute("d", gaps);
  paths[1].setAttribute("d", area);
  paths[2].setAttribute("d", line);
  paths[3].setAttribute("d", partial);
  const last = all[all.length - 1];
  setText(
    /** @type {HTMLElement} */ (root.querySelector('[data-f="summary"]')),
    `${count(total)} in the last hour · ${typeof last === "number" ? count(last) : "–"} this minute so far · peak ${count(peak)}/min`,
  );
}
