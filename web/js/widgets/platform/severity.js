// @ts-check
/**
 * Status and severity labels shared by the Platform Status page and the wall: every status is written out
 * in words (and an icon), so nothing depends on colour alone.
 */
import { setText } from "../../format.js";

/** @type {Record<string, {label: string, icon: string}>} */
const LEVELS = {
  ok: { label: "OK", icon: "✓" },
  warning: { label: "Warning", icon: "!" },
  critical: { label: "Critical", icon: "✕" },
  info: { label: "Info", icon: "i" },
  error: { label: "Error", icon: "✕" },
};

/** The words for a status or severity (`ok`, `warning`, `critical`, ...). @param {string | undefined} level */
export function levelLabel(level) {
  return LEVELS[level || ""]?.label || (level ? String(level) : "Unknown");
}

/** The icon for a status or severity. @param {string | undefined} level */
export function levelIcon(level) {
  return LEVELS[level || ""]?.icon || "?";
}

/** A known level, for CSS (`data-status`), else "unknown". @param {string | undefined} level */
export function levelKey(level) {
  return level && Object.hasOwn(LEVELS, level) ? level : "unknown";
}

/**
 * Fill a pill: `<span data-status><span class="…-icon"></span><span class="…-text"></span></span>`, in place.
 * @param {HTMLElement} pill
 * @param {string | undefined} level
 * @param {string} [text] the words to show, default the level's label
 */
export function fillPill(pill, level, text) {
  const key = levelKey(level);
  if (pill.dataset.status !== key) pill.dataset.status = key;
  const [icon, words] = pill.children;
  if (icon) setText(icon, levelIcon(level));
  if (words) setText(words, text ?? levelLabel(level));
}
