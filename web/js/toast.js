// @ts-check
/**
 * Centralized toasts (the mockup's "Centralize success/error toasts so operators know what changed"): one
 * polite live region for the whole page, so a screen reader hears every result once, in order. A toast says
 * its kind in an icon and a word as well as in colour, dismisses itself (errors stay longer: they need
 * reading) and has a close button.
 */
import { el, linkStylesheet } from "./format.js";

/** @typedef {"success" | "error" | "info"} Kind */

const LABEL = /** @type {Record<Kind, string>} */ ({ success: "Done", error: "Failed", info: "Note" });
const ICON = /** @type {Record<Kind, string>} */ ({ success: "✓", error: "✕", info: "i" });
const STAY_MS = /** @type {Record<Kind, number>} */ ({ success: 6_000, error: 12_000, info: 6_000 });
/** Older toasts go first past this many, so a burst of results does not cover the page. */
const MAX_SHOWN = 5;

/** Link web/css/toasts.css once; resolves when it has loaded (or failed: a plain toast beats none). */
let styled = /** @type {Promise<void> | null} */ (null);
function ensureStyles() {
  styled ??= linkStylesheet(new URL("../css/toasts.css", import.meta.url).href);
  return styled;
}

/** The page's one live region (base.html has it; made here when a page does not). */
function region() {
  let node = document.getElementById("toasts");
  if (!node) {
    node = el("div", "toasts");
    node.id = "toasts";
    node.setAttribute("aria-live", "polite");
    node.setAttribute("aria-relevant", "additions");
    document.body.append(node);
  }
  return node;
}

/** @typedef {{label: string, run: () => void}} Undo an action that takes back what the toast reports */

/** How long a toast that offers an undo stays: long enough to notice a slip and take it back. */
const UNDO_MS = 12_000;

/**
 * Show a toast (once its stylesheet is in: only the first toast of a page waits for it).
 * @param {Kind} kind
 * @param {string} text
 * @param {{detail?: string, undo?: Undo}} [options] a second, smaller line (e.g. who did not answer); a button
 *   that takes the action back (drain, pause), which dismisses the toast
 */
export function toast(kind, text, { detail, undo } = {}) {
  ensureStyles().then(() => show(kind, text, detail, undo));
}

/** @param {Kind} kind @param {string} text @param {string | undefined} detail @param {Undo | undefined} undo */
function show(kind, text, detail, undo) {
  const box = region();
  const item = el("div", `toast toast-${kind}`);
  item.dataset.kind = kind;
  const icon = el("span", "toast-icon", ICON[kind]);
  icon.setAttribute("aria-hidden", "true");
  const body = el("div", "toast-body");
  const line = el("p", "toast-text");
  line.append(el("b", "toast-kind", `${LABEL[kind]}: `), text);
  body.append(line);
  if (detail) body.append(el("p", "toast-detail", detail));
  /** @type {HTMLButtonElement | null} */
  let undoButton = null;
  if (undo) {
    undoButton = /** @type {HTMLButtonElement} */ (el("button", "btn toast-undo", undo.label));
    undoButton.type = "button";
    body.append(undoButton);
  }
  const close = /** @type {HTMLButtonElement} */ (el("button", "toast-close", "×"));
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.title = "Dismiss";
  item.append(icon, body, close);

  let timer = 0;
  const dismiss = () => {
    window.clearTimeout(timer);
    item.remove();
  };
  const arm = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(dismiss, undo ? UNDO_MS : STAY_MS[kind]);
  };
  close.addEventListener("click", dismiss);
  undoButton?.addEventListener("click", () => {
    dismiss();
    undo?.run();
  });
  // Hovering or focusing a toast holds it, so it does not vanish while being read.
  item.addEventListener("pointerenter", () => window.clearTimeout(timer));
  item.addEventListener("pointerleave", arm);
  item.addEventListener("focusin", () => window.clearTimeout(timer));
  item.addEventListener("focusout", arm);
  box.append(item);
  while (box.childElementCount > MAX_SHOWN) box.firstElementChild?.remove();
  arm();
}

/**
 * The toast for a command's ack: its message, or the refusal's message.
 * @param {import("./protocol.js").Ack} ack
 * @param {string} [fallback] what was attempted, when the server sent no message
 * @param {Undo} [undo] offered on success only
 */
export function toastAck(ack, fallback = "", undo = undefined) {
  if (ack.ok) {
    const missing = ack.result?.missing;
    const detail = Array.isArray(missing) && missing.length ? `${missing.length} runner${missing.length === 1 ? "" : "s"} did not answer: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}` : undefined;
    toast("success", ack.message || `${fallback || ack.action || "command"}: done`, { detail, undo });
    return;
  }
  const error = ack.error;
  const text = error?.message || ack.message || `${fallback || ack.action || "command"} was refused`;
  toast("error", text, { detail: error?.code ? `code: ${error.code}` : undefined });
}
