// @ts-check
/**
 * One runner's actions (drain, undrain, restart, shutdown, ping, logs), the same from its card, its context menu
 * and its detail drawer: a restart or a shutdown, which cannot be taken back, shows what it will do and asks; a
 * drain or undrain is done at once with an undo in its toast.
 */
import { notify, openLogs, perform } from "./action.js";
import { canRunners } from "./commands.js";

export const VERBS = /** @type {Record<string, string>} */ ({
  drain: "Drain",
  undrain: "Undrain",
  restart: "Restart",
  shutdown: "Shut down",
  ping: "Ping",
});

/** The action that takes a reversible one back. */
const REVERSE = /** @type {Record<string, string>} */ ({ drain: "undrain", undrain: "drain" });

/**
 * Do runner action `op` on one runner.
 * @param {string} op drain, undrain, restart, shutdown, ping or logs @param {string} runner @param {HTMLElement} opener
 */
export function runnerAction(op, runner, opener) {
  if (op === "logs") {
    openLogs(runner, opener);
    return;
  }
  const action = `runner.${op}`;
  const verdict = canRunners(action, 1);
  if (!verdict.ok) {
    notify("error", `${VERBS[op]} ${runner}: ${verdict.reason}`);
    return;
  }
  const back = REVERSE[op];
  perform(action, { runners: [runner] }, {
    twoPhase: verdict.two_phase || op === "restart" || op === "shutdown",
    title: `${VERBS[op]} runner ${runner}`,
    verb: VERBS[op],
    button: opener,
    undo: back && { label: `Undo (${VERBS[back].toLowerCase()})`, action: `runner.${back}`, args: { runners: [runner] },
                    title: `${VERBS[back]} runner ${runner}` },  // prettier-ignore
  });
}
