// @ts-check
/**
 * A runner's recent log lines (`runner.logs`, docs/protocol.md 4.4), in a modal: time, level (in words,
 * coloured too) and message, newest last as a log reads, with a level filter and a Refresh that asks again.
 * Loaded on first use.
 */
import { command } from "./commands.js";
import { button, openDialog } from "./dialog.js";
import { clockTime, el, setText } from "./format.js";
import { toastAck } from "./toast.js";

const LINES = 200; // the runner keeps at most 500

/**
 * The lines of a logs ack: the runner's reply `{lines}`, directly or as the one reply of a runner command.
 * @param {any} result
 * @returns {{ts: number, level: string, msg: string}[]}
 */
function linesOf(result) {
  if (Array.isArray(result?.lines)) return result.lines;
  const reply = Array.isArray(result?.replies) ? result.replies.find((/** @type {any} */ r) => r.ok) : null;
  return Array.isArray(reply?.result?.lines) ? reply.result.lines : [];
}

/** @param {string} runner @param {HTMLElement | null} opener */
export function openLogs(runner, opener) {
  const dlg = openDialog({ title: `Logs of ${runner}`, wide: true, opener, className: "ad-logs" });
  const tools = el("div", "al-tools");
  const level = /** @type {HTMLSelectElement} */ (el("select", "input"));
  level.setAttribute("aria-label", "Show levels");
  for (const [value, label] of [["", "Every level"], ["warning", "Warnings and errors"], ["error", "Errors only"]]) {
    const option = /** @type {HTMLOptionElement} */ (el("option", "", label));
    option.value = value;
    level.append(option);
  }
  const status = el("p", "al-status muted");
  status.setAttribute("role", "status");
  tools.append(level, status);
  const wrap = el("div", "al-wrap");
  wrap.tabIndex = 0;
  wrap.setAttribute("aria-label", `log lines of ${runner}`);
  const table = el("table", "tbl al-tbl");
  const head = el("tr");
  for (const label of ["Time", "Level", "Message"]) {
    const th = el("th", `al-${label.toLowerCase()}`, label);
    th.setAttribute("scope", "col");
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  table.append(thead, tbody);
  wrap.append(table);
  dlg.body.append(tools, wrap);
  const refresh = button("Refresh");
  const close = button("Close", "primary");
  dlg.foot.append(refresh, close);
  close.addEventListener("click", () => dlg.close());

  /** @type {{ts: number, level: string, msg: string}[]} */
  let lines = [];
  const RANK = /** @type {Record<string, number>} */ ({ debug: 0, info: 1, warning: 2, warn: 2, error: 3, critical: 4 });
  const draw = () => {
    const min = RANK[level.value] ?? 0;
    const shown = lines.filter((l) => (RANK[String(l.level).toLowerCase()] ?? 1) >= min);
    tbody.replaceChildren(
      ...shown.map((l) => {
        const tr = el("tr");
        const lv = String(l.level || "info").toLowerCase();
        const badge = el("span", `badge lv-${lv}`, lv);
        const levelCell = el("td");
        levelCell.append(badge);
        const msg = el("td", "al-msg", String(l.msg ?? ""));
        msg.title = String(l.msg ?? "");
        tr.append(el("td", "al-time", typeof l.ts === "number" ? clockTime(l.ts) : "–"), levelCell, msg);
        return tr;
      }),
    );
    setText(status, lines.length ? `${shown.length} of ${lines.length} most recent lines` : "The runner sent no log lines.");
    wrap.scrollTop = wrap.scrollHeight; // the newest lines are at the bottom, as in a terminal
  };
  level.addEventListener("change", draw);

  const load = async () => {
    refresh.disabled = true;
    setText(status, "Asking the runner…");
    const ack = await command("runner.logs", { runner, lines: LINES });
    refresh.disabled = false;
    if (!dlg.isOpen()) return;
    if (!ack.ok) {
      setText(status, `No logs: ${ack.error?.message || "refused"}`);
      toastAck(ack, `Logs of ${runner}`);
      return;
    }
    lines = linesOf(ack.result);
    draw();
  };
  refresh.addEventListener("click", load);
  close.focus();
  load();
}
