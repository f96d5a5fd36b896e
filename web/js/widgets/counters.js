// @ts-check
/** The five service counters: the value and its change against 24 h ago, updated in place. */
import { count, flash, setText } from "../format.js";

/** @param {HTMLElement} root @param {Record<string, {v: number, prev?: number}>} data */
export function render(root, data) {
  for (const card of root.querySelectorAll("[data-key]")) {
    const entry = data[/** @type {HTMLElement} */ (card).dataset.key || ""];
    if (!entry) continue;
    const value = /** @type {HTMLElement} */ (card.querySelector('[data-f="v"]'));
    const text = count(entry.v);
    if (value.textContent !== text) {
      value.textContent = text;
      flash(value);
    }
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
