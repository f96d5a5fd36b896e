// @ts-check
/** Platform Status (/admin/system-status): jobpulse's KPIs, the service matrix and the alert timeline. */
import { register, start } from "../app.js";
import * as alertLog from "../widgets/platform/alert-log.js";
import * as platform from "../widgets/platform/platform.js";

register("platform", platform.render);
register("alert_log", alertLog.render);
start(); // app.js draws the footer's intake line (health) on every page
