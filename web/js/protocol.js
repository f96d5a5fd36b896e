// @ts-check
/**
 * Message shapes of the websocket protocol (docs/protocol.md sections 3 and 4), mirrored from server/protocol.py.
 * @typedef {{name: string, role: string, auth: string}} User
 * @typedef {{ok: boolean, two_phase?: boolean, reason?: string, unavailable?: Record<string, string>}} ActionRight
 * @typedef {{type: "welcome", v: number, epoch: string, now: number, tick_ms: number, beat_s: number, widgets: string[],
 *   server: string, source: string, user?: User, actions?: Record<string, ActionRight>}} Welcome
 * @typedef {{type: "snapshot" | "patch", w: string, seq: number, data: any}} WidgetFrame
 * @typedef {{type: "batch", now: number, frames: WidgetFrame[]}} Batch
 * @typedef {{type: "beat", now: number}} Beat
 * @typedef {{type: "pong", t: number, now: number}} Pong
 * @typedef {{type: "error", code: string, message: string, ref: string | null}} ErrorFrame
 * @typedef {{type: "ack", id: string, ok: boolean, phase?: "preview" | "done", action?: string, result?: any,
 *   message?: string, error?: {code: string, message: string} | null, audit?: string, ms?: number}} Ack
 * @typedef {{type: "cmd", id: string, action: string, args: Record<string, any>, phase?: "preview" | "execute",
 *   confirm?: string}} Cmd
 * @typedef {Welcome | Batch | Beat | Pong | ErrorFrame | Ack} ServerMessage
 */
export const PROTOCOL_VERSION = 1;

/** Close code: not signed in, or the session ended; the page goes to /login (section 3.6). */
export const SIGN_IN = 4401;
/** Close code: the upgrade's Origin was refused (cross-site); reconnecting would be refused again. */
export const REFUSED = 4403;
/** Close codes after which the page must not reconnect on its own. */
export const NO_RECONNECT = new Set([1008, SIGN_IN, REFUSED]);
/** Close code meaning "this page speaks an old protocol": reload it. */
export const RELOAD = 4400;
