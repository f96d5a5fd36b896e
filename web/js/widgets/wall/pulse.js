// @ts-check
/**
 * The wall's runner pulse (`pulse` widget): how long ago the last heartbeat arrived (ticking in the browser),
 * with the latest second's latency. `tick` marks the card late when no beat came for a while.
 */
import { now } from "../../clock.js";
import { count, setText } from "../../format.js";

/** Seconds without any heartbeat after which the card says so. */
const LATE_S = 15;

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const age = /** @type {HTMLElement} */ (root.querySelector('[data-f="age"]'));
  if (typeof data.last === "number") {
    if (age.dataset.since !== String(data.last)) age.dataset.since = String(data.last);
  } else {
    delete age.dataset.since;
    setText(age, "never");
  }
  let latest = -Infinity;
  for (const key of Object.keys(data.points || {})) latest = Math.max(latest, Number(key));
  const point = Number.isFinite(latest) ? data.points[String(latest)] : null;
  const live = `${count(data.live)} live runner${data.live === 1 ? "" : "s"}`;
  const latency = Array.isArray(point) ? ` · latency p50 ${point[0]} ms, max ${point[1]} ms` : "";
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="facts"]')), live + latency);
  tick(root);
}

/** Mark the card late (in words, too) when the last beat is older than LATE_S. @param {HTMLElement} root */
export function tick(root) {
  const age = /** @type {HTMLElement | null} */ (root.querySelector('[data-f="age"]'));
  const since = Number(age?.dataset.since);
  const late = String(!Number.isFinite(since) || now() - since > LATE_S);
  if (root.dataset.late !== late) root.dataset.late = late;
}
