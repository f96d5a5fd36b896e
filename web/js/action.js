// @ts-check
/**
 * Doing one operator action from a button: a one-phase action is sent at once and its ack becomes a toast;
 * a two-phase one (section 4.4: destructive, or bulk) goes through the confirm dialog, whose code loads on
 * first use. Forms (Run Simple Job, Purge Channel, ...) and the runner logs viewer load on first use too,
 * so a page's first load carries none of them.
 */
import { can, command } from "./commands.js";
import { gate, setBusy } from "./gate.js";

/** @typedef {import("./protocol.js").Ack} Ack */

/**
 * @typedef {{twoPhase?: boolean, title?: string, verb?: string, button?: HTMLElement | null,
 *   quiet?: boolean, undo?: {label: string, action: string, args: Record<string, any>, title: string}}} PerformOptions
 * `twoPhase`: overrides the welcome's `two_phase` (bulk runner actions decide it per command);
 * `title`/`verb`: the confirm dialog's heading and its Confirm button's label; `button`: shown busy while
 * the command runs and given focus back after the dialog; `quiet`: no success toast (the caller shows the
 * result itself), refusals still toast; `undo`: the action that takes a reversible one back (undrain after a
 * drain, resume after a pause), offered in the success toast instead of asking first.
 */

/**
 * Do `action` with `args`; resolves with the final ack, or null when the operator cancelled.
 * @param {string} action @param {Record<string, any>} args @param {PerformOptions} [options]
 * @returns {Promise<Ack | null>}
 */
export async function perform(action, args, options = {}) {
  const twoPhase = options.twoPhase ?? can(action).two_phase;
  const button = options.button || null;
  if (twoPhase) {
    // The button stays enabled: the dialog is modal anyway, and focus must be able to return to it.
    try {
      const { confirmAndRun } = await import("./confirm.js");
      return await confirmAndRun(action, args, { ...options, returnFocus: button });
    } catch (error) {
      return failedToLoad(action, error);
    }
  }
  if (button) setBusy(button, true);
  try {
    const ack = await command(action, args);
    const back = options.undo;
    const undo = back && { label: back.label, run: () => void perform(back.action, back.args, { title: back.title }) };
    if (!ack.ok || !options.quiet) toastAck(ack, options.title, undo || undefined);
    return ack;
  } finally {
    if (button) setBusy(button, false);
  }
}

/**
 * Toast a command's result. The toast code loads on first use (the page's live region is in base.html
 * from the start, so screen readers hear the toast all the same).
 * @param {Ack} ack @param {string} [fallback] @param {import("./toast.js").Undo} [undo]
 */
export function toastAck(ack, fallback, undo) {
  import("./toast.js").then((t) => t.toastAck(ack, fallback, undo));
}

/**
 * A toast of `kind` with `text` (see toast.js), loaded on first use.
 * @param {import("./toast.js").Kind} kind @param {string} text
 */
export function notify(kind, text) {
  import("./toast.js").then((t) => t.toast(kind, text));
}

/** @param {string} action @param {unknown} error @returns {Ack} */
function failedToLoad(action, error) {
  /** @type {Ack} */
  const ack = { type: "ack", id: "", ok: false, action, error: { code: "page", message: `The confirmation dialog could not load: ${error}` } };
  toastAck(ack);
  return ack;
}

/**
 * Open one of the operation forms (forms.js) by name, e.g. `openForm("purge", {channel: "email"}, button)`.
 * @param {"run" | "batch" | "broadcast" | "stuck" | "purge" | "cleanup"} name
 * @param {Record<string, any>} [preset] values to start from
 * @param {HTMLElement | null} [opener] focus returns here when the form closes
 */
export async function openForm(name, preset = {}, opener = null) {
  try {
    const forms = await import("./forms.js");
    forms.open(name, preset, opener);
  } catch (error) {
    failedToLoad(name, error);
  }
}

/** Show a runner's recent log lines in a modal. @param {string} runner @param {HTMLElement | null} [opener] */
export async function openLogs(runner, opener = null) {
  try {
    const logs = await import("./runner-logs.js");
    logs.openLogs(runner, opener);
  } catch (error) {
    failedToLoad("runner.logs", error);
  }
}

/**
 * Wire every `button[data-form][data-action]` under `root`: gated by its action, a click opens its form.
 * @param {ParentNode} root @param {string} note the id of the visible line listing why buttons are disabled
 *   (a button's own `data-note` wins: a tile has its own)
 */
export function wireFormButtons(root, note) {
  for (const node of root.querySelectorAll("button[data-form][data-action]")) {
    const button = /** @type {HTMLButtonElement} */ (node);
    const action = button.dataset.action || "";
    const form = /** @type {any} */ (button.dataset.form);
    gate(button, () => can(action), { note: button.dataset.note || note });
    button.addEventListener("click", () => openForm(form, {}, button));
  }
}
