// @ts-check
/**
 * Notifications (/admin/jobs/notifications): the alert targets, the delivery log, dead letters, silences and
 * the alerts firing, live; the operator's alert actions (acknowledge, silence, unsilence, a test
 * notification) go over the socket like every other command and are audited.
 */
import { register, start } from "../app.js";
import { perform } from "../action.js";
import { can } from "../commands.js";
import { gate } from "../gate.js";
import * as health from "../widgets/health.js";
import * as notify from "../widgets/notify.js";

register("health", health.render);
register("notifications", notify.render);
// The page's own buttons (a test notification, the silence form); the rows' are gated as they are made.
for (const node of document.querySelectorAll("button[data-action]")) {
  const button = /** @type {HTMLButtonElement} */ (node);
  gate(button, () => can(/** @type {string} */ (button.dataset.action)));
}

document.addEventListener("click", (event) => {
  const button = /** @type {HTMLButtonElement | null} */ (
    /** @type {HTMLElement} */ (event.target).closest("button[data-action]")
  );
  if (!button || button.type === "submit") return;
  const action = /** @type {string} */ (button.dataset.action);
  if (action === "notify.test") void perform(action, {}, { button, title: "Test notification" });
  else if (action === "alert.ack") void perform(action, { alert: button.dataset.alert }, { button });
  else if (action === "alert.unsilence") void perform(action, { alert: button.dataset.alert }, { button });
});

const silence = /** @type {HTMLFormElement} */ (document.getElementById("nt-silence"));
silence.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(silence);
  const reason = String(form.get("reason") || "").trim();
  const args = { alert: String(form.get("alert")), minutes: Number(form.get("minutes")), ...(reason ? { reason } : {}) };
  const button = /** @type {HTMLButtonElement} */ (silence.querySelector("button[type=submit]"));
  void perform("alert.silence", args, { button });
});

start();
