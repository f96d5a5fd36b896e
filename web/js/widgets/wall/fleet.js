// @ts-check
/** The wall's fleet summary (`fleet_summary` widget): runners by status, and a short line per region. */
import { count, setText } from "../../format.js";

const PROBLEMS = ["offline", "stale", "draining"];

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const counts = data.counts || {};
  for (const node of root.querySelectorAll(".wall-fleet-count[data-key]")) {
    const tile = /** @type {HTMLElement} */ (node);
    const n = Number(counts[tile.dataset.key || ""] || 0);
    setText(/** @type {HTMLElement} */ (tile.querySelector('[data-f="n"]')), count(n));
    const zero = String(n === 0);
    if (tile.dataset.zero !== zero) tile.dataset.zero = zero;
  }
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="total"]')), `${count(data.total)} known`);
  const regions = Object.entries(data.regions || {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, byStatus]) => {
      const s = /** @type {Record<string, number>} */ (byStatus);
      const total = Object.values(s).reduce((a, b) => a + Number(b), 0);
      const issues = PROBLEMS.filter((k) => s[k]).map((k) => `${s[k]} ${k}`);
      return `${name} ${total}${issues.length ? ` (${issues.join(", ")})` : ""}`;
    });
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="regions"]')), regions.join(" · "));
}
