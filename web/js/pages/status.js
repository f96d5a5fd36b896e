// @ts-check
/** Platform Status (/admin/system-status): jobpulse's KPIs, the service matrix and the alert timeline. */
import { register, start } from "../app.js";
import * as alertLog from "../widgets/platform/alert-log.js";
import * as platform from "../widgets/platform/platform.js";
import * as health from "../widgets/health.js";

register("platform", platform.render);
register("alert_log", alertLog.render);
register("health", health.render);
start();
