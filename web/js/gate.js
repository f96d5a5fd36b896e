// @ts-check
/**
 * Gating: an action button is enabled only while the server says this user may do the action here
 * (commands.js `can`); otherwise it is disabled and says why, in its title and in a visible note that its
 * `aria-describedby` points at. Never a button that does nothing. The verdict is a function, asked again
 * at every welcome (rights arrive or change on reconnect) and on `regate(button)` (a job's status changed,
 * the selection grew). A note lists the reasons of the disabled buttons pointing at it: "Drain, Restart:
 * needs the operator role".
 */
import { onRights } from "./commands.js";

/** @typedef {{ok: boolean, reason: string, local?: boolean}} Verdict `local`: the reason shows elsewhere (title only) */
/** @typedef {{verdict: () => Verdict, label: string, note: string, title: string}} Gate */

/** @type {WeakMap<HTMLElement, Gate>} */
const gates = new WeakMap();
let notesQueued = false;

/**
 * Enable `button` only while `verdict()` is ok.
 * @param {HTMLElement} button a <button> (disabled when refused) or a menu item (aria-disabled)
 * @param {() => Verdict} verdict
 * @param {{note?: string, label?: string}} [options] `note`: the id of the visible element that lists the
 *   reasons; `label`: how the note names this button (its text at the time by default)
 */
export function gate(button, verdict, { note = "", label = "" } = {}) {
  gates.set(button, {
    verdict,
    label,
    note,
    title: button.getAttribute("title") || "",
  });
  button.setAttribute("data-gated", "");
  regate(button);
}

/** Ask `button`'s verdict again and show it. @param {HTMLElement} button */
export function regate(button) {
  const g = gates.get(button);
  if (!g) return;
  const verdict = g.verdict();
  const busy = button.getAttribute("aria-busy") === "true";
  const off = !verdict.ok || busy;
  if (button instanceof HTMLButtonElement) {
    if (button.disabled !== off) button.disabled = off;
  } else if ((button.getAttribute("aria-disabled") === "true") !== off) {
    button.setAttribute("aria-disabled", String(off));
  }
  const title = verdict.ok ? g.title : `${labelOf(button, g)}: ${verdict.reason}`;
  if (title) {
    if (button.getAttribute("title") !== title) button.setAttribute("title", title);
  } else button.removeAttribute("title");
  button.dataset.why = verdict.ok ? "" : verdict.reason;
  if (verdict.ok || verdict.local) button.dataset.whyLocal = "1";
  else delete button.dataset.whyLocal;
  const described = !verdict.ok && g.note ? g.note : "";
  if (described) {
    if (button.getAttribute("aria-describedby") !== described) button.setAttribute("aria-describedby", described);
  } else if (button.hasAttribute("aria-describedby")) button.removeAttribute("aria-describedby");
  queueNotes();
}

/** How a note names a button: its given label, else its text now (Drain may have become Undrain). */
/** @param {HTMLElement} button @param {Gate} g */
function labelOf(button, g) {
  return g.label || (button.textContent || "").trim();
}

/** Ask every gated button in `root` again. @param {ParentNode} [root] */
export function regateAll(root = document) {
  for (const node of root.querySelectorAll("[data-gated]")) regate(/** @type {HTMLElement} */ (node));
}

/** Mark a button busy (a command in flight) or not; a busy button is disabled. @param {HTMLElement} button @param {boolean} busy */
export function setBusy(button, busy) {
  if (busy) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
  if (gates.has(button)) regate(button);
  else if (button instanceof HTMLButtonElement) button.disabled = busy;
}

function queueNotes() {
  if (notesQueued) return;
  notesQueued = true;
  queueMicrotask(() => {
    notesQueued = false;
    refreshNotes();
  });
}

/** Rewrite every note from the disabled buttons that point at it (once per burst of changes). */
function refreshNotes() {
  /** @type {Map<string, Map<string, Set<string>>>} note id -> reason -> labels */
  const notes = new Map();
  for (const node of document.querySelectorAll("[data-gated]")) {
    const button = /** @type {HTMLElement} */ (node);
    const g = gates.get(button);
    if (!g?.note) continue;
    let reasons = notes.get(g.note);
    if (!reasons) {
      reasons = new Map();
      notes.set(g.note, reasons);
    }
    const why = button.dataset.why;
    if (!why || button.dataset.whyLocal) continue;
    let labels = reasons.get(why);
    if (!labels) {
      labels = new Set();
      reasons.set(why, labels);
    }
    labels.add(labelOf(button, g));
  }
  for (const [id, reasons] of notes) {
    const box = document.getElementById(id);
    if (!box) continue;
    const text = [...reasons].map(([why, labels]) => `${[...labels].join(", ")}: ${why}.`).join(" ");
    if (box.textContent !== text) box.textContent = text;
    box.hidden = !text;
  }
}

onRights(() => regateAll());
