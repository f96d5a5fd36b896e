// @ts-check
/** The Compact Jobs Dashboard (/admin/jobs). */
import { register, start } from "../app.js";
import * as counters from "../widgets/counters.js";
import * as failures from "../widgets/failures.js";
import * as health from "../widgets/health.js";
import * as liveJobs from "../widgets/live-jobs.js";
import * as published from "../widgets/published.js";
import * as runners from "../widgets/runners.js";
import * as scheduled from "../widgets/scheduled.js";

register("counters", counters.render);
register("published", published.render);
register("live_jobs", liveJobs.render);
register("failures", failures.render);
register("scheduled", scheduled.render);
register("runners", runners.render);
register("health", health.render);
start();
