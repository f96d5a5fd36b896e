// @ts-check
/**
 * Multi-select on the runner grid: a checkbox per card, "select all on this page", and the bulk action bar
 * that appears while anything is selected. The selection is a set of runner ids, so it survives updates,
 * re-sorts, paging and filter changes; the cards only show it.
 *
 * The bar's actions go to every selected runner (on this page or not). On more than one runner they are
 * bulk actions: admin only and two-phase, except ping (docs/protocol.md 4.4), which the buttons say.
 */
import { perform } from "../../action.js";
import { canRunners } from "../../commands.js";
import { setText } from "../../format.js";
import { gate, regate } from "../../gate.js";
import { selected, showSelection } from "./fleet.js";

/** A command addresses at most this many runners (4.4). */
const MAX_RUNNERS = 1000;
const VERBS = /** @type {Record<string, string>} */ ({
  drain: "Drain",
  undrain: "Undrain",
  restart: "Restart",
  shutdown: "Shut down",
  ping: "Ping",
});

/** @type {HTMLElement} */
let fleetRoot;

/** Ids of the cards on the page now. */
function visibleIds() {
  return [...fleetRoot.querySelectorAll(".rcard")].map((node) => /** @type {HTMLElement} */ (node).dataset.key || "");
}

/** Bring the select-all box and the bulk bar in line with the selection and the cards shown. */
export function refreshSelection() {
  if (!fleetRoot) return;
  const all = /** @type {HTMLInputElement} */ (document.getElementById("sel-all"));
  const bar = /** @type {HTMLElement} */ (document.getElementById("bulkbar"));
  const ids = visibleIds();
  const on = ids.filter((id) => selected.has(id)).length;
  const checked = ids.length > 0 && on === ids.length;
  const mixed = on > 0 && !checked;
  if (all.checked !== checked) all.checked = checked;
  if (all.indeterminate !== mixed) all.indeterminate = mixed;
  if (all.disabled !== !ids.length) all.disabled = !ids.length;
  const hidden = selected.size === 0;
  if (bar.hidden !== hidden) bar.hidden = hidden;
  const elsewhere = selected.size - on;
  setText(
    /** @type {HTMLElement} */ (bar.querySelector('[data-f="selcount"]')),
    `${selected.size} selected` + (elsewhere ? ` (${elsewhere} not on this page)` : ""),
  );
  for (const button of bar.querySelectorAll("[data-bulk]")) regate(/** @type {HTMLElement} */ (button));
}

/** @param {string} op @returns {import("../../commands.js").Verdict} */
function bulkVerdict(op) {
  if (selected.size > MAX_RUNNERS) {
    return { ok: false, reason: `at most ${MAX_RUNNERS} runners at once (${selected.size} selected)`, two_phase: true };
  }
  return canRunners(`runner.${op}`, selected.size);
}

/** Wire the bulk bar's action buttons. @param {HTMLElement} bar */
function setupBulk(bar) {
  for (const node of bar.querySelectorAll("[data-bulk]")) {
    const button = /** @type {HTMLButtonElement} */ (node);
    const op = button.dataset.bulk || "";
    gate(button, () => bulkVerdict(op), { note: "bulk-note" });
    button.addEventListener("click", () => {
      const runners = [...selected];
      if (!runners.length) return;
      const verdict = bulkVerdict(op);
      if (!verdict.ok) return;
      const n = runners.length;
      const what = n === 1 ? `runner ${runners[0]}` : `${n} runners`;
      perform(`runner.${op}`, { runners }, {
        twoPhase: verdict.two_phase,
        title: `${VERBS[op]} ${what}`,
        verb: VERBS[op],
        button,
      });
    });
  }
}

/** Wire the checkboxes of the grid in `root` (the #fleet section). @param {HTMLElement} root */
export function setupSelection(root) {
  fleetRoot = root;
  root.addEventListener("change", (event) => {
    const box = /** @type {HTMLInputElement} */ (event.target);
    if (box.id === "sel-all") {
      for (const id of visibleIds()) {
        if (box.checked) selected.add(id);
        else selected.delete(id);
      }
    } else if (box.classList.contains("rc-select")) {
      const id = /** @type {HTMLElement} */ (box.closest(".rcard")).dataset.key || "";
      if (box.checked) selected.add(id);
      else selected.delete(id);
    } else return;
    showSelection(root);
    refreshSelection();
  });
  document.getElementById("sel-clear")?.addEventListener("click", () => {
    selected.clear();
    showSelection(root);
    refreshSelection();
    /** @type {HTMLElement | null} */ (document.getElementById("sel-all"))?.focus();
  });
  setupBulk(/** @type {HTMLElement} */ (document.getElementById("bulkbar")));
  refreshSelection();
}
