// @ts-check
/**
 * Message shapes of the websocket protocol (docs/protocol.md section 3), mirrored from server/protocol.py.
 * @typedef {{type: "welcome", v: number, epoch: string, now: number, tick_ms: number, beat_s: number, widgets: string[], server: string, source: string}} Welcome
 * @typedef {{type: "snapshot" | "patch", w: string, seq: number, data: any}} WidgetFrame
 * @typedef {{type: "batch", now: number, frames: WidgetFrame[]}} Batch
 * @typedef {{type: "beat", now: number}} Beat
 * @typedef {{type: "pong", t: number, now: number}} Pong
 * @typedef {{type: "error", code: string, message: string, ref: string | null}} ErrorFrame
 * @typedef {Welcome | Batch | Beat | Pong | ErrorFrame} ServerMessage
 */
export const PROTOCOL_VERSION = 1;

/** Close codes after which the page must not reconnect on its own. */
export const NO_RECONNECT = new Set([1008]);
/** Close code meaning "this page speaks an old protocol": reload it. */
export const RELOAD = 4400;
