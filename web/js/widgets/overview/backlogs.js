// @ts-check
/**
 * Channel Backlogs (`backlogs`, top five): the channel, its queue, the oldest job's age (ticking), a bar of
 * that age against the channel's SLA (capped at 100 %, the ratio in words), the live runners consuming it,
 * and quick actions (purge, clear stuck: both two-phase, so each opens the confirmation with what it would
 * touch). The bar and ratio follow the ticking age between pushes.
 */
import { perform } from "../../action.js";
import { now, span } from "../../clock.js";
import { can, canClearStuck } from "../../commands.js";
import { count, el, setText, slaGrade, slaWords } from "../../format.js";
import { gate } from "../../gate.js";
import { field, setAttr, syncList } from "./list.js";

/** The visible line that lists why the quick actions are disabled (overview.html). */
const NOTE = "backlog-actions-note";

let ticking = 0;

/**
 * @param {HTMLElement} root
 * @param {{rows: Record<string, any>, order: string[], channels: number}} data
 */
export function render(root, data) {
  const list = field(root, "rows");
  syncList(list, data, create, update);
  const shown = data.order.length;
  setText(
    field(root, "summary"),
    shown ? `${shown} of ${count(data.channels)} channels` : `${count(data.channels)} channels, none with queued jobs`,
  );
  field(root, "empty").hidden = shown > 0;
  refreshBars(list);
  if (!ticking) ticking = window.setInterval(() => refreshBars(document), 1000);
}

/** @param {any} row @param {string} key */
function create(row, key) {
  const li = el("li", "backlog");
  const top = el("div", "backlog-top");
  top.append(el("span", "badge channel"), el("span", "badge paused"), el("span", "backlog-queued"), el("span", "backlog-runners"));
  const sla = el("div", "backlog-sla");
  const bar = el("div", "bar");
  bar.setAttribute("aria-hidden", "true");
  bar.append(el("div", "bar-fill"));
  sla.append(bar, el("span", "ratio"));
  const meta = el("div", "backlog-meta small");
  const age = el("span", "age");
  meta.append("oldest waiting ", age, el("span", "sla-text"));
  const actions = el("div", "backlog-actions");
  const purge = /** @type {HTMLButtonElement} */ (el("button", "btn small danger", "Purge"));
  purge.type = "button";
  purge.setAttribute("aria-label", `Purge channel ${key}`);
  gate(purge, () => can("channel.purge", key), { note: NOTE, label: "Purge" });
  purge.addEventListener("click", () =>
    perform("channel.purge", { channel: key }, { title: `Purge channel ${key}`, verb: "Purge", button: purge, twoPhase: true }),
  );
  const stuck = /** @type {HTMLButtonElement} */ (el("button", "btn small danger", "Clear stuck"));
  stuck.type = "button";
  stuck.setAttribute("aria-label", `Clear stuck jobs of channel ${key}`);
  gate(stuck, () => canClearStuck(key), { note: NOTE, label: "Clear stuck" });
  stuck.addEventListener("click", () =>
    perform("channel.clear_stuck", { channel: key, older_than: 60 }, {
      title: `Clear stuck jobs of ${key}`,
      verb: "Clear stuck jobs",
      button: stuck,
      twoPhase: true,
    }),
  );
  actions.append(purge, stuck);
  const view = /** @type {HTMLAnchorElement} */ (el("a", "btn small", "View jobs"));
  view.href = `/admin/jobs/table?q=${encodeURIComponent(`channel:${key}`)}`;
  view.setAttribute("aria-label", `View jobs of channel ${key}`);
  actions.append(view);
  li.append(top, sla, meta, actions);
  return li;
}

/** @param {HTMLElement} li @param {any} row */
function update(li, row) {
  const [channel, paused, queued, runners] = /** @type {HTMLElement[]} */ ([...li.children[0].children]);
  setText(channel, row.channel);
  paused.hidden = !row.paused;
  setText(paused, "paused");
  setText(queued, `${count(row.queued)} queued${row.inflight ? ` · ${count(row.inflight)} running` : ""}`);
  setText(runners, row.runners ? `${row.runners} live runner${row.runners === 1 ? "" : "s"}` : "no live runner");
  setAttr(runners, "class", `backlog-runners${row.runners ? "" : " none"}`);
  const age = /** @type {HTMLElement} */ (li.querySelector(".age"));
  if (typeof row.oldest === "number") age.dataset.since = String(row.oldest);
  else {
    delete age.dataset.since;
    setText(age, "–");
  }
  setText(/** @type {HTMLElement} */ (li.querySelector(".sla-text")), ` · SLA ${span(row.sla)}`);
  li.dataset.oldest = typeof row.oldest === "number" ? String(row.oldest) : "";
  li.dataset.sla = String(row.sla);
}

/** Redraw every backlog bar and ratio from the oldest job's age now. @param {ParentNode} scope */
function refreshBars(scope) {
  const t = now();
  for (const node of scope.querySelectorAll(".backlog[data-sla]")) {
    const li = /** @type {HTMLElement} */ (node);
    const oldest = Number(li.dataset.oldest);
    const sla = Number(li.dataset.sla);
    const fill = /** @type {HTMLElement} */ (li.querySelector(".bar-fill"));
    const ratioNode = /** @type {HTMLElement} */ (li.querySelector(".ratio"));
    if (!li.dataset.oldest || !Number.isFinite(oldest) || !(sla > 0)) {
      setText(ratioNode, "no age");
      fill.style.width = "0%";
      continue;
    }
    const ratio = Math.max(0, t - oldest) / sla;
    const width = `${Math.min(100, ratio * 100).toFixed(1)}%`;
    if (fill.style.width !== width) fill.style.width = width;
    const grade = slaGrade(ratio);
    setText(ratioNode, slaWords(ratio));
    setAttr(fill, "class", `bar-fill ${["ok", "warn", "bad"][grade]}`);
    setAttr(li, "data-level", ["within", "over", "critical"][grade]);
  }
}
