// @ts-check
/**
 * The scheduler (the mockup's "Open Scheduler" on the Scheduled Jobs card): every scheduled job by when it is
 * due, fifty a page, live from the `schedule?page=` view (docs/protocol.md 3.7), each with Run now (queue it now
 * instead of at its time) and Cancel. Loaded on first use; the view is watched only while it is open.
 */
import { perform } from "./action.js";
import { mount, register, unmount } from "./app.js";
import { can } from "./commands.js";
import { openDialog } from "./dialog.js";
import { clockTime, count, el, field, linkStylesheet, setText } from "./format.js";
import { gate, regate } from "./gate.js";
import { viewKey } from "./views.js";
import { syncRows } from "./widgets/rows.js";

register("schedule", (root, data) => render(root, data));

/** Open the scheduler; focus returns to `opener` when it closes. @param {HTMLElement | null} [opener] */
export function openScheduler(opener = null) {
  linkStylesheet(new URL("../css/drawer.css", import.meta.url).href);
  const dlg = openDialog({ title: "Scheduler", opener, className: "rdrawer scheduler", wide: true });
  const body = dlg.body;
  body.classList.add("rd");
  const summary = el("p", "muted sc-summary", "Loading the scheduled jobs…");
  summary.dataset.f = "summary";
  const table = el("table", "tbl compact sc-tbl");
  const thead = el("thead");
  const head = el("tr");
  for (const name of ["Due", "Job", "Channel", "Function", "Attempt", "Actions"]) head.append(el("th", "", name));
  thead.append(head);
  const tbody = el("tbody");
  tbody.dataset.f = "rows";
  table.append(thead, tbody);
  const empty = el("p", "empty", "Nothing is scheduled.");
  empty.dataset.f = "empty";
  empty.hidden = true;
  const pager = el("nav", "pager sc-pager");
  pager.setAttribute("aria-label", "Scheduler pages");
  const prev = /** @type {HTMLButtonElement} */ (el("button", "btn", "‹ Sooner"));
  const next = /** @type {HTMLButtonElement} */ (el("button", "btn", "Later ›"));
  prev.type = next.type = "button";
  const info = el("span", "pager-info");
  info.dataset.f = "pageinfo";
  pager.append(prev, info, next);
  body.append(summary, table, empty, pager);

  let page = 1;
  const show = () => mount(body, viewKey("schedule", { page: page > 1 ? page : "" }));
  prev.addEventListener("click", () => {
    page = Math.max(1, page - 1);
    show();
  });
  next.addEventListener("click", () => {
    page += 1;
    show();
  });
  body.addEventListener("click", (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    const button = /** @type {HTMLButtonElement | null} */ (target.closest("button[data-op]"));
    const tr = /** @type {HTMLElement | null} */ (target.closest("tr[data-key]"));
    if (!button || !tr || button.disabled) return;
    const job = tr.dataset.key || "";
    if (button.dataset.op === "open") import("./job-modal.js").then((modal) => modal.openJobDetails(job));
    else if (button.dataset.op === "run_now") perform("job.run_now", { job }, { title: `Run ${job} now`, button });
    else if (button.dataset.op === "cancel") perform("job.cancel", { job }, { title: `Cancel ${job}`, verb: "Cancel job", button });
  });
  show();
  dlg.closed.then(() => unmount(body));
  return dlg;
}

/** @param {HTMLElement} root @param {any} data */
function render(root, data) {
  syncRows(field(root, "rows"), data, create, update);
  field(root, "empty").hidden = data.order.length > 0;
  const first = (data.page - 1) * data.size + 1;
  setText(
    field(root, "summary"),
    data.total ? `${count(data.total)} scheduled; ${count(first)}–${count(first + data.order.length - 1)} by when they are due` : "",
  );
  setText(field(root, "pageinfo"), `Page ${count(data.page)} of ${count(data.pages)}`);
  const [prev, next] = /** @type {HTMLButtonElement[]} */ ([...root.querySelectorAll(".sc-pager button")]);
  prev.disabled = data.page <= 1;
  next.disabled = data.page >= data.pages;
}

function create() {
  const due = el("td");
  due.append(el("span", "sc-until"), el("span", "small sc-clock"));
  const job = el("td");
  const open = /** @type {HTMLButtonElement} */ (el("button", "linkish mono"));
  open.type = "button";
  open.dataset.op = "open";
  job.append(open);
  const actions = el("td", "row-actions");
  for (const [op, label] of [["run_now", "Run now"], ["cancel", "Cancel"]]) {
    const button = /** @type {HTMLButtonElement} */ (el("button", `btn btn-sm${op === "cancel" ? " danger" : ""}`, label));
    button.type = "button";
    button.dataset.op = op;
    const row = () => /** @type {HTMLElement | null} */ (button.closest("tr[data-key]"))?.dataset.key || "";
    gate(button, () => can(`job.${op}`, row()));
    actions.append(button, " ");
  }
  const tr = el("tr");
  tr.append(due, job, el("td"), el("td", "mono"), el("td", "num"), actions);
  return /** @type {HTMLTableRowElement} */ (tr);
}

/** @param {HTMLTableRowElement} tr @param {any} row */
function update(tr, row) {
  const [due, job, channel, fn, attempt] = tr.cells;
  const until = /** @type {HTMLElement} */ (due.querySelector(".sc-until"));
  until.dataset.until = String(row.run_at);
  setText(/** @type {HTMLElement} */ (due.querySelector(".sc-clock")), ` ${clockTime(row.run_at)}`);
  setText(/** @type {HTMLElement} */ (job.firstElementChild), row.job);
  setText(channel, row.channel);
  setText(fn, row.fn);
  setText(attempt, String(row.attempt));
  for (const button of tr.querySelectorAll("button[data-op]")) {
    const op = /** @type {HTMLElement} */ (button).dataset.op;
    if (op !== "open") button.setAttribute("aria-label", `${op === "run_now" ? "Run now" : "Cancel"} ${row.job}`);
    regate(/** @type {HTMLElement} */ (button)); // its job is known now: its source may not do this
  }
}
