// @ts-check
/**
 * The live socket: subscribes to widgets, applies snapshots and patches in seq order, resumes after a
 * reconnect (full-jitter backoff), pauses while the tab is hidden, and reports live / stale / reconnecting.
 * It also carries operator commands (commands.js): it keeps the welcome's user and action rights and hands
 * every `ack` on as an "ack" event.
 */
import { syncClock } from "./clock.js";
import { mergePatch } from "./patch.js";
import { NO_RECONNECT, PROTOCOL_VERSION, REFUSED, RELOAD, SIGN_IN } from "./protocol.js";

/** @typedef {"connecting" | "live" | "stale" | "reconnecting" | "paused" | "closed" | "refused"} Status */

export class LiveSocket extends EventTarget {
  /** @param {string} url @param {string[]} widgets */
  constructor(url, widgets) {
    super();
    this.url = url;
    /** @type {Set<string>} widget keys the page shows */
    this.wanted = new Set(widgets);
    /** @type {Map<string, {seq: number, data: any}>} */
    this.held = new Map();
    /** @type {string | null} */
    this.epoch = null;
    /** @type {Set<string>} widgets waiting for the server to fill a seq gap */
    this.catchingUp = new Set();
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.beatMs = 2000;
    this.lastMessage = 0;
    this.paused = false; // by the operator (Live toggle)
    this.hidden = document.hidden;
    /** @type {Status} */
    this.status = "connecting";
    this.stopped = false;
    /** @type {import("./protocol.js").User | null} who the server says this connection is (section 4.1) */
    this.user = null;
    /** @type {Record<string, import("./protocol.js").ActionRight> | null} null until a welcome named them */
    this.actions = null;
    /** Whether a welcome has arrived on some connection (rights are known, or known to be absent). */
    this.welcomed = false;
    /** Whether the current connection got its welcome (and sent its hello). */
    this.greeted = false;
    document.addEventListener("visibilitychange", () => this.#visibility());
    setInterval(() => this.#checkStale(), 1000);
  }

  connect() {
    this.greeted = false;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = (event) => this.#message(event.data);
    ws.onclose = (event) => this.#closed(event.code, event.reason);
    ws.onopen = () => {
      this.lastMessage = Date.now();
    };
  }

  /** Widgets the page should receive now: none while paused or hidden. */
  get active() {
    return this.paused || this.hidden ? [] : [...this.wanted];
  }

  /** Start receiving widget keys (a filter changed, a modal opened). @param {string[]} keys */
  watch(keys) {
    const added = keys.filter((k) => !this.wanted.has(k));
    for (const key of added) this.wanted.add(key);
    if (added.length && !this.paused && !this.hidden) {
      /** @type {Record<string, number>} */
      const resume = {};
      for (const key of added) {
        const held = this.held.get(key);
        if (held) resume[key] = held.seq;
      }
      this.send({ type: "sub", widgets: added, resume });
    }
  }

  /** Stop receiving widget keys and forget their data. @param {string[]} keys */
  unwatch(keys) {
    const removed = keys.filter((k) => this.wanted.has(k));
    for (const key of removed) {
      this.wanted.delete(key);
      this.held.delete(key);
      this.catchingUp.delete(key);
    }
    if (removed.length) this.send({ type: "unsub", widgets: removed });
  }

  /** The data held for a widget key, if any. @param {string} key */
  data(key) {
    return this.held.get(key)?.data;
  }

  /** Send a frame if the socket is open; returns whether it went out. @param {object} frame */
  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Open and past its welcome: a command sent now reaches a server that knows who we are. */
  get ready() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN && this.greeted);
  }

  /** Ask for fresh snapshots of every widget (the Resync button). */
  resync() {
    for (const name of this.active) this.held.delete(name);
    this.send({ type: "sub", widgets: this.active, resume: {} });
  }

  /** @param {boolean} paused */
  setPaused(paused) {
    this.paused = paused;
    this.#resubscribe();
  }

  #resume() {
    /** @type {Record<string, number>} */
    const resume = {};
    for (const name of this.active) {
      const held = this.held.get(name);
      if (held) resume[name] = held.seq;
    }
    return resume;
  }

  #resubscribe() {
    if (this.active.length) this.send({ type: "sub", widgets: this.active, resume: this.#resume() });
    else this.send({ type: "unsub", widgets: [...this.wanted] });
    this.#setStatus(this.active.length ? "live" : "paused");
  }

  #visibility() {
    const hidden = document.hidden;
    if (hidden === this.hidden) return;
    this.hidden = hidden;
    this.#resubscribe();
  }

  /** @param {string} text */
  #message(text) {
    this.lastMessage = Date.now();
    /** @type {import("./protocol.js").ServerMessage} */
    const msg = JSON.parse(text);
    switch (msg.type) {
      case "welcome": {
        // Reset the backoff only once the server has welcomed us: a full server accepts, then closes with 1013.
        this.attempt = 0;
        syncClock(msg.now);
        this.beatMs = msg.beat_s * 1000;
        if (msg.v !== PROTOCOL_VERSION) return location.reload();
        const resume = msg.epoch === this.epoch ? this.#resume() : {};
        this.epoch = msg.epoch;
        this.send({ type: "hello", v: PROTOCOL_VERSION, widgets: this.active, epoch: this.epoch, resume });
        this.user = msg.user ?? null;
        this.actions = msg.actions ?? null;
        this.welcomed = true;
        this.greeted = true;
        this.#setStatus(this.active.length ? "live" : "paused");
        // After our hello: commands waiting for a connection (commands.js) may go out now.
        this.dispatchEvent(new CustomEvent("welcome", { detail: msg }));
        break;
      }
      case "ack":
        this.dispatchEvent(new CustomEvent("ack", { detail: msg }));
        break;
      case "batch":
        syncClock(msg.now);
        for (const frame of msg.frames) this.#frame(frame);
        if (this.status === "stale") this.#setStatus("live");
        break;
      case "beat":
      case "pong":
        syncClock(msg.now);
        if (this.status === "stale") this.#setStatus("live");
        break;
      case "error":
        console.warn("jobpulse:", msg.code, msg.message);
        this.dispatchEvent(new CustomEvent("server-error", { detail: msg }));
        break;
    }
  }

  /** @param {import("./protocol.js").WidgetFrame} frame */
  #frame(frame) {
    if (!this.wanted.has(frame.w)) return; // in flight when the page unwatched it: not a gap to fill
    const held = this.held.get(frame.w);
    if (frame.type === "snapshot") {
      this.held.set(frame.w, { seq: frame.seq, data: frame.data });
      this.catchingUp.delete(frame.w);
    } else if (held && frame.seq === held.seq + 1) {
      held.data = mergePatch(held.data, frame.data);
      held.seq = frame.seq;
      this.catchingUp.delete(frame.w);
    } else if (held && frame.seq <= held.seq) {
      return; // already have it
    } else {
      // A gap: ask once for what we miss; the server answers with the patches or a snapshot.
      if (!this.catchingUp.has(frame.w)) {
        this.catchingUp.add(frame.w);
        this.send({ type: "sub", widgets: [frame.w], resume: held ? { [frame.w]: held.seq } : {} });
      }
      return;
    }
    const current = this.held.get(frame.w);
    this.dispatchEvent(new CustomEvent("widget", { detail: { name: frame.w, data: current?.data, kind: frame.type } }));
  }

  /** @param {number} code @param {string} reason */
  #closed(code, reason) {
    this.ws = null;
    this.greeted = false;
    if (code === RELOAD) return location.reload();
    if (code === SIGN_IN) {
      // Not signed in, or the session ended: sign in, then come back to this very view.
      this.#setStatus("closed", "signed out");
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      return;
    }
    if (code === REFUSED) {
      this.#setStatus("refused", reason || "this page's origin may not connect");
      return;
    }
    if (NO_RECONNECT.has(code) || this.stopped) {
      this.#setStatus("closed", reason || `closed (${code})`);
      return;
    }
    this.#setStatus("reconnecting", reason);
    this.catchingUp.clear();
    // Full jitter: a wall of pages does not come back in lockstep after a restart. A full server (1013)
    // gets at least a second between tries; a refusal of this address (4429: too many pages open or
    // connecting from it) at least five, and the backoff keeps growing until a welcome resets it.
    const cap = Math.min(15000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    const floor = code === 4429 ? 5000 : code === 1013 ? 1000 : 0;
    setTimeout(() => this.connect(), floor + Math.random() * cap);
  }

  #checkStale() {
    if (this.status !== "live" || !this.ws) return;
    if (Date.now() - this.lastMessage > this.beatMs * 2.5) this.#setStatus("stale");
  }

  /** @param {Status} status @param {string} [detail] */
  #setStatus(status, detail = "") {
    if (status === this.status && !detail) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status, detail } }));
  }
}
