// @ts-check
/**
 * The per-runner context menu: a "⋯" menu button on each card opens one shared menu (WAI-ARIA menu button
 * pattern: Enter, Space or the arrow keys open it; arrows, Home and End move; Escape closes and returns
 * focus; Tab closes). Its items do the runner actions (drain or undrain, restart, shutdown, ping, logs;
 * one disabled says why, in its own text) and open the runner's current jobs in the job details view.
 */
import { el } from "../../format.js";
import { isDraining, runnerVerdict } from "./card.js";
import { rowOf } from "./fleet.js";

/**
 * @typedef {{openList: (title: string, jobIds: string[]) => void, openJob: (jobId: string) => void,
 *   openRunner: (id: string, opener: HTMLElement | null) => void,
 *   act: (op: string, runner: string, opener: HTMLElement) => void}} JobViews
 */

/** The runner actions of the menu: [op, label]; "drain" is Undrain on a draining runner. */
const ACTIONS = [
  ["drain", "Drain"],
  ["restart", "Restart…"],
  ["shutdown", "Shut down…"],
  ["ping", "Ping"],
  ["logs", "View logs"],
];

/** @type {HTMLElement} */
let menu;
/** @type {HTMLButtonElement | null} the ⋯ button of the open menu */
let opener = null;
/** @type {HTMLElement} */
let gridRoot;

/** The menu's items. */
function items() {
  return /** @type {HTMLElement[]} */ ([...menu.querySelectorAll('[role="menuitem"]')]);
}

/** @param {number} index */
function focusItem(index) {
  const list = items();
  if (!list.length) return;
  list[(index + list.length) % list.length].focus();
}

/** Close the menu; `refocus` returns focus to its button. @param {boolean} [refocus] */
export function closeMenu(refocus = false) {
  if (!opener) return;
  const button = opener;
  opener = null;
  menu.hidden = true;
  menu.replaceChildren();
  button.setAttribute("aria-expanded", "false");
  if (refocus && button.isConnected) button.focus();
}

/** Put the open menu under its button, right-aligned to it, inside the viewport. */
function position() {
  if (!opener) return;
  const rect = opener.getBoundingClientRect();
  const width = menu.offsetWidth;
  const left = Math.max(8, Math.min(rect.right - width, document.documentElement.clientWidth - width - 8));
  menu.style.left = `${Math.round(left + window.scrollX)}px`;
  menu.style.top = `${Math.round(rect.bottom + window.scrollY + 4)}px`;
}

/**
 * @param {string} label
 * @param {(() => void) | null} action null: shown disabled
 * @param {string} [className]
 */
function item(label, action, className) {
  const button = el("button", className ? `rmenu-item ${className}` : "rmenu-item", label);
  button.setAttribute("type", "button");
  button.setAttribute("role", "menuitem");
  button.tabIndex = -1;
  if (action) button.addEventListener("click", action);
  else button.setAttribute("aria-disabled", "true");
  return button;
}

/**
 * Open the menu of the card whose ⋯ button is `button`.
 * @param {HTMLButtonElement} button
 * @param {JobViews} views
 * @param {"first" | "last" | null} focus which item to focus (null: the first, too: a menu takes focus)
 */
export function openMenu(button, views, focus) {
  closeMenu();
  const card = /** @type {HTMLElement} */ (button.closest(".rcard"));
  const id = card.dataset.key || "";
  const row = rowOf(gridRoot, id);
  const jobs = row?.jobs || [];
  const active = row?.active ?? jobs.length;

  /** Run `fn` after closing, with focus back on the button, so a dialog it opens returns focus there. */
  const then = (/** @type {() => void} */ fn) => () => {
    closeMenu(true);
    fn();
  };
  const title = el("div", "rmenu-title", id);
  title.setAttribute("role", "presentation");
  const children = [title];
  if (jobs.length) {
    const more = active > jobs.length ? ` (first ${jobs.length} of ${active})` : ` (${jobs.length})`;
    children.push(item(`Open current jobs${more}`, then(() => views.openList(`Current jobs of ${id}`, jobs))));
    for (const job of jobs) children.push(item(job, then(() => views.openJob(job)), "rmenu-job"));
  } else {
    children.push(item("No current jobs", null));
  }
  const link = el("a", "rmenu-item", "Its jobs in the job table");
  link.setAttribute("role", "menuitem");
  link.setAttribute("href", `/admin/jobs/table?q=${encodeURIComponent(`runner:${id}`)}`);
  link.tabIndex = -1;
  children.push(link, item("Runner details…", then(() => views.openRunner(id, button))));
  // Then the runner actions (after the jobs, the menu's first purpose: the mockup's "current jobs").
  const sep = el("div", "rmenu-sep");
  sep.setAttribute("role", "separator");
  children.push(sep);
  for (const [op, label] of ACTIONS) {
    const undrain = op === "drain" && isDraining(row);
    const action = undrain ? "runner.undrain" : `runner.${op}`;
    const verdict = runnerVerdict(action, row);
    const text = undrain ? "Undrain" : label;
    const node = item(text, verdict.ok ? then(() => views.act(undrain ? "undrain" : op, id, button)) : null, "rmenu-act");
    if (!verdict.ok) {
      node.title = `${text}: ${verdict.reason}`;
      node.append(el("span", "rmenu-why", verdict.reason));
    }
    children.push(node);
  }
  menu.replaceChildren(...children);
  menu.setAttribute("aria-label", `Runner ${id}`);
  opener = button;
  button.setAttribute("aria-expanded", "true");
  menu.hidden = false;
  position();
  focusItem(focus === "last" ? -1 : 0);
}

/** After the grid re-rendered: close the menu if its card left the page, else keep it under its button. */
export function refreshMenu() {
  if (!opener) return;
  if (!opener.isConnected) closeMenu();
  else position();
}

/**
 * Wire the ⋯ buttons of the grid in `root` to the shared menu `#runner-menu`.
 * @param {HTMLElement} root
 * @param {JobViews} views
 */
export function setupMenu(root, views) {
  gridRoot = root;
  menu = /** @type {HTMLElement} */ (document.getElementById("runner-menu"));
  document.body.append(menu); // positioned against the document
  menu.setAttribute("aria-orientation", "vertical");

  root.addEventListener("click", (event) => {
    const button = /** @type {HTMLElement} */ (event.target).closest(".rc-more");
    if (!button) return;
    if (opener === button) closeMenu(true);
    else openMenu(/** @type {HTMLButtonElement} */ (button), views, "first");
  });
  root.addEventListener("keydown", (event) => {
    const button = /** @type {HTMLElement} */ (event.target).closest?.(".rc-more");
    if (!button || (event.key !== "ArrowDown" && event.key !== "ArrowUp")) return;
    event.preventDefault();
    openMenu(/** @type {HTMLButtonElement} */ (button), views, event.key === "ArrowUp" ? "last" : "first");
  });
  menu.addEventListener("keydown", (event) => {
    const list = items();
    const at = list.indexOf(/** @type {HTMLElement} */ (document.activeElement));
    switch (event.key) {
      case "ArrowDown":
        focusItem(at + 1);
        break;
      case "ArrowUp":
        focusItem(at - 1);
        break;
      case "Home":
        focusItem(0);
        break;
      case "End":
        focusItem(-1);
        break;
      case "Escape":
        closeMenu(true);
        break;
      case "Tab":
        closeMenu(true);
        return; // let Tab move on from the button
      case " ":
        /** @type {HTMLElement} */ (document.activeElement).click();
        break;
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation();
  });
  document.addEventListener("pointerdown", (event) => {
    const target = /** @type {Node} */ (event.target);
    if (opener && !menu.contains(target) && !opener.contains(target)) closeMenu();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && opener) closeMenu(true);
  });
  window.addEventListener("resize", () => position());
}
