// @ts-check
/**
 * Job Service Health (`service`): the status pill (OK / Warning / Critical) and, in words and on hover,
 * the rule that set it; the broker's connectivity and round trip; the runners; with several sources, each
 * one's connection.
 */
import { count, el, setText } from "../../format.js";
import { field, setAttr } from "./list.js";

const STATUS = /** @type {Record<string, string>} */ ({ ok: "OK", warning: "Warning", critical: "Critical" });

/** @typedef {{kind?: string, connected: boolean, rtt_ms?: number, error?: string, since?: number, down?: string[]}} Link */

/**
 * @param {HTMLElement} root
 * @param {{status: string, rule?: string, alerts: number, channels: number,
 *   broker: {connected: boolean, rtt_ms?: number, error?: string, since?: number, down?: string[]},
 *   runners: {active: number, stale: number, offline: number, total: number},
 *   sources?: Record<string, Link>, source_order?: string[]}} data
 */
export function render(root, data) {
  const pill = field(root, "pill");
  setText(pill, STATUS[data.status] || data.status);
  setAttr(pill, "class", `pill pill-${data.status}`);
  const why = data.rule ? `Set by the alert “${data.rule}”` : "No open alerts: every rule passes";
  setAttr(pill, "title", why);
  setText(field(root, "rule"), data.rule ? `Set by: ${data.rule}` : "No open alerts: every rule passes");
  setText(field(root, "alerts"), data.alerts === 1 ? "1 open alert" : `${count(data.alerts)} open alerts`);

  const broker = data.broker || { connected: false };
  const badge = field(root, "broker");
  const dbOnly = Array.isArray(broker.down) && broker.down.length === 1 && broker.down[0] === "Postgres";
  const order = data.source_order || [];
  const up = order.filter((label) => data.sources?.[label]?.connected).length;
  const several = order.length > 1;
  setText(
    badge,
    several && up > 0 && up < order.length
      ? `${up} of ${order.length} connected`
      : broker.connected ? "Connected" : dbOnly ? "Database down" : "Broker down",
  );
  setAttr(badge, "class", `badge ${broker.connected ? "online" : "offline"}`);
  setText(
    field(root, "rtt"),
    broker.connected
      ? typeof broker.rtt_ms === "number"
        ? `${broker.rtt_ms.toFixed(2)} ms round trip`
        : "round trip not measured yet"
      : broker.error || "not connected",
  );
  setText(field(root, "broker-for"), broker.connected ? "connected for" : "down for");
  const since = field(root, "broker-since");
  if (typeof broker.since === "number") since.dataset.since = String(broker.since);
  else {
    delete since.dataset.since;
    setText(since, "–");
  }

  const r = data.runners;
  setText(field(root, "active"), count(r.active));
  const problems = [r.stale ? `${r.stale} stale` : "", r.offline ? `${r.offline} offline` : ""].filter(Boolean);
  setText(field(root, "runners"), `of ${count(r.total)}${problems.length ? ` · ${problems.join(" · ")}` : " · none stale or offline"}`);
  setText(field(root, "channels"), count(data.channels));
  drawSources(field(root, "sources"), order, data.sources || {});
}

/** One line a source (several sources): its label and kind, up or down, and why. @param {HTMLElement} list @param {string[]} order @param {Record<string, Link>} links */
function drawSources(list, order, links) {
  list.hidden = order.length < 2;
  if (list.hidden) return;
  const text = order.map((label) => {
    const link = links[label] || { connected: false };
    const state = link.connected
      ? `connected${typeof link.rtt_ms === "number" ? `, ${link.rtt_ms.toFixed(2)} ms` : ""}`
      : `down: ${link.error || "not connected"}`;
    return [label, `${label} (${link.kind || "?"}): ${state}`, link.connected];
  });
  while (list.children.length > text.length) list.lastElementChild?.remove();
  text.forEach(([label, line, connected], i) => {
    const item = /** @type {HTMLElement} */ (list.children[i] || list.appendChild(el("li")));
    item.dataset.source = String(label);
    item.dataset.state = connected ? "up" : "down";
    setText(item, String(line));
  });
}
