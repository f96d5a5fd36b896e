// @ts-check
/**
 * Widget keys: a widget's name and, for a parametrized view, its parameters, spelled exactly as the
 * server spells them (server/protocol.py view_key): parameters sorted by name, values encoded with
 * encodeURIComponent, empty ones left out. Every page that shows the same view shares one server feed.
 */

/**
 * @param {string} name
 * @param {Record<string, string | number | null | undefined>} [params]
 * @returns {string}
 */
export function viewKey(name, params = {}) {
  const items = Object.entries(params)
    .filter(([, v]) => v !== "" && v !== null && v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!items.length) return name;
  return `${name}?${items.map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join("&")}`;
}
