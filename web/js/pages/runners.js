// @ts-check
/**
 * The Runners Console (/admin/jobs/runners): the runner grid with its filters, paging, multi-select and
 * context menu, channel capacity and runner events, all pushed by the server and patched in place.
 *
 * The filters and the page live in the URL (?region=&status=&q=&page=) and name the grid's view,
 * `fleet?page=&q=&region=&status=` (views.js): a filter change unmounts the old view and mounts the new one.
 *
 * Operator actions: a card's Drain / Undrain, Restart and Logs, the context menu's, the bulk bar's
 * (selection.js), the channel table's pause / resume, purge and clear stuck, and the header's Broadcast and
 * Cleanup, each gated by what the server says this user may do (gate.js) and answered by a toast.
 */
import { openForm, perform } from "../action.js";
import { mount, register, socket, start } from "../app.js";
import { can } from "../commands.js";
import { gate } from "../gate.js";
import { runnerAction } from "../runner-actions.js";
import { source } from "../source-scope.js";
import { viewKey } from "../views.js";
import { cardRow, isDraining } from "../widgets/fleet/card.js";
import * as channels from "../widgets/fleet/channels.js";
import * as fleet from "../widgets/fleet/fleet.js";
import * as summary from "../widgets/fleet/fleet-summary.js";
import { drawFilters, STATUSES } from "../widgets/fleet/filters.js";
import * as events from "../widgets/fleet/runner-events.js";
import { refreshSelection, setupSelection } from "../widgets/fleet/selection.js";
import * as health from "../widgets/health.js";

/** @typedef {import("../widgets/fleet/filters.js").Filters} Filters */

const SEARCH_DEBOUNCE_MS = 200;
const fleetRoot = /** @type {HTMLElement} */ (document.getElementById("fleet"));

/** The filters the URL asks for (unknown or bad values are dropped). @returns {Filters} */
function fromUrl() {
  const params = new URLSearchParams(location.search);
  const status = params.get("status") || "";
  const page = Number(params.get("page") || "1");
  return {
    q: (params.get("q") || "").trim().slice(0, 100),
    region: (params.get("region") || "").slice(0, 100),
    status: STATUSES.includes(status) ? status : "",
    source, // the URL's, if it names a source this jobpulse watches (source-scope.js)
    page: Number.isInteger(page) && page >= 1 && page <= 100_000 ? page : 1,
  };
}

const filters = fromUrl();
let currentKey = "";

/** The grid's view key. The page is always in it: the server opens parametrized views only (`fleet?…`). */
function fleetKey() {
  const { q, region, status, page, source } = filters;
  return viewKey("fleet", { page, q, region, status, source });
}

function writeUrl() {
  const params = new URLSearchParams();
  if (filters.region) params.set("region", filters.region);
  if (filters.status) params.set("status", filters.status);
  if (filters.source) params.set("source", filters.source);
  if (filters.q) params.set("q", filters.q);
  if (filters.page > 1) params.set("page", String(filters.page));
  const query = params.toString();
  const url = location.pathname + (query ? `?${query}` : "") + location.hash;
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, "", url);
}

/** Show the grid of the current filters: swap the view if they changed. */
function showFleet() {
  const key = fleetKey();
  writeUrl();
  drawFilters(filters, fleet.lastData); // the last counts until the new view's arrive
  if (key === currentKey) return;
  currentKey = key;
  fleetRoot.setAttribute("aria-busy", "true");
  setError("");
  mount(fleetRoot, key);
}

/** Change some filters; any change but the page's goes back to page 1. @param {Partial<Filters>} change */
function setFilters(change) {
  Object.assign(filters, change);
  if (!("page" in change)) filters.page = 1;
  showFleet();
}

/** @param {string} text */
function setError(text) {
  const box = /** @type {HTMLElement} */ (fleetRoot.querySelector('[data-f="error"]'));
  if (box.textContent !== text) box.textContent = text;
  box.hidden = !text;
}

register("fleet", (root, data, key) => {
  if (key !== currentKey) return;
  root.removeAttribute("aria-busy");
  fleet.render(root, data, key);
  drawFilters(filters, data);
  refreshSelection();
  menuModule?.refreshMenu();
});
register("fleet_summary", summary.render);
register("channels", channels.render);
register("runner_events", events.render);
register("health", health.render); // the footer's line (base.html)

socket.addEventListener("server-error", (event) => {
  const { code, message } = /** @type {CustomEvent} */ (event).detail;
  // Only while the grid waits for its view: the server refused it (a bad filter, or too many views open).
  if (fleetRoot.getAttribute("aria-busy") === "true" && (code === "unknown_widget" || code === "rate")) {
    setError(`The grid could not be shown: ${message}`);
  }
});

// -- controls --------------------------------------------------------------------------------------

document.getElementById("f-region")?.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest("[data-region]");
  if (button) setFilters({ region: /** @type {HTMLElement} */ (button).dataset.region || "" });
});

const statusSelect = /** @type {HTMLSelectElement} */ (document.getElementById("f-status"));
statusSelect.addEventListener("change", () => setFilters({ status: statusSelect.value }));
const sourceSelect = /** @type {HTMLSelectElement | null} */ (document.getElementById("f-source"));
sourceSelect?.addEventListener("change", () => setFilters({ source: sourceSelect.value }));

const search = /** @type {HTMLInputElement} */ (document.getElementById("f-q"));
let searchTimer = 0;
const applySearch = () => {
  window.clearTimeout(searchTimer);
  const q = search.value.trim().slice(0, 100);
  if (q !== filters.q) setFilters({ q });
};
search.addEventListener("input", () => {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(applySearch, SEARCH_DEBOUNCE_MS);
});
search.addEventListener("keydown", (event) => {
  if (event.key === "Enter") applySearch();
});
search.addEventListener("change", applySearch); // leaving the box applies what was typed at once

document.getElementById("f-clear")?.addEventListener("click", () => {
  search.value = "";
  setFilters({ q: "", region: "", status: "", source: "" });
  search.focus();
});

fleet.setupProblems(fleetRoot);

fleetRoot.querySelector('[data-f="pager"]')?.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest("[data-page]");
  const data = fleet.lastData;
  if (!button || !data) return;
  const to = { first: 1, prev: data.page - 1, next: data.page + 1, last: data.pages }[
    /** @type {HTMLElement} */ (button).dataset.page || ""
  ];
  if (to && to >= 1 && to <= data.pages && to !== data.page) {
    setFilters({ page: to });
    fleetRoot.scrollIntoView({ block: "start" });
  }
});

// A runner's name in the events table filters the grid to it.
document.querySelector('[data-widget="runner_events"]')?.addEventListener("click", (event) => {
  const link = /** @type {HTMLElement} */ (event.target).closest("a[data-runner]");
  if (!link || /** @type {MouseEvent} */ (event).ctrlKey || /** @type {MouseEvent} */ (event).metaKey) return;
  event.preventDefault();
  const runner = /** @type {HTMLElement} */ (link).dataset.runner || "";
  search.value = runner;
  setFilters({ q: runner, region: "", status: "", source: "" });
  fleetRoot.scrollIntoView({ block: "start" });
});

// The job details view is another module (loaded on first use, so the first load stays small).
const jobModal = () => import("../job-modal.js");
/** @param {(modal: any) => void} use */
function withModal(use) {
  jobModal().then(use, (error) => setError(`The job details view could not be loaded: ${error}`));
}
// -- operator actions ----------------------------------------------------------------------------

fleetRoot.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest(".rc-actions [data-op]");
  if (!(button instanceof HTMLButtonElement) || button.disabled) return;
  const card = /** @type {HTMLElement} */ (button.closest(".rcard"));
  const op = button.dataset.op === "drain" && isDraining(cardRow(card)) ? "undrain" : button.dataset.op || "";
  runnerAction(op, card.dataset.key || "", button);
});

document.querySelector('[data-widget="channels"]')?.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest("[data-op]");
  if (!(button instanceof HTMLButtonElement) || button.disabled) return;
  const channel = /** @type {HTMLElement} */ (button.closest("tr")).dataset.key || "";
  const op = button.dataset.op;
  if (op === "pause") {
    const resume = button.textContent === "Resume";
    const [action, back] = resume ? ["channel.resume", "channel.pause"] : ["channel.pause", "channel.resume"];
    perform(action, { channel }, {
      title: `${button.textContent} channel ${channel}`,
      button,
      undo: { label: `Undo (${resume ? "pause" : "resume"})`, action: back, args: { channel },
              title: `${resume ? "Pause" : "Resume"} channel ${channel}` },  // prettier-ignore
    });
  } else if (op === "purge") {
    perform("channel.purge", { channel }, { title: `Purge channel ${channel}`, verb: "Purge", button, twoPhase: true });
  } else if (op === "stuck") {
    perform("channel.clear_stuck", { channel, older_than: 60 }, {
      title: `Clear stuck jobs of ${channel}`,
      verb: "Clear stuck jobs",
      button,
      twoPhase: true,
    });
  }
});

const broadcastButton = /** @type {HTMLButtonElement} */ (document.getElementById("btn-broadcast"));
gate(broadcastButton, () => can("broadcast"), { note: "ops-note" });
broadcastButton.addEventListener("click", () => openForm("broadcast", {}, broadcastButton));
const cleanupButton = /** @type {HTMLButtonElement} */ (document.getElementById("btn-cleanup"));
gate(cleanupButton, () => can("runners.cleanup"), { note: "ops-note" });
cleanupButton.addEventListener("click", () => openForm("cleanup", {}, cleanupButton));

/** @type {import("../widgets/fleet/menu.js").JobViews} what the context menu's items open and do */
const views = {
  openList: (title, jobIds) => withModal((modal) => modal.openJobList(title, jobIds)),
  openJob: (jobId) => withModal((modal) => modal.openJobDetails(jobId)),
  openRunner: (id, opener) => openDrawer(id, opener),
  act: runnerAction,
};

/** A runner's detail drawer, loaded on first use. @param {string} id @param {HTMLElement | null} opener */
function openDrawer(id, opener) {
  import("../runner-drawer.js").then(
    (drawer) => drawer.openRunner(id, opener),
    (error) => setError(`The runner's details could not be loaded: ${error}`),
  );
}

// A card's runner id opens its detail drawer.
fleetRoot.addEventListener("click", (event) => {
  const id = /** @type {HTMLElement} */ (event.target).closest(".rc-id");
  const card = id?.closest(".rcard");
  if (id && card instanceof HTMLElement) openDrawer(card.dataset.key || "", /** @type {HTMLElement} */ (id));
});

// The context menu's code loads on the first press of a ⋯ button, so the first load stays small; from
// then on menu.js's own listeners handle the buttons (setupMenu).
/** @type {typeof import("../widgets/fleet/menu.js") | null} */
let menuModule = null;
/** @type {Promise<typeof import("../widgets/fleet/menu.js")> | null} */
let menuLoading = null;
function withMenu() {
  menuLoading ??= import("../widgets/fleet/menu.js").then((module) => {
    module.setupMenu(fleetRoot, views);
    menuModule = module;
    return module;
  });
  return menuLoading;
}
fleetRoot.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest(".rc-more");
  if (!(button instanceof HTMLButtonElement) || menuModule) return;
  withMenu().then((module) => module.openMenu(button, views, "first"));
});
fleetRoot.addEventListener("keydown", (event) => {
  const button = /** @type {HTMLElement} */ (event.target).closest?.(".rc-more");
  if (!(button instanceof HTMLButtonElement) || menuModule) return;
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  event.preventDefault();
  const focus = event.key === "ArrowUp" ? "last" : "first";
  withMenu().then((module) => module.openMenu(button, views, focus));
});
setupSelection(fleetRoot);

showFleet();
start();
