// @ts-check
/**
 * The operation forms of the Job Operations Center (also opened from the Dashboard's Operations panel and
 * the Runners page): Run Simple Job, Run Test Batch, Broadcast, Clear Stuck, Purge Channel, Cleanup
 * Consumers. Each checks its input in the browser before anything is sent (a payload that is not a JSON
 * object never leaves the page), then sends its command (action.js `perform`): one-phase ones from the form,
 * two-phase ones through the confirm dialog, which shows what they would touch first.
 *
 * Channel choices come from the live `channels` widget; a page that does not show it watches it while a
 * form is open.
 */
import { socket } from "./app.js";
import { perform } from "./action.js";
import { canClearStuck } from "./commands.js";
import { button, openDialog } from "./dialog.js";
import { count, el, setText } from "./format.js";

/** @typedef {import("./dialog.js").Dialog} Dialog */
/** @typedef {{rows: Record<string, any>, order: string[]}} Channels */

const CONFIG_MAX_KEYS = 20; // docs/protocol.md 4.4, broadcast
const MESSAGE_MAX = 500;
let fieldSeq = 0;

/**
 * Open form `name`, starting from `preset`.
 * @param {"run" | "batch" | "broadcast" | "stuck" | "purge" | "cleanup" | "rate"} name
 * @param {Record<string, any>} preset
 * @param {HTMLElement | null} opener
 */
export function open(name, preset, opener) {
  FORMS[name](preset, opener);
}

// -- the live channel list -----------------------------------------------------------------------------

/**
 * Call `fn` with the `channels` widget's data now (if held) and at every change, until the returned stop.
 * @param {(data: Channels) => void} fn
 */
function watchChannels(fn) {
  const key = "channels";
  const added = !socket.wanted.has(key);
  if (added) socket.watch([key]);
  const held = socket.data(key);
  if (held) fn(held);
  /** @param {Event} event */
  const on = (event) => {
    const { name, data } = /** @type {CustomEvent} */ (event).detail;
    if (name === key && data) fn(data);
  };
  socket.addEventListener("widget", on);
  return () => {
    socket.removeEventListener("widget", on);
    if (added) socket.unwatch([key]);
  };
}

/**
 * Keep `select`'s options in line with the live channels, keeping the choice; `label` words each option.
 * @param {HTMLSelectElement} select @param {Channels} data @param {(row: any) => string} label
 */
function syncChannelOptions(select, data, label) {
  const keep = select.value || select.dataset.want || "";
  const fixed = [...select.options].filter((o) => o.dataset.fixed);
  const names = [...(data.order || [])].sort();
  if (keep && !names.includes(keep)) names.unshift(keep); // a preset channel not (yet) reported stays
  const options = names.map((name) => {
    const option = /** @type {HTMLOptionElement} */ (el("option", "", data.rows?.[name] ? label(data.rows[name]) : name));
    option.value = name;
    return option;
  });
  select.replaceChildren(...fixed, ...options);
  if (keep) select.value = keep;
}

// -- form parts ----------------------------------------------------------------------------------------

/**
 * A labelled field with a hint and an error line, both tied to the control by aria-describedby.
 * @param {string} label @param {HTMLElement} control @param {string} [hint]
 */
function fieldBox(label, control, hint = "") {
  const id = `af-${++fieldSeq}`;
  control.id = id;
  const box = el("div", "af-field");
  const lab = el("label", "af-label", label);
  lab.setAttribute("for", id);
  const hintLine = el("p", "af-hint", hint);
  hintLine.id = `${id}-hint`;
  hintLine.hidden = !hint;
  const error = el("p", "af-error");
  error.id = `${id}-error`;
  error.hidden = true;
  control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  box.append(lab, control, hintLine, error);
  return box;
}

/** Show (or clear) a field's error. @param {HTMLElement} control @param {string} text */
function setError(control, text) {
  const error = /** @type {HTMLElement | null} */ (document.getElementById(`${control.id}-error`));
  if (error) {
    setText(error, text);
    error.hidden = !text;
  }
  if (text) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

/** @param {string} type @param {Record<string, string>} [attrs] */
function input(type, attrs = {}) {
  const node = /** @type {HTMLInputElement} */ (el("input", "input"));
  node.type = type;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/**
 * A form dialog: its fields, a submit button and Cancel. `submit` returns false to keep the form open.
 * @param {{title: string, intro?: string, danger?: boolean, submitLabel: string, opener: HTMLElement | null,
 *   fields: HTMLElement[], submit: (dlg: Dialog, form: HTMLFormElement) => Promise<boolean> | boolean,
 *   onClose?: () => void}} spec
 */
function formDialog({ title, intro, danger = false, submitLabel, opener, fields, submit, onClose }) {
  let busy = false;
  const dlg = openDialog({ title, opener, onCancel: () => !busy, className: "ad-form" });
  const form = /** @type {HTMLFormElement} */ (el("form", "af"));
  form.noValidate = true; // our own checks, with our own words, in the page's error lines
  if (intro) form.append(el("p", "af-intro", intro));
  form.append(...fields);
  const formError = el("p", "af-error af-form-error");
  formError.setAttribute("role", "alert");
  formError.hidden = true;
  form.append(formError);
  dlg.body.append(form);
  const cancel = button("Cancel");
  const go = button(submitLabel, danger ? "danger" : "primary");
  go.type = "submit";
  go.setAttribute("form", (form.id = `${dlg.title.id}-form`));
  dlg.foot.append(cancel, go);
  cancel.addEventListener("click", () => {
    if (!busy) dlg.close("cancel");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    go.disabled = true;
    go.setAttribute("aria-busy", "true");
    let close = false;
    try {
      close = await submit(dlg, form);
    } finally {
      busy = false;
      go.disabled = false;
      go.removeAttribute("aria-busy");
    }
    if (close) dlg.close("done");
  });
  dlg.closed.then(() => onClose?.());
  const first = /** @type {HTMLElement | null} */ (form.querySelector("input, select, textarea"));
  (first || go).focus();
  return { dlg, form, formError };
}

/** @param {HTMLElement} node @param {string} text */
function formFail(node, text) {
  setText(node, text);
  node.hidden = !text;
}

/** Move focus to the first field with an error; returns whether there was one. @param {HTMLFormElement} form */
function focusInvalid(form) {
  const bad = /** @type {HTMLElement | null} */ (form.querySelector('[aria-invalid="true"]'));
  bad?.focus();
  return Boolean(bad);
}

/**
 * A whole number in [min, max] from `node`, or an error message.
 * @param {HTMLInputElement} node @param {number} min @param {number} max @param {string} what
 * @returns {number | string}
 */
function wholeNumber(node, min, max, what) {
  const text = node.value.trim();
  const n = Number(text);
  if (!text || !Number.isInteger(n) || n < min || n > max) return `${what}: a whole number from ${count(min)} to ${count(max)}`;
  return n;
}

// -- Run Simple Job -------------------------------------------------------------------------------------

/**
 * Parse a job payload: a JSON object, or an error message naming what is wrong.
 * @param {string} text
 * @returns {{ok: boolean, value: Record<string, any>, error: string}}
 */
export function parsePayload(text) {
  let value;
  try {
    value = JSON.parse(text.trim() || "{}");
  } catch (error) {
    return { ok: false, value: {}, error: `not valid JSON: ${/** @type {Error} */ (error).message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, value: {}, error: "the payload must be a JSON object, e.g. {\"user_id\": 42}" };
  }
  return { ok: true, value, error: "" };
}

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function runForm(preset, opener) {
  const fn = input("text", { maxlength: "200", autocomplete: "off", spellcheck: "false", placeholder: "module.function" });
  fn.classList.add("mono");
  fn.name = "fn";
  fn.value = preset.fn || "";
  const channel = /** @type {HTMLSelectElement} */ (el("select", "input"));
  channel.name = "channel";
  channel.dataset.want = preset.channel || "";
  const payload = /** @type {HTMLTextAreaElement} */ (el("textarea", "input mono"));
  payload.name = "payload";
  payload.rows = 6;
  payload.spellcheck = false;
  payload.value = preset.payload || "{}";
  const cid = input("text", { maxlength: "200", autocomplete: "off", spellcheck: "false", placeholder: "optional" });
  cid.name = "cid";
  cid.classList.add("mono");
  const attempts = input("number", { min: "1", max: "20", step: "1", placeholder: "default" });
  attempts.name = "max_attempts";

  const checkPayload = () => {
    const parsed = parsePayload(payload.value);
    setError(payload, parsed.ok ? "" : `Payload: ${parsed.error}`);
    return parsed;
  };
  payload.addEventListener("input", checkPayload);
  fn.addEventListener("input", () => setError(fn, ""));

  const stop = watchChannels((data) => {
    syncChannelOptions(channel, data, (row) => `${row.channel} (${count(row.queued)} queued, ${row.runners} runner${row.runners === 1 ? "" : "s"})`);
    setError(channel, channel.options.length ? "" : "No channel has reported yet: a job needs a channel.");
  });

  const { formError } = formDialog({
    title: "Run Simple Job",
    intro: "Enqueues one job through the job system's run command; it shows up as queued like any other.",
    submitLabel: "Run job",
    opener,
    fields: [
      fieldBox("Function", fn, "the job's function name, as the runners know it"),
      fieldBox("Channel", channel, "the channels jobpulse sees now"),
      fieldBox("Payload (JSON object)", payload, "checked here before it is sent"),
      fieldBox("Correlation id", cid, "optional: find the job later by it"),
      fieldBox("Max attempts", attempts, "optional, 1 to 20"),
    ],
    onClose: stop,
    submit: async (_dlg, form) => {
      const parsed = checkPayload();
      setError(fn, fn.value.trim() ? "" : "Function: required");
      setError(channel, channel.value ? "" : "Channel: choose one");
      /** @type {Record<string, any>} */
      const args = { fn: fn.value.trim(), channel: channel.value, payload: parsed.ok ? parsed.value : {} };
      if (cid.value.trim()) args.cid = cid.value.trim();
      if (attempts.value.trim()) {
        const n = wholeNumber(attempts, 1, 20, "Max attempts");
        setError(attempts, typeof n === "string" ? n : "");
        if (typeof n === "number") args.max_attempts = n;
      } else setError(attempts, "");
      if (focusInvalid(form)) return false; // nothing is sent while a field is wrong
      formFail(formError, "");
      const ack = await perform("job.run", args, { title: "Run job", twoPhase: false });
      if (ack && !ack.ok) formFail(formError, ack.error?.message || "refused");
      return Boolean(ack?.ok);
    },
  });
}

// -- Run Test Batch -------------------------------------------------------------------------------------

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function batchForm(preset, opener) {
  const all = input("checkbox");
  all.checked = true;
  const allLabel = el("label", "af-check");
  allLabel.append(all, " Every channel");
  const list = el("div", "af-checks");
  list.setAttribute("role", "group");
  list.setAttribute("aria-label", "Channels");
  const box = el("fieldset", "af-field af-fieldset");
  box.append(el("legend", "af-label", "Channels"), allLabel, list);
  const n = input("number", { min: "1", max: "100", step: "1" });
  n.value = String(preset.count || 5);
  const fn = input("text", { maxlength: "200", spellcheck: "false", autocomplete: "off" });
  fn.classList.add("mono");
  fn.value = preset.fn || "jobpulse.test";
  const error = el("p", "af-error");
  error.hidden = true;
  box.append(error);

  /** @type {Set<string>} */
  const picked = new Set();
  const stop = watchChannels((data) => {
    const names = [...(data.order || [])].sort();
    const boxes = names.map((name) => {
      const label = el("label", "af-check");
      const cb = input("checkbox");
      cb.value = name;
      cb.checked = picked.has(name);
      cb.disabled = all.checked;
      cb.addEventListener("change", () => (cb.checked ? picked.add(name) : picked.delete(name)));
      label.append(cb, ` ${name}`);
      return label;
    });
    list.replaceChildren(...boxes);
  });
  all.addEventListener("change", () => {
    for (const cb of list.querySelectorAll("input")) /** @type {HTMLInputElement} */ (cb).disabled = all.checked;
  });

  formDialog({
    title: "Run Test Batch",
    intro: "Queues a few test jobs on each chosen channel, to check that runners take and finish work end to end.",
    submitLabel: "Run batch",
    opener,
    fields: [box, fieldBox("Jobs per channel", n, "1 to 100"), fieldBox("Function", fn, "what the test jobs run")],
    onClose: stop,
    submit: async (_dlg, form) => {
      const channels = all.checked ? "*" : [...picked];
      const none = !all.checked && !picked.size;
      setText(error, none ? "Channels: choose at least one, or every channel" : "");
      error.hidden = !none;
      const c = wholeNumber(n, 1, 100, "Jobs per channel");
      setError(n, typeof c === "string" ? c : "");
      if (none || focusInvalid(form)) return false;
      const args = { channels, count: c, fn: fn.value.trim() || "jobpulse.test" };
      const ack = await perform("job.batch", args, { title: "Run test batch", twoPhase: false });
      return Boolean(ack?.ok);
    },
  });
}

// -- Broadcast ------------------------------------------------------------------------------------------

/** A config value as typed: true/false, a number, null, else the text. @param {string} text */
function scalar(text) {
  const t = text.trim();
  if (t === "true") return true;
  if (t === "false") return false;
  if (t === "null") return null;
  if (t !== "" && Number.isFinite(Number(t))) return Number(t);
  return text;
}

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function broadcastForm(preset, opener) {
  const message = /** @type {HTMLTextAreaElement} */ (el("textarea", "input"));
  message.rows = 3;
  message.maxLength = MESSAGE_MAX;
  message.value = preset.message || "";
  const rows = el("div", "af-kv");
  const add = button("Add a setting");
  add.classList.add("btn-sm");
  const kvBox = el("fieldset", "af-field af-fieldset");
  const kvError = el("p", "af-error");
  kvError.hidden = true;
  kvBox.append(el("legend", "af-label", "Config (optional)"), rows, add, kvError);
  const addRow = () => {
    if (rows.childElementCount >= CONFIG_MAX_KEYS) return;
    const row = el("div", "af-kv-row");
    const k = input("text", { placeholder: "key", "aria-label": "setting name", maxlength: "100", spellcheck: "false" });
    const v = input("text", { placeholder: "value", "aria-label": "setting value", maxlength: "500", spellcheck: "false" });
    const drop = button("Remove");
    drop.classList.add("btn-sm");
    drop.addEventListener("click", () => {
      row.remove();
      add.disabled = false;
      add.focus();
    });
    row.append(k, v, drop);
    rows.append(row);
    add.disabled = rows.childElementCount >= CONFIG_MAX_KEYS;
    k.focus();
  };
  add.addEventListener("click", addRow);

  formDialog({
    title: "Broadcast to Runners",
    intro: "Sends a message and/or config values to every live runner. You will see how many it reaches before it goes out.",
    submitLabel: "Preview broadcast…",
    danger: true,
    opener,
    fields: [fieldBox("Message", message, `up to ${MESSAGE_MAX} characters`), kvBox],
    submit: async (dlg, form) => {
      /** @type {Record<string, any>} */
      const config = {};
      let bad = "";
      for (const row of rows.children) {
        const [k, v] = /** @type {HTMLInputElement[]} */ ([...row.querySelectorAll("input")]);
        const key = k.value.trim();
        if (!key && !v.value.trim()) continue;
        if (!key) bad = "every setting needs a name";
        else if (Object.hasOwn(config, key)) bad = `the setting ${key} is there twice`;
        else config[key] = scalar(v.value);
      }
      setText(kvError, bad ? `Config: ${bad}` : "");
      kvError.hidden = !bad;
      const text = message.value.trim();
      const empty = !text && !Object.keys(config).length;
      setError(message, empty ? "Message: write a message, or add a setting" : "");
      if (bad || focusInvalid(form)) return false;
      /** @type {Record<string, any>} */
      const args = {};
      if (text) args.message = text;
      if (Object.keys(config).length) args.config = config;
      dlg.close("done");
      await perform("broadcast", args, { title: "Broadcast to runners", verb: "Broadcast", button: opener, twoPhase: true });
      return false;
    },
  });
}

// -- Clear Stuck, Purge, Cleanup (two-phase) ------------------------------------------------------------

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function stuckForm(preset, opener) {
  const channel = /** @type {HTMLSelectElement} */ (el("select", "input"));
  const every = /** @type {HTMLOptionElement} */ (el("option", "", "Every channel"));
  every.value = "";
  every.dataset.fixed = "1";
  const allowed = canClearStuck(null);
  if (!allowed.ok) {
    every.disabled = true;
    every.textContent = `Every channel (${allowed.reason})`;
  }
  channel.append(every);
  channel.dataset.want = preset.channel || "";
  const older = input("number", { min: "10", max: "86400", step: "1" });
  older.value = String(preset.older_than || 60);
  const stop = watchChannels((data) => {
    syncChannelOptions(channel, data, (row) => `${row.channel} (${count(row.inflight)} in flight)`);
    if (!channel.value && every.disabled && channel.options.length > 1) channel.selectedIndex = 1;
  });
  formDialog({
    title: "Clear Stuck Jobs",
    intro: "Takes back in-flight jobs that started too long ago or whose runner stopped beating: requeued when attempts remain, else expired. You will see how many first.",
    submitLabel: "Preview…",
    danger: true,
    opener,
    fields: [fieldBox("Channel", channel), fieldBox("Started more than (seconds ago)", older, "10 to 86,400; default 60")],
    onClose: stop,
    submit: async (dlg, form) => {
      const t = wholeNumber(older, 10, 86400, "Threshold");
      setError(older, typeof t === "string" ? t : "");
      const which = channel.value || null;
      const verdict = canClearStuck(which);
      setError(channel, verdict.ok ? "" : verdict.reason);
      if (focusInvalid(form)) return false;
      dlg.close("done");
      await perform("channel.clear_stuck", { channel: which, older_than: t }, {
        title: `Clear stuck jobs${which ? ` of ${which}` : " of every channel"}`,
        verb: "Clear stuck jobs",
        button: opener,
        twoPhase: true,
      });
      return false;
    },
  });
}

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function purgeForm(preset, opener) {
  const channel = /** @type {HTMLSelectElement} */ (el("select", "input"));
  channel.dataset.want = preset.channel || "";
  const stop = watchChannels((data) => {
    syncChannelOptions(channel, data, (row) => `${row.channel} (${count(row.queued)} queued)`);
    setError(channel, channel.options.length ? "" : "No channel has reported yet.");
  });
  formDialog({
    title: "Purge Channel",
    intro: "Deletes every queued job of one channel; scheduled and running jobs stay. This cannot be undone: you will see how many jobs first.",
    submitLabel: "Preview purge…",
    danger: true,
    opener,
    fields: [fieldBox("Channel", channel)],
    onClose: stop,
    submit: async (dlg, form) => {
      setError(channel, channel.value ? "" : "Channel: choose one");
      if (focusInvalid(form)) return false;
      const name = channel.value;
      dlg.close("done");
      await purgeChannel(name, opener);
      return false;
    },
  });
}

/** Purge one channel (straight to the confirmation). @param {string} channel @param {HTMLElement | null} opener */
export function purgeChannel(channel, opener) {
  return perform("channel.purge", { channel }, { title: `Purge channel ${channel}`, verb: "Purge", button: opener, twoPhase: true });
}

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function cleanupForm(preset, opener) {
  const older = input("number", { min: "1", max: "2592000", step: "1" });
  older.value = String(preset.older_than || 300);
  formDialog({
    title: "Cleanup Consumers",
    intro: "Forgets runners that went silent without saying they stopped, and takes back what they left running. You will see which first.",
    submitLabel: "Preview cleanup…",
    danger: true,
    opener,
    fields: [fieldBox("Silent for at least (seconds)", older, "default 300")],
    submit: async (dlg, form) => {
      const t = wholeNumber(older, 1, 2592000, "Silent for");
      setError(older, typeof t === "string" ? t : "");
      if (focusInvalid(form)) return false;
      dlg.close("done");
      await perform("runners.cleanup", { older_than: t }, { title: "Cleanup consumers", verb: "Clean up", button: opener, twoPhase: true });
      return false;
    },
  });
}

/** @param {Record<string, any>} preset @param {HTMLElement | null} opener */
function rateForm(preset, opener) {
  const fn = input("text", { maxlength: "300", spellcheck: "false", autocomplete: "off" });
  fn.value = preset.fn || "";
  const rate = input("text", { maxlength: "20", spellcheck: "false", autocomplete: "off", placeholder: "10/m" });
  rate.value = preset.rate || "";
  formDialog({
    title: "Rate limit a task",
    intro: "Every live runner that runs this function takes the new limit (Celery's rate_limit). You will see how many runners first.",
    submitLabel: "Preview…",
    opener,
    fields: [
      fieldBox("Function", fn),
      fieldBox("Rate", rate, "tasks per second, minute or hour: 5/s, 10/m, 100/h; 0 removes the limit"),
    ],
    submit: async (dlg, form) => {
      setError(fn, fn.value.trim() ? "" : "Function: required");
      setError(rate, /^(0|[1-9][0-9]{0,8}(\/[smh])?)$/.test(rate.value.trim()) ? "" : "Rate: like 10/m, 5/s, 100/h or 0");
      if (focusInvalid(form)) return false;
      dlg.close("done");
      const args = { fn: fn.value.trim(), rate: rate.value.trim() };
      await perform("task.rate_limit", args, { title: `Rate limit ${args.fn}`, verb: "Rate limit", button: opener, twoPhase: true });
      return false;
    },
  });
}

const FORMS = { run: runForm, batch: batchForm, broadcast: broadcastForm, stuck: stuckForm, purge: purgeForm, cleanup: cleanupForm, rate: rateForm };
