// @ts-check
/**
 * The job search language on the page side (server/streams/core/search.py is the authority): enough to read
 * and rewrite one field's term, so the filter controls and the search box edit the same query string.
 */

/** Field names and their aliases, as the server resolves them. */
export const FIELDS = /** @type {Record<string, string>} */ ({
  status: "status",
  state: "status",
  channel: "channel",
  ch: "channel",
  queue: "channel",
  func: "fn",
  fn: "fn",
  function: "fn",
  task: "fn",
  runner: "runner",
  worker: "runner",
  cid: "cid",
  id: "job",
  job: "job",
  error: "error",
  attempt: "attempt",
  source: "source",
  system: "source",
});

/** The name a control writes for each resolved field. */
const WRITE_AS = /** @type {Record<string, string>} */ ({
  status: "status",
  channel: "channel",
  fn: "func",
  runner: "runner",
  source: "source",
});

const TERM = /(-?)(?:([A-Za-z_]+):)?(?:"([^"]*)"|(\S+))/g;

/** @typedef {{text: string, negate: boolean, field: string, value: string}} Term */

/** Split a query into its terms, each with its original text. @param {string} q @returns {Term[]} */
export function terms(q) {
  /** @type {Term[]} */
  const out = [];
  for (const match of q.matchAll(TERM)) {
    const [text, negate, name, quoted, plain] = match;
    const value = quoted ?? plain ?? "";
    const resolved = name === undefined ? "" : FIELDS[name.toLowerCase()] ?? `?${name}`;
    out.push({ text, negate: negate === "-", field: resolved, value });
  }
  return out;
}

/**
 * The value of the one plain (not excluded) term on `field`, "" when there is none, or null when the query
 * says more than one control can show (two such terms).
 * @param {string} q @param {string} fieldName resolved field: status, channel, fn, runner
 */
export function termValue(q, fieldName) {
  const found = terms(q).filter((t) => t.field === fieldName && !t.negate);
  if (found.length > 1) return null;
  return found.length ? found[0].value : "";
}

/**
 * The query with its plain terms on `field` replaced by `field:value` (or removed when `value` is empty);
 * every other term is kept as written.
 * @param {string} q @param {string} fieldName resolved field @param {string} value
 */
export function setTerm(q, fieldName, value) {
  const kept = terms(q)
    .filter((t) => t.field !== fieldName || t.negate)
    .map((t) => t.text);
  const v = value.trim();
  if (v) kept.push(`${WRITE_AS[fieldName] || fieldName}:${/[\s"]/.test(v) ? `"${v.replace(/"/g, "")}"` : v}`);
  return kept.join(" ");
}
