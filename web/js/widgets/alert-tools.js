// @ts-check
/**
 * The alert buttons (Acknowledge, Silence 1 h) and marks (notified, acknowledged, silenced) that the Hot Issues
 * card and the alert timeline show for an open alert while an alert target is configured (docs/alerts.md).
 * The commands go over the socket like every other (the action module loads on first use).
 */
import { can } from "../commands.js";
import { clockTime, el, setText } from "../format.js";
import { gate } from "../gate.js";

/** @type {WeakSet<HTMLElement>} */
const wired = new WeakSet();

/** Send the alert command of a clicked button under `root` (wired once per root). @param {HTMLElement} root */
export function wire(root) {
  if (wired.has(root)) return;
  wired.add(root);
  root.addEventListener("click", (event) => {
    const button = /** @type {HTMLButtonElement | null} */ (
      /** @type {HTMLElement} */ (event.target).closest(".alert-tools button[data-action]")
    );
    if (!button) return;
    const action = /** @type {string} */ (button.dataset.action);
    const alert = /** @type {string} */ (button.dataset.alert);
    const args = action === "alert.silence" ? { alert, minutes: 60 } : { alert };
    import("../action.js").then((a) => a.perform(action, args, { button }));
  });
}

/** The marks line and the buttons, to fill with `fill`. @returns {[HTMLElement, HTMLElement]} */
export function make() {
  const marks = el("span", "small alert-marks");
  const tools = el("span", "alert-tools");
  for (const [action, label] of [["alert.ack", "Acknowledge"], ["alert.silence", "Silence 1 h"]]) {
    const button = /** @type {HTMLButtonElement} */ (el("button", "btn small", label));
    button.type = "button";
    button.dataset.action = action;
    gate(button, () => can(action)); // enabled while this user may, else saying why (asked again each welcome)
    tools.append(button);
  }
  return [marks, tools];
}

/**
 * Show what the notifier says of an alert and the buttons that apply (`open`: the alert is open here).
 * @param {HTMLElement} marks @param {HTMLElement} tools @param {any} row @param {string} alert @param {boolean} open
 */
export function fill(marks, tools, row, alert, open) {
  const said = [];
  if (row.notified) said.push(`notified ${clockTime(row.notified)}`);
  if (row.acked_by) said.push(`acknowledged by ${row.acked_by}`);
  if (row.silenced_until) said.push(`silenced until ${clockTime(row.silenced_until)}`);
  setText(marks, said.join(" · "));
  marks.hidden = !said.length;
  tools.hidden = !open;
  const [ack, mute] = /** @type {HTMLButtonElement[]} */ ([...tools.children]);
  ack.dataset.alert = mute.dataset.alert = alert;
  ack.hidden = !row.notified || Boolean(row.acked_by);
  mute.hidden = Boolean(row.silenced_until);
  ack.setAttribute("aria-label", `Acknowledge: ${row.title}`);
  mute.setAttribute("aria-label", `Silence for an hour: ${row.title}`);
}
