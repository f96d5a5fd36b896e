// @ts-check
/**
 * Notifications (`notifications`, docs/protocol.md 3.11): the alert targets and their state, the outbox's
 * counts, the alerts firing (with Acknowledge), the silences (with Unsilence), the delivery log and the dead
 * letters. Rows are keyed, so a delivery arriving adds one row and touches nothing else.
 */
import { can } from "../commands.js";
import { clockTime, count, el, field, setText } from "../format.js";
import { gate } from "../gate.js";
import { newRow, syncRows } from "./rows.js";

const OUTCOME = /** @type {Record<string, string>} */ ({
  sent: "sent", retry: "failed, will retry", dead: "gave up", dropped: "dropped: outbox full",
});
const STATE = /** @type {Record<string, string>} */ ({ ok: "OK", failing: "Failing", idle: "Nothing sent yet" });

/** @param {HTMLElement} root @param {any} data */
export function render(root, data) {
  const on = Boolean(data.configured);
  field(root, "off").hidden = on;
  field(root, "on").hidden = !on;
  if (!on) return;
  const targets = data.targets;
  const failing = targets.order.filter((/** @type {string} */ k) => targets.rows[k].status === "failing").length;
  setText(field(root, "targets-n"), count(targets.order.length));
  setText(field(root, "targets-detail"), failing ? `${count(failing)} failing` : "all answering");
  setText(field(root, "waiting"), count(data.backlog.waiting));
  setText(field(root, "retrying"), count(data.backlog.retrying));
  setText(field(root, "dead-n"), count(data.backlog.dead));
  const firing = data.firing;
  const unacked = firing.order.filter((/** @type {string} */ k) => !firing.rows[k].acked_by).length;
  setText(field(root, "firing-n"), count(firing.order.length));
  setText(field(root, "firing-detail"), firing.order.length ? `${count(unacked)} not acknowledged` : "all clear");
  syncRows(field(root, "targets"), targets, targetRow, fillTarget);
  syncRows(field(root, "firing"), firing, firingRow, fillFiring);
  syncRows(field(root, "silences"), data.silences, silenceRow, fillSilence);
  syncRows(field(root, "log"), data.log, logRow, fillLog);
  syncRows(field(root, "dead"), data.dead, deadRow, fillDead);
  field(root, "firing-empty").hidden = firing.order.length > 0;
  field(root, "silences-empty").hidden = data.silences.order.length > 0;
  field(root, "log-empty").hidden = data.log.order.length > 0;
  field(root, "dead-empty").hidden = data.dead.order.length > 0;
}

/** A row's button for `action`, enabled while this user may do it (gate.js). @param {string} action @param {string} label */
function actionButton(action, label) {
  const button = /** @type {HTMLButtonElement} */ (el("button", "btn small", label));
  button.type = "button";
  button.dataset.action = action;
  gate(button, () => can(action));
  return button;
}

/** @param {number | undefined} ts */
function when(ts) {
  return typeof ts === "number" ? clockTime(ts) : "–";
}

/** @param {...(string | HTMLElement)} parts */
function td(...parts) {
  const cell = el("td");
  cell.append(...parts);
  return cell;
}

function targetRow() {
  return newRow(td(el("code")), td(), td(el("span", "badge")), el("td", "num"), el("td", "num"), td());
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fillTarget(tr, row) {
  const [name, where, state, waiting, ok, error] = tr.cells;
  setText(/** @type {HTMLElement} */ (name.firstElementChild), `${tr.dataset.key} (${row.kind})`);
  setText(where, row.shown);
  const badge = /** @type {HTMLElement} */ (state.firstElementChild);
  setText(badge, STATE[row.status] || row.status);
  badge.className = `badge ${row.status === "failing" ? "failed" : row.status === "ok" ? "completed" : "queued"}`;
  setText(waiting, count(row.backlog || 0));
  setText(ok, when(row.last_ok));
  setText(error, row.last_error ? `${when(row.last_error_at)}: ${row.last_error}` : "–");
}

function firingRow() {
  return newRow(td(el("code")), el("td", "num"), el("td", "num"), td(), td(actionButton("alert.ack", "Acknowledge")));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fillFiring(tr, row) {
  const [alert, fired, sent, acked, actions] = tr.cells;
  setText(/** @type {HTMLElement} */ (alert.firstElementChild), /** @type {string} */ (tr.dataset.key));
  setText(fired, when(row.fired_at));
  setText(sent, count(row.sent));
  setText(acked, row.acked_by ? `${row.acked_by} at ${when(row.acked_at)}` : "no");
  const button = /** @type {HTMLButtonElement} */ (actions.firstElementChild);
  button.hidden = Boolean(row.acked_by);
  button.dataset.alert = tr.dataset.key;
}

function silenceRow() {
  return newRow(td(el("code")), el("td", "num"), td(), td(), td(actionButton("alert.unsilence", "Unsilence")));
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fillSilence(tr, row) {
  const [what, until, by, reason, actions] = tr.cells;
  setText(/** @type {HTMLElement} */ (what.firstElementChild), /** @type {string} */ (tr.dataset.key));
  setText(until, when(row.until));
  setText(by, row.by);
  setText(reason, row.reason || "–");
  /** @type {HTMLElement} */ (actions.firstElementChild).dataset.alert = tr.dataset.key;
}

function logRow() {
  return newRow(el("td", "num"), td(), td(), td(el("code")), td(el("span", "badge")), el("td", "num"), td());
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fillLog(tr, row) {
  const [time, alert, kind, target, outcome, attempt, answer] = tr.cells;
  setText(time, when(row.at));
  setText(alert, row.title ? `${row.title} (${row.alert})` : row.alert);
  setText(kind, row.kind);
  setText(/** @type {HTMLElement} */ (target.firstElementChild), row.target);
  const badge = /** @type {HTMLElement} */ (outcome.firstElementChild);
  setText(badge, OUTCOME[row.outcome] || row.outcome);
  badge.className = `badge ${row.outcome === "sent" ? "completed" : row.outcome === "retry" ? "retried" : "failed"}`;
  setText(attempt, row.attempt ? count(row.attempt) : "–");
  const status = row.status ? `HTTP ${row.status}` : "";
  const ms = typeof row.ms === "number" ? `${row.ms} ms` : "";
  setText(answer, row.error || [status, ms].filter(Boolean).join(", ") || "–");
}

function deadRow() {
  return newRow(el("td", "num"), td(), td(), td(el("code")), el("td", "num"), td());
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function fillDead(tr, row) {
  const [time, alert, kind, target, attempts, error] = tr.cells;
  setText(time, when(row.at));
  setText(alert, row.title ? `${row.title} (${row.alert})` : row.alert);
  setText(kind, row.kind);
  setText(/** @type {HTMLElement} */ (target.firstElementChild), row.target);
  setText(attempts, count(row.attempt));
  setText(error, row.error || "–");
}
