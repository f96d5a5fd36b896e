// @ts-check
/** The five service counters: the value and its change against 24 h ago, updated in place. */
import { count, setText } from "../format.js";

/** @param {HTMLElement} root @param {Record<string, {v: number, prev?: number}>} data */
export function render(root, data) {
  for (const card of root.querySelectorAll("[data-key]")) {
    const entry = data[/** @type {HTMLElement} */ (card).dataset.key || ""];
    if (!entry) continue;
    // No flash here: on a busy system the counters change every tick, and a flashing wall says nothing.
    setText(/** @type {HTMLElement} */ (card.querySelector('[data-f="v"]')), count(entry.v));
    const trend = /** @type {HTMLElement} */ (card.querySelector('[data-f="trend"]'));
    if (typeof entry.prev === "number") {
      const delta = entry.v - entry.prev;
      const pct = entry.prev ? ` (${delta >= 0 ? "+" : ""}${Math.round((delta / entry.prev) * 100)}%)` : "";
      setText(trend, `${delta > 0 ? "▲" : delta < 0 ? "▼" : "="} ${delta >= 0 ? "+" : ""}${count(delta)}${pct} vs 24 h ago`);
      trend.className = `counter-trend ${delta > 0 ? "up" : delta < 0 ? "down" : ""}`;
    } else {
      setText(trend, "no data from 24 h ago");
      trend.className = "counter-trend";
    }
  }
}
