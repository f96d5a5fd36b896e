// @ts-check
/** The server's clock as seen from the page, and the ticking "12 s ago" labels that use it. */

let offset = 0; // server seconds minus local seconds

/** @param {number} serverNow epoch seconds from a server frame */
export function syncClock(serverNow) {
  offset = serverNow - Date.now() / 1000;
}

/** @returns {number} the server's current time, epoch seconds */
export function now() {
  return Date.now() / 1000 + offset;
}

/** @param {number} seconds */
export function span(seconds) {
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/**
 * Write the age or countdown of every [data-since] / [data-until] element under `root`.
 * @param {ParentNode} [root]
 */
export function refreshTimes(root = document) {
  const t = now();
  for (const el of root.querySelectorAll("[data-since]")) {
    const since = Number(/** @type {HTMLElement} */ (el).dataset.since);
    const text = Number.isFinite(since) ? span(t - since) + (el.hasAttribute("data-ago") ? " ago" : "") : "–";
    if (el.textContent !== text) el.textContent = text;
  }
  for (const el of root.querySelectorAll("[data-until]")) {
    const until = Number(/** @type {HTMLElement} */ (el).dataset.until);
    const left = until - t;
    const text = !Number.isFinite(until) ? "–" : left > 0 ? `in ${span(left)}` : "due";
    if (el.textContent !== text) el.textContent = text;
  }
}

export function startTicker() {
  setInterval(() => refreshTimes(), 1000);
}
