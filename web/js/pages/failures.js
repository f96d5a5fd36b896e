// @ts-check
/**
 * Failures (/admin/jobs/failures): failed jobs grouped by cause, live. A group opens its newest failed jobs
 * (each opens the job's details with its traceback); Retry sends every failed job of the group back (two
 * phases: the preview counts them, the operator confirms; audited); Mute stops a group raising hot issues.
 */
import { perform } from "../action.js";
import { register, start } from "../app.js";
import * as groups from "../widgets/failure-groups.js";
import * as health from "../widgets/health.js";

register("health", health.render);
// A link to one group (a hot issue's "Open the group": #g-<fingerprint>) opens its samples once it is drawn,
// on arrival or when the hash changes on the page.
let wanted = "";
const want = () => {
  wanted = location.hash.startsWith("#g-") ? location.hash.slice(1) : "";
  openWanted();
};
const openWanted = () => {
  const li = wanted ? document.getElementById(wanted) : null;
  if (!li) return;
  wanted = "";
  const samples = /** @type {HTMLButtonElement | null} */ (li.querySelector("button[data-samples]"));
  if (samples && samples.getAttribute("aria-expanded") !== "true") samples.click();
  li.scrollIntoView({ block: "start" });
};
register("failure_groups", (root, data) => {
  groups.render(root, data);
  openWanted();
});
window.addEventListener("hashchange", want);
want();

const search = /** @type {HTMLInputElement} */ (document.getElementById("fg-q"));
const showMuted = /** @type {HTMLInputElement} */ (document.getElementById("fg-muted"));
// What the browser restored into the filters (back, reload) is what the list shows.
groups.view.q = search.value;
groups.view.muted = showMuted.checked;
search.addEventListener("input", () => {
  groups.view.q = search.value;
  groups.redraw();
});
showMuted.addEventListener("change", () => {
  groups.view.muted = showMuted.checked;
  groups.redraw();
});

document.addEventListener("click", (event) => {
  const target = /** @type {HTMLElement} */ (event.target);
  const samples = /** @type {HTMLButtonElement | null} */ (target.closest("button[data-samples]"));
  if (samples) {
    const box = /** @type {HTMLElement} */ (samples.closest("li")?.querySelector(".fg-samples"));
    box.hidden = !box.hidden;
    samples.setAttribute("aria-expanded", String(!box.hidden));
    return;
  }
  const job = /** @type {HTMLElement | null} */ (target.closest("button[data-job]"));
  if (job) {
    import("../job-modal.js").then((modal) => modal.openJobDetails(job.dataset.job || ""));
    return;
  }
  const button = /** @type {HTMLButtonElement | null} */ (target.closest("button[data-action]"));
  if (!button || button.disabled) return;
  const group = /** @type {string} */ (button.dataset.group);
  const action = /** @type {string} */ (button.dataset.action);
  if (action === "group.retry") {
    void perform(action, { group }, { button, title: "Retry the group's failed jobs", verb: "Retry" });
  } else if (action === "group.mute" || action === "group.unmute") {
    const args = action === "group.mute" ? { group, minutes: 1440 } : { group };
    void perform(action, args, { button }).then((ack) => {
      if (ack?.ok) groups.focusWhenShown(group, action === "group.mute" ? "group.unmute" : "group.mute");
    });
  }
});

start();
