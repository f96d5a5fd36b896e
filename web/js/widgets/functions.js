// @ts-check
/**
 * The Functions table (`functions`, docs/protocol.md 3.13): each function's (or channel's) runs, failures,
 * fail rate and runtime and wait percentiles over the rolling window, live. The page's filters (kind,
 * channel, source, search) and sort order live here; rows are keyed, so a function that ran changes its
 * own row only. Clicking a row (or Enter on it) asks the page to open that function's chart.
 */
import { count, el, field, setText } from "../format.js";
import { duration } from "./jobs/common.js";
import { newRow, syncRows } from "./rows.js";

/** What the table shows: the page sets these and calls `redraw`. */
export const view = {
  kind: "functions",
  channel: "",
  source: "",
  q: "",
  sort: "runs",
  descending: true,
  /** @type {(name: string, kind: string) => void} */
  open: () => {},
};

const EMPTY = "No job has finished in the window yet: rows appear as jobs run.";

/** @type {HTMLElement | null} */
let lastRoot = null;
/** @type {any} */
let lastData = null;

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  lastRoot = root;
  lastData = data;
  draw(root, data);
}

/** Draw again with the page's current filters and sort. */
export function redraw() {
  if (lastRoot && lastData) draw(lastRoot, lastData);
}

/** The channels the data names (for the page's channel filter). @returns {string[]} */
export function channelNames() {
  return lastData ? Object.keys(lastData.channels).sort() : [];
}

/** @param {any} row @param {string} key @returns {number} */
function sortValue(row, key) {
  if (key === "rt95") return row.runtime ? row.runtime[2] : -1;
  if (key === "wt95") return row.wait ? row.wait[2] : -1;
  if (key === "fail_rate") return row.fail_rate ?? -1;
  return row[key] ?? 0;
}

/** @param {HTMLElement} root @param {any} data */
function draw(root, data) {
  const functions = view.kind === "functions";
  const rows = functions ? data.functions : data.channels;
  const q = view.q.trim().toLowerCase();
  const names = Object.keys(rows).filter((name) => {
    const row = rows[name];
    if (q && !name.toLowerCase().includes(q)) return false;
    if (view.channel && functions && !(row.related || []).includes(view.channel)) return false;
    if (view.channel && !functions && name !== view.channel) return false;
    if (view.source && !(row.sources || []).includes(view.source)) return false;
    return true;
  });
  const sign = view.descending ? -1 : 1;
  names.sort((a, b) => {
    if (view.sort === "name") return sign * (a < b ? -1 : a > b ? 1 : 0);
    const d = sortValue(rows[a], view.sort) - sortValue(rows[b], view.sort);
    return d ? sign * d : a < b ? -1 : 1;
  });
  syncRows(field(root, "rows"), { rows, order: names }, create, fill);
  setText(field(root, "title"), functions ? "Functions" : "Channels");
  setText(field(root, "related-h"), functions ? "Channels" : "Functions");
  const runs = names.reduce((n, name) => n + rows[name].runs, 0);
  const total = Object.keys(rows).length;
  const shown = names.length === total ? `${count(total)}` : `${count(names.length)} of ${count(total)}`;
  const noun = functions ? (total === 1 ? "function" : "functions") : total === 1 ? "channel" : "channels";
  setText(field(root, "summary"), `${shown} ${noun} · ${count(runs)} ${runs === 1 ? "run" : "runs"} in ${data.window} min`);
  const empty = field(root, "empty");
  empty.hidden = names.length > 0;
  // Nothing ran, or the filters leave nothing: not the same news.
  setText(empty, total ? `No ${functions ? "function" : "channel"} matches the filters.` : EMPTY);
  const win = document.getElementById("fn-window");
  if (win) setText(win, String(data.window));
  for (const button of root.querySelectorAll("button.sort")) {
    const th = /** @type {HTMLElement} */ (button.parentElement);
    const on = /** @type {HTMLElement} */ (button).dataset.sort === view.sort;
    if (on) th.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
}

/** @param {any} _row @param {string} key */
function create(_row, key) {
  const name = el("td", "fn-name");
  const link = /** @type {HTMLButtonElement} */ (el("button", "link", key));
  link.type = "button";
  link.title = view.kind === "functions" ? "Open this function's chart" : "Show this channel's functions";
  const kind = view.kind;
  link.addEventListener("click", () => view.open(key, kind));
  name.append(link);
  const tr = newRow(name, ...Array.from({ length: 11 }, () => el("td", "num")), el("td", "small fn-related"));
  return tr;
}

/** @param {number | null | undefined} v */
function secs(v) {
  return typeof v === "number" ? duration(v) : "–";
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fill(tr, row) {
  const cells = tr.cells;
  const rt = row.runtime || [];
  const wt = row.wait || [];
  const rate = typeof row.fail_rate === "number" ? `${(row.fail_rate * 100).toFixed(row.fail_rate < 0.1 ? 1 : 0)}%` : "–";
  const values = [count(row.runs), count(row.failed), rate, count(row.retried), secs(rt[0]), secs(rt[2]), secs(rt[3]),
    secs(rt[4]), secs(wt[0]), secs(wt[2]), secs(wt[4])];
  values.forEach((text, i) => setText(cells[i + 1], text));
  cells[2].classList.toggle("bad", row.failed > 0);
  cells[3].classList.toggle("bad", (row.fail_rate ?? 0) >= 0.2);
  const related = row.related || [];
  setText(cells[12], related.join(", ") + (row.more ? ` +${row.more}` : ""));
}
