// @ts-check
/**
 * Operator commands over the live socket (docs/protocol.md section 4): `command()` sends one and resolves
 * with its `ack` (always: one made here when no answer can come), `can()` says from the welcome frame
 * whether this user may do an action here, and why not. A command whose socket drops before its ack goes
 * again with the SAME id once the socket is back: the server runs an id at most once and answers a repeat
 * with the first ack (4.2), so a retry never runs a command twice.
 */
import { socket } from "./app.js";

/** @typedef {import("./protocol.js").Ack} Ack */
/** @typedef {import("./protocol.js").Cmd} Cmd */
/** @typedef {{ok: boolean, reason: string, two_phase: boolean}} Verdict */

/** Give up on an ack after this long: the server answers within its own command timeout; this only ends
 * a wait the server cannot end (a socket that never comes back). */
const ACK_TIMEOUT_MS = 120_000;
/** Retry `busy` (the same id still running on the server, after a resend) this often. */
const BUSY_RETRY_MS = 1_000;

/** @type {Map<string, {frame: Cmd, resolve: (ack: Ack) => void, sent: boolean, timer: number}>} */
const pending = new Map();

/** A command id: "c_" and 16 random characters (the server takes 1-100). */
function newId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return `c_${btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")}`;
}

/**
 * Send operator command `action` with `args`; resolves with its `ack`.
 * @param {string} action a name of section 4.4, e.g. "channel.purge"
 * @param {Record<string, any>} [args]
 * @param {{phase?: "preview" | "execute", confirm?: string}} [options]
 * @returns {Promise<Ack>}
 */
export function command(action, args = {}, { phase, confirm } = {}) {
  const id = newId();
  /** @type {Cmd} */
  const frame = { type: "cmd", id, action, args };
  if (phase) frame.phase = phase;
  if (confirm) frame.confirm = confirm;
  return new Promise((resolve) => {
    const timer = window.setTimeout(() => {
      settle(local(id, action, "no_ack", "No answer from jobpulse in time: the command may or may not have run. Check the activity log."));
    }, ACK_TIMEOUT_MS);
    const entry = { frame, resolve, sent: false, timer };
    pending.set(id, entry);
    if (socket.status === "closed" || socket.status === "refused") {
      settle(local(id, action, "offline", "Not connected to jobpulse: reload the page and try again."));
      return;
    }
    if (socket.ready) entry.sent = socket.send(frame);
    // Otherwise it goes out when the socket is welcomed (below).
  });
}

/** An ack made here, for a command that cannot get one. @param {string} id @param {string} action
 * @param {string} code @param {string} message @returns {Ack} */
function local(id, action, code, message) {
  return { type: "ack", id, ok: false, action, error: { code, message } };
}

/** @param {Ack} ack */
function settle(ack) {
  const entry = pending.get(ack.id);
  if (!entry) return; // an ack we no longer wait for (a repeat after a resend, or after our timeout)
  pending.delete(ack.id);
  window.clearTimeout(entry.timer);
  entry.resolve(ack);
}

socket.addEventListener("ack", (event) => {
  const ack = /** @type {Ack} */ (/** @type {CustomEvent} */ (event).detail);
  const entry = pending.get(ack.id);
  if (entry && !ack.ok && ack.error?.code === "busy") {
    // Our resend arrived while the first send still ran: ask again shortly, same id, for the first's ack.
    window.setTimeout(() => {
      if (pending.get(ack.id) === entry && socket.ready) socket.send(entry.frame);
    }, BUSY_RETRY_MS);
    return;
  }
  settle(ack);
});

// A cmd the server could not read as one (no usable id) gets an error frame naming our id as `ref`.
socket.addEventListener("server-error", (event) => {
  const error = /** @type {CustomEvent} */ (event).detail;
  const entry = error.ref ? pending.get(error.ref) : undefined;
  if (entry) settle(local(entry.frame.id, entry.frame.action, error.code, error.message));
});

// (Re)connected and welcomed: send what waits, resending unanswered commands with their own ids.
socket.addEventListener("welcome", () => {
  for (const entry of pending.values()) entry.sent = socket.send(entry.frame);
  for (const fn of rightsListeners) fn();
});

socket.addEventListener("status", (event) => {
  const { status } = /** @type {CustomEvent} */ (event).detail;
  if (status !== "closed" && status !== "refused") return;
  for (const entry of [...pending.values()]) {
    settle(local(entry.frame.id, entry.frame.action, "offline", "The connection to jobpulse closed before the command was answered."));
  }
});

// -- rights --------------------------------------------------------------------------------------------

/** @type {Set<() => void>} */
const rightsListeners = new Set();

/** Call `fn` whenever the user or the action rights may have changed (each welcome). @param {() => void} fn */
export function onRights(fn) {
  rightsListeners.add(fn);
}

/** The signed-in user as the server named it, or null. */
export function currentUser() {
  return socket.user;
}

/**
 * May this user do `action` here (on `target`, a runner, channel or job id)? `reason` says why not, for the
 * disabled button. With several sources, an action some of them cannot do is refused on their targets (ids
 * are `<source>:<id>`; the welcome's `unavailable` names those sources, docs/protocol.md 4.1).
 * @param {string} action
 * @param {string} [target]
 * @returns {Verdict}
 */
export function can(action, target = "") {
  if (!socket.welcomed) return { ok: false, reason: "connecting to jobpulse…", two_phase: false };
  const actions = socket.actions;
  if (!actions) return { ok: false, reason: "this jobpulse server takes no operator commands", two_phase: false };
  const right = actions[action];
  if (!right) return { ok: false, reason: `this server does not know the action ${action}`, two_phase: false };
  if (!right.ok) return { ok: false, reason: right.reason || "not allowed", two_phase: Boolean(right.two_phase) };
  const label = target.includes(":") ? target.slice(0, target.indexOf(":")) : "";
  const why = label && right.unavailable ? right.unavailable[label] : undefined;
  if (why) return { ok: false, reason: why, two_phase: Boolean(right.two_phase) };
  return { ok: true, reason: "", two_phase: Boolean(right.two_phase) };
}

/** Runner actions whose bulk form (more than one runner) stays one-phase and open to operators (4.4). */
const BULK_FREE = new Set(["runner.ping"]);

/**
 * `can()` for a runner action on `count` runners ("*" = every runner). Bulk runner actions need the admin
 * role and two phases, except ping (section 4.4); the welcome's rights say what a single runner may get.
 * @param {string} action @param {number | "*"} count
 * @returns {Verdict}
 */
export function canRunners(action, count) {
  const verdict = can(action);
  const bulk = count === "*" || count > 1;
  if (!verdict.ok || !bulk || BULK_FREE.has(action)) return verdict;
  if (socket.user?.role !== "admin") {
    return { ok: false, reason: "acting on more than one runner needs the admin role", two_phase: true };
  }
  return { ok: true, reason: "", two_phase: true };
}

/**
 * `can()` for clear stuck: an operator may clear one channel, every channel at once needs admin (4.4).
 * @param {string | null} channel
 * @returns {Verdict}
 */
export function canClearStuck(channel) {
  const verdict = can("channel.clear_stuck", channel ?? "");
  if (verdict.ok && channel === null && socket.user?.role !== "admin") {
    return { ok: false, reason: "clearing every channel at once needs the admin role", two_phase: true };
  }
  return verdict;
}
