// @ts-check
/** The intake line in the footer: events, rejections, duplicates, gaps, Redis round trip. */
import { count, setText } from "../format.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const f = (/** @type {string} */ name) => /** @type {HTMLElement} */ (root.querySelector(`[data-f="${name}"]`));
  setText(f("events"), count(data.events));
  const rejected = Object.values(data.rejected || {}).reduce((a, b) => a + Number(b), 0);
  setText(f("rejected"), count(rejected));
  f("rejected").title = JSON.stringify(data.rejected || {});
  setText(f("dupes"), count(data.dupes));
  setText(f("gaps"), count(data.gaps));
  setText(f("rtt"), data.rtt_ms !== undefined ? `${data.rtt_ms} ms` : "–");
}
