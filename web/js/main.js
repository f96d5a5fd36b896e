// @ts-check
/**
 * Page entry: finds the widgets on the page, opens the live socket, and renders each widget's data
 * on the next animation frame (several frames in one tick render once).
 */
import { refreshTimes, startTicker } from "./clock.js";
import { LiveSocket } from "./socket.js";
import * as counters from "./widgets/counters.js";
import * as failures from "./widgets/failures.js";
import * as health from "./widgets/health.js";
import * as liveJobs from "./widgets/live-jobs.js";
import * as published from "./widgets/published.js";
import * as runners from "./widgets/runners.js";
import * as scheduled from "./widgets/scheduled.js";

/** @type {Record<string, {render: (root: HTMLElement, data: any) => void}>} */
const RENDERERS = { counters, published, live_jobs: liveJobs, failures, scheduled, runners, health };

/** @type {Map<string, HTMLElement[]>} */
const roots = new Map();
for (const node of document.querySelectorAll("[data-widget]")) {
  const root = /** @type {HTMLElement} */ (node);
  const name = root.dataset.widget || "";
  if (!RENDERERS[name]) continue;
  roots.set(name, [...(roots.get(name) || []), root]);
}

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const url = `${scheme}//${location.host}${document.body.dataset.wsPath || "/ws"}`;
const socket = new LiveSocket(url, [...roots.keys()]);

/** @type {Map<string, any>} */
const pending = new Map();
let scheduledFrame = 0;
socket.addEventListener("widget", (event) => {
  const { name, data } = /** @type {CustomEvent} */ (event).detail;
  pending.set(name, data);
  if (name === "health") sourceBanner(data);
  if (!scheduledFrame) scheduledFrame = requestAnimationFrame(renderPending);
});

function renderPending() {
  scheduledFrame = 0;
  for (const [name, data] of pending) {
    for (const root of roots.get(name) || []) RENDERERS[name].render(root, data);
  }
  pending.clear();
  refreshTimes();
}

// Connection indicator and banner.
const conn = /** @type {HTMLElement} */ (document.getElementById("conn"));
const banner = /** @type {HTMLElement} */ (document.getElementById("banner"));
let sourceDown = "";
const LABELS = {
  connecting: "connecting",
  live: "live",
  stale: "stale",
  reconnecting: "reconnecting",
  paused: "paused",
  closed: "disconnected",
};
socket.addEventListener("status", (event) => {
  const { status, detail } = /** @type {CustomEvent} */ (event).detail;
  showStatus(status, detail);
});

/** @param {string} status @param {string} [detail] */
function showStatus(status, detail = "") {
  const state = status === "live" && sourceDown ? "source-down" : status;
  conn.dataset.state = state;
  /** @type {HTMLElement} */ (conn.querySelector(".conn-label")).textContent =
    state === "source-down" ? "source down" : LABELS[/** @type {keyof typeof LABELS} */ (status)] || status;
  conn.title = detail || state;
  let text = "";
  let warn = false;
  if (status === "reconnecting") text = "Connection to jobpulse lost: reconnecting…";
  else if (status === "closed") text = `Disconnected: ${detail}. Reload the page to try again.`;
  else if (status === "stale") {
    text = "No updates from jobpulse for a while: the numbers below may be out of date.";
    warn = true;
  } else if (sourceDown) text = `The job system's Redis is unreachable: ${sourceDown}. Showing the last known state.`;
  banner.hidden = !text;
  banner.textContent = text;
  banner.classList.toggle("warn", warn);
}

/** @param {any} data */
function sourceBanner(data) {
  const down = data.connected ? "" : data.error || "not connected";
  if (down !== sourceDown) {
    sourceDown = down;
    showStatus(socket.status);
  }
}

// Buttons.
document.getElementById("btn-resync")?.addEventListener("click", () => socket.resync());
const liveButton = document.getElementById("btn-live");
liveButton?.addEventListener("click", () => {
  const live = liveButton.getAttribute("aria-pressed") !== "true";
  liveButton.setAttribute("aria-pressed", String(live));
  liveButton.textContent = live ? "Live" : "Paused";
  socket.setPaused(!live);
});

startTicker();
socket.connect();
