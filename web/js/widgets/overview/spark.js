// @ts-check
/**
 * Sparklines in an inline SVG (no library): lines, an optional area, and shaded gaps where nobody was
 * watching. The SVG's paths are made once and only their `d` changes, so an update never rebuilds the chart.
 */

const SVG = "http://www.w3.org/2000/svg";
export const W = 300;
export const H = 60;

/**
 * @typedef {{cls: string, values: Array<number | null | undefined>, area?: boolean, join?: boolean,
 *   partial?: number}} SparkLine
 * `values` has one slot per x position; a missing value breaks the line (a gap) unless `join` is set,
 * in which case the line runs on to the next value (a series that only has points where something happened).
 * `partial` (0-1): the last slot is a bucket still filling (this minute, this hour), that share of it gone: its
 * count is drawn as the pace it is on (count / share), dashed, from the previous point, instead of as the dip
 * that a third of a minute's jobs would make. Below a tenth of the bucket the pace says too little: left out.
 */

/** The share of the bucket of `step` seconds starting at `start` that has gone by at `at` (0-1). */
export function elapsedShare(/** @type {number} */ start, /** @type {number} */ step, /** @type {number} */ at) {
  return Math.min(1, Math.max(0, (at - start) / step));
}

/**
 * A series whose last value is a bucket still filling: the values without it, and its pace path's points.
 * @param {Array<number | null | undefined>} values @param {number | undefined} share
 * @returns {{values: Array<number | null | undefined>, pace: number | null}}
 */
export function splitPartial(values, share) {
  const last = values[values.length - 1];
  if (share === undefined || share >= 1 || typeof last !== "number") return { values, pace: null };
  return { values: values.slice(0, -1).concat([undefined]), pace: share >= 0.1 ? last / share : null };
}

/**
 * Draw `lines` over `n` slots in `svg`; `gaps[i]` shades slot i (a minute nobody watched).
 * @param {SVGSVGElement} svg
 * @param {number} n
 * @param {SparkLine[]} lines
 * @param {{gaps?: boolean[], max?: number}} [options]
 */
export function drawSpark(svg, n, lines, options = {}) {
  let max = options.max ?? 0;
  const split = lines.map((line) => splitPartial(line.values, line.partial));
  if (!options.max) {
    split.forEach(({ values, pace }) => {
      for (const v of values) if (typeof v === "number" && v > max) max = v;
      if (pace !== null && pace > max) max = pace;
    });
  }
  if (max <= 0) max = 1;
  const x = (/** @type {number} */ i) => (n <= 1 ? W / 2 : (i / (n - 1)) * W);
  const y = (/** @type {number} */ v) => H - 2 - (Math.max(0, v) / max) * (H - 6);
  const slot = n <= 1 ? W : W / (n - 1);

  let gapD = "";
  (options.gaps || []).forEach((gap, i) => {
    if (gap) gapD += `M${(x(i) - slot / 2).toFixed(1)},0h${slot.toFixed(1)}v${H}h${(-slot).toFixed(1)}Z`;
  });
  path(svg, "gap").setAttribute("d", gapD);

  lines.forEach((line, index) => {
    const { values, pace } = split[index];
    let lineD = "";
    let areaD = "";
    /** @type {Array<[number, number]>} */
    let run = [];
    const flush = () => {
      if (!run.length) return;
      const pts = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      // A lone point gets a short tick so it shows.
      lineD += run.length === 1 ? `M${(x(run[0][0]) - 2.5).toFixed(1)},${y(run[0][1]).toFixed(1)}h5` : `M${pts.join("L")}`;
      if (line.area && run.length > 1) {
        areaD += `M${x(run[0][0]).toFixed(1)},${H}L${pts.join("L")}L${x(run[run.length - 1][0]).toFixed(1)},${H}Z`;
      }
      run = [];
    };
    values.forEach((v, i) => {
      if (typeof v === "number") run.push([i, v]);
      else if (!line.join) flush();
    });
    flush();
    if (line.area) path(svg, `area ${line.cls}`).setAttribute("d", areaD);
    path(svg, `line ${line.cls}`).setAttribute("d", lineD);
    if (line.partial !== undefined) {
      const before = values[n - 2];
      let paceD = "";
      if (pace !== null) {
        const end = `${x(n - 1).toFixed(1)},${y(pace).toFixed(1)}`;
        paceD = typeof before === "number" ? `M${x(n - 2).toFixed(1)},${y(before).toFixed(1)}L${end}` : `M${end}h-0.1`;
      }
      path(svg, `line partial ${line.cls}`).setAttribute("d", paceD);
    }
  });
  return max;
}

/** The path of `svg` with class list `cls`, made on first use. @param {SVGSVGElement} svg @param {string} cls */
function path(svg, cls) {
  for (const p of svg.children) if (p.getAttribute("class") === cls) return p;
  const p = document.createElementNS(SVG, "path");
  p.setAttribute("class", cls);
  svg.appendChild(p);
  return p;
}
