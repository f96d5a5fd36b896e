// @ts-check
/**
 * The wall display (/wall): a read-only screen for an ops room. The five counters, service status, hot
 * issues, channel backlogs, the fleet by status, Jobs Published and the last heartbeat's age.
 *
 * With several sources it shows them all, or one: `/wall?source=payments` shows that source's counters,
 * service, hot issues, backlogs, fleet and published jobs (their `?source=` views; the pulse stays every
 * runner's).
 *
 * It is meant to run for days: everything it draws is bounded by the server's views (rows keyed and capped),
 * nodes are reused, and the only timer is the one-second tick below, made once.
 */
import { register, start } from "../app.js";
import { now } from "../clock.js";
import { setText } from "../format.js";
import { scopePage, source } from "../source-scope.js";
import * as counters from "../widgets/counters.js";
import * as published from "../widgets/published.js";
import * as backlogs from "../widgets/wall/backlogs.js";
import * as fleet from "../widgets/wall/fleet.js";
import * as issues from "../widgets/wall/issues.js";
import * as pulse from "../widgets/wall/pulse.js";
import * as service from "../widgets/wall/service.js";

const clock = document.getElementById("wall-clock");
const backlogRoot = /** @type {HTMLElement | null} */ (document.querySelector('[data-widget="backlogs"]'));
const issuesRoot = /** @type {HTMLElement | null} */ (document.querySelector('[data-widget="hot_issues"]'));
const pulseRoot = /** @type {HTMLElement | null} */ (document.querySelector('[data-widget="pulse"]'));
const two = (/** @type {number} */ n) => String(n).padStart(2, "0");

// One source of several (`?source=`): every card but the pulse shows that source's view of itself.
scopePage();
if (source) setText(/** @type {HTMLElement} */ (document.getElementById("wall-title")), `Jobs · live · ${source}`);

register("counters", counters.render);
register("published", published.render);
register("service", service.render);
register("hot_issues", issues.render);
register("backlogs", backlogs.render);
register("fleet_summary", fleet.render);
register("pulse", pulse.render);
start();

function tick() {
  if (clock) {
    const d = new Date(now() * 1000);
    setText(clock, `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`);
  }
  if (backlogRoot) backlogs.tick(backlogRoot);
  if (pulseRoot) pulse.tick(pulseRoot);
}
tick();
setInterval(tick, 1000);
// A new screen size fits another number of rows (one listener, made once).
addEventListener("resize", () => {
  if (issuesRoot) issues.fit(issuesRoot);
  if (backlogRoot) backlogs.fit(backlogRoot);
});
