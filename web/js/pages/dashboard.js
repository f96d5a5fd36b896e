// @ts-check
/** The Compact Jobs Dashboard (/admin/jobs), with the Operations panel (its forms load on first use). */
import { perform, wireFormButtons } from "../action.js";
import { register, start } from "../app.js";
import * as counters from "../widgets/counters.js";
import * as failures from "../widgets/failures.js";
import * as health from "../widgets/health.js";
import * as liveJobs from "../widgets/live-jobs.js";
import * as published from "../widgets/published.js";
import * as runners from "../widgets/runners.js";
import * as scheduled from "../widgets/scheduled.js";
import { scopePage, setupPicker } from "../source-scope.js";

register("counters", counters.render);
register("published", published.render);
register("live_jobs", liveJobs.render);
register("failures", failures.render);
register("scheduled", scheduled.render);
register("runners", runners.render);
register("health", health.render);

// A job row opens the job's details; a runner row its detail drawer (the mockup's row clicks).
/** @param {Event} event */
function open(event) {
  const target = /** @type {HTMLElement} */ (event.target);
  const row = /** @type {HTMLElement | null} */ (target.closest("tr[data-job], tr[data-runner]"));
  const button = /** @type {HTMLButtonElement | null} */ (target.closest("button[data-op]"));
  if (row && button && event.type === "click" && !button.disabled && row.dataset.job) {
    const job = row.dataset.job;
    if (button.dataset.op === "retry") perform("job.retry", { job }, { title: `Retry ${job}`, verb: "Retry", button });
    else import("../job-modal.js").then((modal) => modal.openJobDetails(job));
    return;
  }
  if (!row || target.closest("a, button")) return;
  if (event instanceof KeyboardEvent && event.key !== "Enter") return;
  if (row.dataset.runner) {
    const id = row.dataset.runner;
    import("../runner-drawer.js").then((drawer) => drawer.openRunner(id, row));
  }
  else if (row.dataset.job) import("../job-modal.js").then((modal) => modal.openJobDetails(row.dataset.job || ""));
}
document.addEventListener("click", open);
// The mini chart opens the full chart per channel (the mockup's MetricsChart modal, category jobs_channels).
const spark = /** @type {HTMLElement} */ (document.querySelector('[data-widget="published"]'));
spark.addEventListener("click", (event) => {
  const target = /** @type {HTMLElement} */ (event.target);
  if (!target.closest("[data-open-chart], svg")) return;
  const opener = /** @type {HTMLElement} */ (spark.querySelector("[data-open-chart]"));
  import("../chart-modal.js").then((modal) => modal.openChart("published", "minutes", opener));
});
document.addEventListener("keydown", open);
// Every scheduled job, by when it is due, with Run now and Cancel (the mockup's "Open Scheduler").
const schedulerButton = /** @type {HTMLElement} */ (document.getElementById("open-scheduler"));
schedulerButton.addEventListener("click", () => {
  import("../scheduler.js").then((scheduler) => scheduler.openScheduler(schedulerButton));
});
wireFormButtons(/** @type {HTMLElement} */ (document.querySelector(".ops")), "ops-note");
// Several sources: the counters and the published chart of the chosen one (the tables list every source's).
scopePage();
setupPicker();
start();
