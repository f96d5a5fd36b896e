// @ts-check
/** Jobs Published: a per-minute sparkline; minutes nobody watched are drawn as gaps, not zeros. */
import { count, setText } from "../format.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 70;

/** @param {HTMLElement} root @param {{from: number, to: number, buckets: Record<string, number>}} data */
export function render(root, data) {
  const svg = /** @type {SVGSVGElement} */ (root.querySelector('[data-f="chart"]'));
  const n = data.to - data.from + 1;
  const values = [];
  let max = 1;
  let total = 0;
  for (let m = data.from; m <= data.to; m++) {
    const v = data.buckets[String(m)];
    values.push(v);
    if (typeof v === "number") {
      max = Math.max(max, v);
      total += v;
    }
  }
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
      gaps += `M${(x(i) - W / n / 2).toFixed(1)},0h${(W / n).toFixed(1)}v${H}h-${(W / n).toFixed(1)}Z`;
    }
  });
  flush();
  let paths = svg.querySelectorAll("path");
  if (paths.length !== 3) {
    svg.replaceChildren();
    for (const cls of ["gap", "area", "line"]) {
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("class", cls);
      svg.appendChild(p);
    }
    paths = svg.querySelectorAll("path");
  }
  paths[0].setAttribute("d", gaps);
  paths[1].setAttribute("d", area);
  paths[2].setAttribute("d", line);
  const last = values[values.length - 1];
  setText(
    /** @type {HTMLElement} */ (root.querySelector('[data-f="summary"]')),
    `${count(total)} in the last hour · ${typeof last === "number" ? count(last) : "–"} this minute · peak ${count(max)}/min`,
  );
}
