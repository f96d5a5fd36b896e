// @ts-check
/** The fleet summary under the page title (`fleet_summary`): every runner by status, whatever the filters. */
import { count, el, setText } from "../../format.js";
import { STATUSES } from "./filters.js";

/** @param {HTMLElement} root @param {{counts: Record<string, number>, total: number}} data */
export function render(root, data) {
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="total"]')), count(data.total));
  const holder = /** @type {HTMLElement} */ (root.querySelector('[data-f="counts"]'));
  if (!holder.childElementCount) {
    for (const status of STATUSES) {
      const badge = el("span", `badge ${status}`);
      badge.dataset.status = status;
      holder.append(" ", badge);
    }
  }
  for (const node of holder.children) {
    const badge = /** @type {HTMLElement} */ (node);
    const n = data.counts?.[badge.dataset.status || ""] || 0;
    setText(badge, `${count(n)} ${badge.dataset.status}`);
    if (badge.classList.contains("none") !== !n) badge.classList.toggle("none", !n);
  }
}
