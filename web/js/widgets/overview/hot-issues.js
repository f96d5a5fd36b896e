// @ts-check
/**
 * Hot Issues (`hot_issues`): the open alerts, critical first, each with its severity in words, title,
 * detail, how long it has been open (ticking) and its call to action. Items are keyed by alert id, so a
 * condition that persists is the same DOM node for as long as it holds. With an alert target configured, each
 * also says whether it was notified, acknowledged or silenced, with Acknowledge and Silence 1 h buttons.
 */
import { count, el, setText } from "../../format.js";
import * as alertTools from "../alert-tools.js";
import { field, setAttr, syncList } from "./list.js";

const SEVERITY = /** @type {Record<string, string>} */ ({ critical: "Critical", warning: "Warning" });

/** @param {HTMLElement} root @param {{rows: Record<string, any>, order: string[], total: number}} data */
export function render(root, data) {
  alertTools.wire(root);
  syncList(field(root, "rows"), data, create, update);
  const shown = data.order.length;
  setText(
    field(root, "summary"),
    data.total ? `${count(data.total)} open${shown < data.total ? ` · showing ${shown}` : ""}` : "all clear",
  );
  field(root, "empty").hidden = shown > 0;
}

function create() {
  const li = el("li", "issue");
  const body = el("div", "issue-body");
  const since = el("span");
  const when = el("span", "small issue-since");
  when.append("open for ", since);
  const [marks, tools] = alertTools.make();
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
  // What the notifier says of it, and its buttons (only with an alert target configured).
  alertTools.fill(marks, tools, row, /** @type {string} */ (li.dataset.key), Boolean(row.notify));
}
