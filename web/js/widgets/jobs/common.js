// @ts-check
/** What the job pages and the job modal share: status labels, durations and ticking time cells. */
import { span } from "../../clock.js";
import { clockTime, setText } from "../../format.js";

/** Every job status the server reports (docs/protocol.md 1.1), in lifecycle order. */
export const STATUSES = ["queued", "scheduled", "running", "completed", "failed", "canceled", "expired", "unknown"];

/** A duration in seconds as people read it: "850 ms", "1.30 s", "2m 5s". @param {number | null | undefined} s */
export function duration(s) {
  if (typeof s !== "number" || !Number.isFinite(s) || s < 0) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  return span(s);
}

/**
 * Write a status badge: its text label and its colour class.
 * @param {Element} badge @param {string | undefined} status
 */
export function setStatus(badge, status) {
  const label = status || "unknown";
  setText(badge, label);
  const cls = `badge ${label}`;
  if (badge.className !== cls) badge.className = cls;
}

/**
 * Make `node` tick an age (`since`, epoch seconds) or a countdown (`until`), or show "–" when neither is
 * known. The page's clock (clock.js) writes the text every second; the title holds the wall-clock time.
 * @param {HTMLElement} node
 * @param {{since?: number | null, until?: number | null, ago?: boolean}} when
 */
export function setTime(node, { since, until, ago = false }) {
  const data = node.dataset;
  if (typeof since === "number") {
    if (data.since !== String(since)) data.since = String(since);
    delete data.until;
    node.toggleAttribute("data-ago", ago);
    node.title = clockTime(since);
  } else if (typeof until === "number") {
    if (data.until !== String(until)) data.until = String(until);
    delete data.since;
    node.removeAttribute("data-ago");
    node.title = clockTime(until);
  } else {
    delete data.since;
    delete data.until;
    node.removeAttribute("data-ago");
    node.removeAttribute("title");
    setText(node, "–");
  }
}

/** Look up one element by its `data-f` name under `root`. @param {ParentNode} root @param {string} name */
export function field(root, name) {
  return /** @type {HTMLElement} */ (root.querySelector(`[data-f="${name}"]`));
}

/** The job modal's module, loaded on first use (it is not needed for a page's first paint). */
export function jobModal() {
  return import("../../job-modal.js");
}

/** Open a job's details in the job modal. @param {string} jobId */
export function openJob(jobId) {
  jobModal().then((modal) => modal.openJobDetails(jobId));
}
