// @ts-check
/**
 * A wall has no scrolling: a table of rows shows the rows that fit its card whole, and hides the rest (they
 * keep their place and their nodes, so nothing is made or dropped when the screen or the data changes).
 */

/**
 * Mark the rows of `root`'s table that do not fit inside `root` with `data-cut="true"` (hidden by wall.css).
 * @param {HTMLElement} root the card, which clips its content
 * @returns {number} how many rows show
 */
export function fitRows(root) {
  const tbody = /** @type {HTMLTableSectionElement | null} */ (root.querySelector("tbody"));
  if (!tbody) return 0;
  const bottom = root.getBoundingClientRect().bottom - parseFloat(getComputedStyle(root).paddingBottom || "0");
  let shown = 0;
  for (const tr of tbody.rows) {
    const cut = tr.getBoundingClientRect().bottom > bottom + 1;
    if ((tr.dataset.cut === "true") !== cut) tr.dataset.cut = String(cut);
    if (!cut) shown += 1;
  }
  return shown;
}
