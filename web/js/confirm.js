// @ts-check
/**
 * The two-phase confirmation (docs/protocol.md 4.2): send `phase: "preview"`, show what the action would
 * touch (the server's message, the count, a sample) with a countdown to the confirm token's expiry, and
 * only on Confirm send `phase: "execute"` with that token. Cancel (or Escape) sends nothing more. A refusal
 * at either step (`forbidden`, `confirm_invalid`, ...) becomes an error toast; success a success toast.
 */
import { now, span } from "./clock.js";
import { command } from "./commands.js";
import { button, openDialog } from "./dialog.js";
import { count, el, setText } from "./format.js";
import { toastAck } from "./toast.js";

/** @typedef {import("./protocol.js").Ack} Ack */

const SAMPLE_SHOWN = 10;

/**
 * @param {string} action @param {Record<string, any>} args
 * @param {{title?: string, verb?: string, returnFocus?: HTMLElement | null}} [options]
 * @returns {Promise<Ack | null>} the execute's ack; a refused preview's ack; null when cancelled
 */
export async function confirmAndRun(action, args, { title, verb, returnFocus = null } = {}) {
  const opener = returnFocus || /** @type {HTMLElement | null} */ (document.activeElement);
  const preview = await command(action, args, { phase: "preview" });
  if (!preview.ok || preview.phase !== "preview") {
    // Refused, or the server did it at once (not two-phase after all): either way the ack says what happened.
    toastAck(preview, title);
    return preview;
  }
  return new Promise((resolve) => show(action, args, preview, { title, verb, opener }, resolve));
}

/**
 * @param {string} action @param {Record<string, any>} args @param {Ack} first
 * @param {{title?: string, verb?: string, opener: HTMLElement | null}} options
 * @param {(ack: Ack | null) => void} resolve
 */
function show(action, args, first, { title, verb, opener }, resolve) {
  let running = false;
  let timer = 0;
  const dlg = openDialog({
    title: title || `Confirm ${action}`,
    danger: true,
    opener,
    className: "ad-confirm",
    onCancel: () => !running, // the execute is out: its ack decides, not Escape
  });
  dlg.dialog.setAttribute("role", "alertdialog");

  const message = el("p", "ad-message");
  message.id = `${dlg.title.id}-msg`;
  dlg.dialog.setAttribute("aria-describedby", message.id);
  const facts = el("p", "ad-facts");
  const countLine = el("span", "ad-count");
  const expiry = el("span", "ad-expiry");
  expiry.setAttribute("aria-live", "off");
  facts.append(countLine, " · ", expiry);
  const sampleHead = el("p", "ad-sample-head small muted");
  const sample = el("ul", "ad-sample");
  const status = el("p", "ad-status");
  status.setAttribute("role", "status");
  dlg.body.append(message, facts, sampleHead, sample, status);

  const cancel = button("Cancel");
  const confirm = button(verb || "Confirm", "danger");
  confirm.classList.add("ad-confirm-btn");
  dlg.foot.append(cancel, confirm);

  /** @type {Ack} */
  let preview = first;
  let expired = false;

  /** @param {Ack} ack */
  const fill = (ack) => {
    preview = ack;
    expired = false;
    const r = ack.result || {};
    setText(message, ack.message || `${action}: confirm to go ahead.`);
    setText(countLine, `Would affect ${count(r.count ?? 0)}`);
    const items = Array.isArray(r.sample) ? r.sample : [];
    sample.replaceChildren(...items.slice(0, SAMPLE_SHOWN).map((/** @type {unknown} */ s) => el("li", "mono", String(s))));
    sampleHead.hidden = !items.length;
    setText(sampleHead, `For example${r.count > items.length || items.length > SAMPLE_SHOWN ? ` (${Math.min(items.length, SAMPLE_SHOWN)} of ${count(r.count)})` : ""}:`);
    setText(confirm, verb || "Confirm");
    confirm.disabled = false;
    setText(status, "");
    tick();
  };

  const tick = () => {
    const expires = Number(preview.result?.expires);
    if (!Number.isFinite(expires)) {
      setText(expiry, "");
      return;
    }
    const left = expires - now();
    if (left > 0) {
      setText(expiry, `confirm within ${span(left)}`);
      expiry.classList.toggle("soon", left < 10);
    } else if (!expired) {
      expired = true;
      setText(expiry, "this preview expired");
      setText(confirm, "Preview again");
      setText(status, "The confirmation expired: preview again to see what the action would touch now.");
    }
  };
  timer = window.setInterval(tick, 500);

  /** @param {Ack | null} result */
  const finish = (result) => {
    window.clearInterval(timer);
    dlg.close(result ? "done" : "cancel");
    resolve(result);
  };

  cancel.addEventListener("click", () => {
    if (!running) finish(null);
  });
  dlg.closed.then((how) => {
    window.clearInterval(timer);
    if (how === "cancel") resolve(null); // Escape or ×
  });

  confirm.addEventListener("click", async () => {
    if (running) return;
    running = true;
    confirm.disabled = true;
    cancel.disabled = true;
    if (expired) {
      setText(status, "Previewing again…");
      const again = await command(action, args, { phase: "preview" });
      running = false;
      cancel.disabled = false;
      if (!again.ok || again.phase !== "preview") {
        toastAck(again, title);
        finish(again);
        return;
      }
      fill(again);
      confirm.focus();
      return;
    }
    setText(status, "Working…");
    const token = preview.result?.confirm;
    const ack = await command(action, args, { phase: "execute", confirm: token });
    running = false;
    toastAck(ack, title);
    finish(ack);
  });

  fill(first);
  // Focus goes to Cancel, the safe choice: Enter on a fresh dialog must not destroy anything.
  cancel.focus();
}
