// @ts-check
/**
 * Snapshot cards (`snapshot`): jobs scheduled for today, the longest-running job (its age ticks, its id
 * links to the job table) and the last hour's retries, completions and failures.
 */
import { count, setText } from "../../format.js";
import { field, setAttr } from "./list.js";

/**
 * @param {HTMLElement} root
 * @param {{scheduled_today: number, retries_hour: number, completed_hour: number, failed_hour: number,
 *   longest?: {job: string, fn?: string, channel?: string, since?: number, runner?: string}}} data
 */
export function render(root, data) {
  setText(field(root, "scheduled"), count(data.scheduled_today));
  setText(field(root, "retries"), count(data.retries_hour));
  setText(field(root, "hour"), `${count(data.completed_hour)} completed · ${count(data.failed_hour)} failed in the last hour`);

  const longest = data.longest;
  const age = field(root, "longest-age");
  const link = /** @type {HTMLAnchorElement} */ (field(root, "longest-link"));
  const job = field(root, "longest-job");
  job.hidden = !longest;
  if (longest && typeof longest.since === "number") age.dataset.since = String(longest.since);
  else {
    delete age.dataset.since;
    setText(age, longest ? "–" : "none running");
  }
  if (longest) {
    setText(link, longest.job);
    setAttr(link, "href", `/admin/jobs/table?q=${encodeURIComponent(`id:${longest.job}`)}`);
    setAttr(link, "title", `Open job ${longest.job} in the job table`);
    setText(field(root, "longest-fn"), longest.fn || "");
    setText(field(root, "longest-where"), [longest.channel, longest.runner].filter(Boolean).join(" · "));
  }
}
