// @ts-check
/** The wall's service status (`service` widget): a big pill in words, the rule that set it, a line of facts. */
import { count, setText } from "../../format.js";
import { fillPill } from "../platform/severity.js";

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const pill = /** @type {HTMLElement} */ (root.querySelector('[data-f="pill"]'));
  fillPill(pill, data.status);
  if (root.dataset.status !== pill.dataset.status) root.dataset.status = pill.dataset.status;
  setText(
    /** @type {HTMLElement} */ (root.querySelector('[data-f="rule"]')),
    data.status === "ok" ? "All rules quiet: no alert is open." : data.rule || "",
  );
  const alerts = Number(data.alerts || 0);
  const broker = data.broker || {};
  const runners = data.runners || {};
  const parts = [
    `${count(alerts)} open alert${alerts === 1 ? "" : "s"}`,
    broker.connected
      ? `Redis connected${typeof broker.rtt_ms === "number" ? ` (${broker.rtt_ms} ms)` : ""}`
      : "Redis NOT connected",
    `${count(runners.active)} of ${count(runners.total)} runners live`,
    `${count(data.channels)} channels`,
  ];
  setText(/** @type {HTMLElement} */ (root.querySelector('[data-f="facts"]')), parts.join(" · "));
}
