// @ts-check
/**
 * A modal dialog for the operator actions (confirm, forms, runner logs), loaded with them on first use.
 * A native <dialog> shown modal, so the page behind is inert; Tab and Shift+Tab cycle inside it, Escape
 * (or the × button) cancels, and closing gives focus back to the opener. It links web/css/actions.css
 * itself, so pages need not.
 */
import { el, linkStylesheet } from "./format.js";

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';
let seq = 0;

/**
 * @typedef {{dialog: HTMLDialogElement, body: HTMLElement, foot: HTMLElement, title: HTMLElement,
 *   close: (how?: string) => void, closed: Promise<string>, isOpen: () => boolean}} Dialog
 */

/**
 * Open a dialog. `onCancel` may veto (return false) a cancel while something runs.
 * @param {{title: string, danger?: boolean, wide?: boolean, opener?: Element | null, onCancel?: () => boolean | void,
 *   className?: string}} options
 * @returns {Dialog}
 */
export function openDialog({ title, danger = false, wide = false, opener = document.activeElement, onCancel, className = "" }) {
  ensureStyles();
  const id = `ad-${++seq}`;
  const d = /** @type {HTMLDialogElement} */ (el("dialog", `ad${danger ? " ad-danger" : ""}${wide ? " ad-wide" : ""} ${className}`.trim()));
  d.setAttribute("aria-labelledby", `${id}-title`);
  d.setAttribute("aria-modal", "true");
  const head = el("div", "ad-head");
  const h = el("h2", "ad-title", title);
  h.id = `${id}-title`;
  h.tabIndex = -1;
  const x = /** @type {HTMLButtonElement} */ (el("button", "ad-x", "×"));
  x.type = "button";
  x.setAttribute("aria-label", "Close");
  x.title = "Close (Escape)";
  head.append(h, x);
  const body = el("div", "ad-body");
  const foot = el("div", "ad-foot");
  d.append(head, body, foot);
  document.body.append(d);

  let open = true;
  /** @type {(how: string) => void} */
  let done = () => {};
  /** @type {Promise<string>} */
  const closed = new Promise((resolve) => {
    done = resolve;
  });
  const returnTo = opener instanceof HTMLElement ? opener : null;
  /** @param {string} [how] */
  const close = (how = "closed") => {
    if (!open) return;
    open = false;
    if (d.open) d.close();
    d.remove();
    if (returnTo?.isConnected) returnTo.focus();
    done(how);
  };
  const cancel = () => {
    if (onCancel && onCancel() === false) return;
    close("cancel");
  };
  x.addEventListener("click", cancel);
  d.addEventListener("cancel", (event) => {
    event.preventDefault(); // Escape: through our own path, so focus returns and onCancel is asked
    cancel();
  });
  d.addEventListener("keydown", (event) => trap(d, event));
  d.showModal();
  return { dialog: d, body, foot, title: h, close, closed, isOpen: () => open };
}

/**
 * Tab and Shift+Tab cycle inside the dialog.
 * @param {HTMLDialogElement} d @param {KeyboardEvent} event
 */
function trap(d, event) {
  if (event.key !== "Tab") return;
  const items = /** @type {HTMLElement[]} */ ([...d.querySelectorAll(FOCUSABLE)]).filter(
    (node) => node.tabIndex >= 0 && node.getClientRects().length > 0,
  );
  if (!items.length) {
    event.preventDefault();
    return;
  }
  const first = items[0];
  const last = items[items.length - 1];
  const active = document.activeElement;
  if (event.shiftKey && (active === first || !d.contains(active))) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (active === last || !d.contains(active))) {
    event.preventDefault();
    first.focus();
  }
}

/**
 * A button for a dialog's foot.
 * @param {string} label @param {"primary" | "danger" | ""} [kind]
 */
export function button(label, kind = "") {
  const b = /** @type {HTMLButtonElement} */ (el("button", `btn${kind ? ` ${kind}` : ""}`, label));
  b.type = "button";
  return b;
}

/** The page may not link actions.css; the dialog links it once. */
function ensureStyles() {
  linkStylesheet(new URL("../css/actions.css", import.meta.url).href);
}
