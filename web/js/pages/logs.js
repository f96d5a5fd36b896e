// @ts-check
/**
 * Service logs (/admin/jobs/logs): jobpulse's own warnings and errors, live. The level and text filters
 * live in the URL (`?level=error&q=rejected`) and keep applying while rows stream in.
 */
import { register, start } from "../app.js";
import * as health from "../widgets/health.js";
import * as logs from "../widgets/overview/logs.js";

const LEVELS = ["all", "warning", "error"];

register("health", health.render);
register("logs", logs.render);

const form = /** @type {HTMLFormElement} */ (document.querySelector("[data-filters]"));
const input = /** @type {HTMLInputElement} */ (form.querySelector("input[name=q]"));
const params = new URLSearchParams(location.search);
let level = LEVELS.includes(params.get("level") || "") ? /** @type {string} */ (params.get("level")) : "all";
input.value = params.get("q") || "";

function apply() {
  for (const button of form.querySelectorAll("[data-level]")) {
    button.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (button).dataset.level === level));
  }
  const q = input.value.trim();
  logs.setFilter({ level, q });
  const next = new URLSearchParams(location.search);
  if (level === "all") next.delete("level");
  else next.set("level", level);
  if (q) next.set("q", q);
  else next.delete("q");
  const search = next.toString();
  const url = `${location.pathname}${search ? `?${search}` : ""}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(history.state, "", url);
}

form.addEventListener("submit", (event) => event.preventDefault());
form.addEventListener("click", (event) => {
  const button = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (event.target).closest("[data-level]"));
  if (!button) return;
  level = button.dataset.level || "all";
  apply();
});
input.addEventListener("input", apply);
input.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && input.value) {
    input.value = "";
    apply();
  }
});

apply();
start();
