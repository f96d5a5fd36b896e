// @ts-check
/**
 * Hot Issues (`hot_issues`): the open alerts, critical first, each with its severity in words, title,
 * detail, how long it has been open (ticking) and its call to action. Items are keyed by alert id, so a
 * condition that persists is the same DOM node for as long as it holds. With an alert target configured, each
 * also says whether it was notified, acknowledged or silenced, with Acknowledge and Silence 1 h buttons.
 */
import { can, onRights } from "../../commands.js";
import { clockTime, count, el, setText } from "../../format.js";
import { field, setAttr, syncList } from "./list.js";

const SEVERITY = /** @type {Record<string, string>} */ ({ critical: "Critical", warning: "Warning" });

/** @param {HTMLElement} root @param {{rows: Record<string, any>, order: string[], total: number}} data */
export function render(root, data) {
  if (!wired.has(root)) {
    wired.add(root);
    root.addEventListener("click", act);
  }
  syncList(field(root, "rows"), data, create, update);
  const shown = data.order.length;
  setText(
    field(root, "summary"),
    data.total ? `${count(data.total)} open${shown < data.total ? ` · showing ${shown}` : ""}` : "all clear",
  );
  field(root, "empty").hidden = shown > 0;
}

/** @type {WeakSet<HTMLElement>} */
const wired = new WeakSet();

/** Enable the alert buttons this user may use; the others say why on hover. @param {ParentNode} root */
function rights(root) {
  for (const node of root.querySelectorAll(".issue-tools button")) {
    const button = /** @type {HTMLButtonElement} */ (node);
    const verdict = can(/** @type {string} */ (button.dataset.action));
    button.disabled = !verdict.ok;
    button.title = verdict.ok ? "" : verdict.reason;
  }
}
onRights(() => rights(document));

/** The alert buttons: sent like every command (the action module loads on first use). @param {Event} event */
function act(event) {
  const button = /** @type {HTMLButtonElement | null} */ (
    /** @type {HTMLElement} */ (event.target).closest("button[data-action]")
  );
  if (!button) return;
  const alert = /** @type {string} */ (button.dataset.alert);
  const args = button.dataset.action === "alert.silence" ? { alert, minutes: 60 } : { alert };
  import("../../action.js").then((a) => a.perform(/** @type {string} */ (button.dataset.action), args, { button }));
}

function create() {
  const li = el("li", "issue");
  const body = el("div", "issue-body");
  const since = el("span");
  const when = el("span", "small issue-since");
  when.append("open for ", since);
  const marks = el("span", "small issue-marks");
  const ack = /** @type {HTMLButtonElement} */ (el("button", "btn small", "Acknowledge"));
  ack.type = "button";
  ack.dataset.action = "alert.ack";
  const mute = /** @type {HTMLButtonElement} */ (el("button", "btn small", "Silence 1 h"));
  mute.type = "button";
  mute.dataset.action = "alert.silence";
  const tools = el("span", "issue-tools");
  tools.append(ack, mute);
  body.append(el("span", "issue-title"), el("span", "small issue-detail"), when, marks, tools);
  const cta = el("a", "btn small cta");
  li.append(el("span", "badge sev"), body, cta);
  return li;
}

/** @param {HTMLElement} li @param {any} row */
function update(li, row) {
  setAttr(li, "class", `issue sev-${row.severity}`);
  setAttr(li, "data-rule", row.rule);
  const [badge, body, cta] = /** @type {HTMLElement[]} */ ([...li.children]);
  setText(badge, SEVERITY[row.severity] || row.severity);
  setAttr(badge, "class", `badge sev sev-${row.severity}`);
  const [title, detail, when, marks, tools] = /** @type {HTMLElement[]} */ ([...body.children]);
  setText(title, row.title);
  setText(detail, row.detail);
  setAttr(detail, "title", row.detail);
  const since = /** @type {HTMLElement} */ (when.lastElementChild);
  since.dataset.since = String(row.since);
  const anchor = /** @type {HTMLAnchorElement} */ (cta);
  setText(anchor, row.cta?.label || "Open");
  setAttr(anchor, "href", row.cta?.href || "/admin/jobs/overview");
  setAttr(anchor, "aria-label", `${row.cta?.label || "Open"}: ${row.title}`);
  // What the notifier says of it (only with an alert target configured).
  const said = [];
  if (row.notified) said.push(`notified ${clockTime(row.notified)}`);
  if (row.acked_by) said.push(`acknowledged by ${row.acked_by}`);
  if (row.silenced_until) said.push(`silenced until ${clockTime(row.silenced_until)}`);
  setText(marks, said.join(" · "));
  marks.hidden = !said.length;
  tools.hidden = !row.notify;
  const [ack, mute] = /** @type {HTMLButtonElement[]} */ ([...tools.children]);
  for (const button of [ack, mute]) button.dataset.alert = li.dataset.key;
  rights(tools);
  ack.hidden = !row.notified || Boolean(row.acked_by);
  mute.hidden = Boolean(row.silenced_until);
  setAttr(ack, "aria-label", `Acknowledge: ${row.title}`);
  setAttr(mute, "aria-label", `Silence for an hour: ${row.title}`);
}
