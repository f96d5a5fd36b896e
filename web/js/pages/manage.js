// @ts-check
/**
 * The Job Operations Center (/admin/jobs/manage): action tiles that show live what each action would touch
 * and open its form (forms.js, loaded on first use; enabled only when this user may do the action), Recent
 * Maintenance Activity (the live `activity` widget), and Job Lookup by job id or correlation id (a live
 * `find?q=` view; one match opens its details).
 */
import { wireFormButtons } from "../action.js";
import { mount, register, socket, start, unmount } from "../app.js";
import { setText } from "../format.js";
import { viewKey } from "../views.js";
import * as activity from "../widgets/activity.js";
import * as health from "../widgets/health.js";
import { openJob } from "../widgets/jobs/common.js";
import { attachOpen, renderRows } from "../widgets/jobs/job-rows.js";
import * as ops from "../widgets/jobs/ops.js";

/** @typedef {(root: HTMLElement, data: any, key: string) => void} Render */

/** One renderer per widget kind, choosing by the root's `data-part` (two tiles may show one widget). */
/** @param {Record<string, Render>} parts @returns {Render} */
function byPart(parts) {
  return (root, data, key) => parts[root.dataset.part || ""]?.(root, data, key);
}

register("health", health.render); // the footer's intake line
register("channels", byPart({ run: ops.channelsList, purge: ops.purge }));
register("snapshot", byPart({ hour: ops.lastHour, longest: ops.longest }));
register("fleet_summary", byPart({ broadcast: ops.broadcast }));
register("hot_issues", byPart({ stuck: ops.stuck, silent: ops.silent }));
register("activity", activity.render);
wireFormButtons(/** @type {HTMLElement} */ (document.querySelector(".ops-grid")), "");

// -- Job Lookup -------------------------------------------------------------------------------------------

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($("lookup-form"));
const input = /** @type {HTMLInputElement} */ ($("lookup-q"));
const result = $("lookup-result");
const status = $("lookup-status");
const wrap = $("lookup-wrap");
const rows = $("lookup-rows");
const LOOKUP_CAP = 20; // the server's lookup_rows

/** The `find` view shown now, and the one whose first answer may open the modal (once per look-up). */
let lookupKey = "";
let autoOpen = "";

/** @param {string} raw */
function lookup(raw) {
  const needle = raw.trim();
  const url = needle ? `${location.pathname}?find=${encodeURIComponent(needle)}` : location.pathname;
  history.replaceState(null, "", url);
  if (!needle) {
    unmount(result);
    lookupKey = "";
    result.hidden = true;
    return;
  }
  const key = viewKey("find", { q: needle });
  autoOpen = key;
  result.hidden = false;
  if (key === lookupKey) {
    const data = socket.data(key);
    if (data !== undefined) renderFind(result, data, key);
    return;
  }
  lookupKey = key;
  setText(status, `Looking up ${needle}…`);
  wrap.hidden = true;
  mount(result, key);
}

/** @param {HTMLElement} root @param {any} data @param {string} key */
function renderFind(root, data, key) {
  if (key !== lookupKey) return;
  renderRows(rows, data);
  const order = data.order || [];
  const q = data.q;
  const n = order.length;
  wrap.hidden = n === 0;
  const byId = n > 0 && order[0] === q;
  let text;
  if (n === 0) {
    text =
      `No job has the id or correlation id “${q}”. ` +
      "jobpulse keeps finished jobs up to JOBPULSE_MAX_JOBS; older ones are gone.";
  } else if (n === 1) {
    text = byId ? `Job ${q}:` : `One job has correlation id “${q}”:`;
  } else if (byId) {
    text = `Job ${q}, then ${n - 1} job${n === 2 ? "" : "s"} with “${q}” as correlation id, newest first:`;
  } else {
    text = `${n} jobs have correlation id “${q}”, newest first${n >= LOOKUP_CAP ? ` (the ${LOOKUP_CAP} newest)` : ""}:`;
  }
  setText(status, text);
  if (autoOpen === key) {
    autoOpen = "";
    if (n === 1) openJob(order[0]);
  }
}

register("find", renderFind);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  lookup(input.value);
});
attachOpen(rows);

start();
const initial = new URLSearchParams(location.search).get("find");
if (initial) {
  input.value = initial;
  lookup(initial);
}
