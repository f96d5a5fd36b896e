// @ts-check
/** Small formatting helpers shared by the widgets. */

const integer = new Intl.NumberFormat("en-US");

/** @param {number | undefined} n */
export function count(n) {
  return typeof n === "number" ? integer.format(n) : "–";
}

/** @param {string} tag @param {string} [className] @param {string} [text] */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Set text only when it changed, so unchanged nodes are not touched. @param {Element} node @param {string} text */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** @param {number} ts epoch seconds */
export function clockTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/**
 * Briefly highlight a node that changed. An animation, not a class toggle: restarting a CSS animation needs a
 * forced layout per node, which adds up when many rows change in one frame.
 * @param {Element} node
 */
export function flash(node) {
  node.animate([{ backgroundColor: "rgba(37, 99, 235, 0.16)" }, { backgroundColor: "transparent" }], {
    duration: 900,
    easing: "ease-out",
  });
}

/**
 * Link a stylesheet once (pages link only what they always need; dialogs bring their own). Resolves when it
 * has loaded, failed (unstyled beats nothing), or was already linked.
 * @param {string} href an absolute URL, e.g. `new URL("../css/x.css", import.meta.url).href`
 * @returns {Promise<void>}
 */
export function linkStylesheet(href) {
  for (const link of document.querySelectorAll('link[rel="stylesheet"]')) {
    if (/** @type {HTMLLinkElement} */ (link).href === href) return Promise.resolve();
  }
  const link = /** @type {HTMLLinkElement} */ (el("link"));
  link.rel = "stylesheet";
  link.href = href;
  const loaded = new Promise((resolve) => {
    link.addEventListener("load", () => resolve(undefined));
    link.addEventListener("error", () => resolve(undefined));
  });
  document.head.append(link);
  return /** @type {Promise<void>} */ (loaded);
}

/**
 * How far a wait is into its SLA, in the same words on every page: "45% of SLA", "1.0× SLA", "4.7× SLA". Both are
 * rounded down, so the words never say more than the grade (below): 0.999 is "99% of SLA", 1.99 is "1.9× SLA".
 * @param {number} ratio the wait divided by the SLA
 */
export function slaWords(ratio) {
  return ratio >= 1 ? `${(Math.floor(ratio * 10) / 10).toFixed(1)}× SLA` : `${Math.floor(ratio * 100)}% of SLA`;
}

/** 0 within the SLA, 1 over it, 2 at twice it or more (the hot-issue rule's critical). @param {number} ratio */
export function slaGrade(ratio) {
  return ratio >= 2 ? 2 : ratio >= 1 ? 1 : 0;
}

/** The element of `root` marked `data-f="name"`. @param {ParentNode} root @param {string} name */
export function field(root, name) {
  return /** @type {HTMLElement} */ (root.querySelector(`[data-f="${name}"]`));
}
