"""What the browser test modules share: the guarded playwright import, the first-load budget and its
measurement, the websocket probe, DOM tagging, and a small native-protocol source.

"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from playwright.sync_api import CDPSession, ConsoleMessage, ElementHandle, Locator, Page, Response, WebSocket, expect

__all__ = [
    "FIRST_LOAD_BUDGET",
    "WS_PROBE",
    "CDPSession",
    "ElementHandle",
    "FirstLoad",
    "Locator",
    "Page",
    "Source",
    "expect",
    "install_ws_probe",
    "preview_purge",
    "still_tagged",
    "tag",
    "tagged",
    "wait_for_quiet_tick",
]

# A page's first load, HTML + JS + CSS + the first second of websocket data, as a browser downloads it: bodies as
# sent (gzip where the server compresses), websocket frames as they come (no compression). The project's standard
# (DEVELOPERS.md: under 100 KB, on a phone too). Decoded, a ceiling too: a library slipping into the first load
# (uPlot alone is 145 KB) fails it even where gzip would hide most of it.
FIRST_LOAD_BUDGET = 100 * 1024
FIRST_LOAD_DECODED_CEILING = 200 * 1024

# Wraps the page's WebSocket to note, in `window.__e2eWs`: how many messages arrived (`messages`), when the
# last one did (`last`, performance.now()), how many widget frames (patches and snapshots) the batches held
# (`frames`), and every frame the page sent (`sent`). So a test can tell a change the browser made on its
# own (a ticking age) from one a message caused, wait for more updates, and see what the page subscribed to.
WS_PROBE = """
(() => {
  const Native = window.WebSocket;
  window.__e2eWs = { messages: 0, frames: 0, last: -1e9, sent: [] };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => { window.__e2eWs.extensions = this.extensions; });
      this.addEventListener("message", (event) => {
        const probe = window.__e2eWs;
        probe.messages += 1;
        probe.last = performance.now();
        if (typeof event.data === "string" && event.data.startsWith('{"type":"batch"')) {
          probe.frames += (event.data.match(/"type":"(patch|snapshot)"/g) || []).length;
        }
      });
    }
    send(data) {
      window.__e2eWs.sent.push(String(data));
      super.send(data);
    }
  };
})();
"""


def preview_purge(page: Page, channel: str) -> Locator:
    """On the Operations page: the Purge tile's form, `channel` chosen, "Preview purge…"; the confirm dialog."""
    tile_button = page.locator('[data-tile="purge"] .tile-foot button')
    expect(tile_button).to_be_enabled()
    tile_button.click()
    form = page.locator("dialog.ad-form")
    expect(form).to_be_visible()
    form.locator("select").select_option(channel)
    form.get_by_role("button", name="Preview purge…").click()
    confirm = page.locator("dialog.ad-confirm")
    expect(confirm).to_be_visible(timeout=15_000)
    return confirm


def install_ws_probe(page: Page) -> None:
    """Install WS_PROBE in `page` for every document it loads from now on (call it before `goto`)."""
    page.add_init_script(WS_PROBE)


def wait_for_quiet_tick(page: Page, selector: str, quiet_ms: int = 300, timeout: float = 5_000) -> None:
    """Wait until the text at `selector` changes while no websocket message arrived for `quiet_ms`.

    A render after a message also refreshes every age, so only a change in a quiet moment proves
    that the browser ticks the time by itself. Needs WS_PROBE.
    """
    page.evaluate(
        """([selector, quietMs]) => {
            window.__e2eQuietTicks = [];
            const node = document.querySelector(selector);
            let text = node.textContent;
            new MutationObserver(() => {
                if (node.textContent === text) return;
                const quiet = performance.now() - window.__e2eWs.last;
                window.__e2eQuietTicks.push({ from: text, to: node.textContent, quiet, ok: quiet >= quietMs });
                text = node.textContent;
            }).observe(node, { subtree: true, childList: true, characterData: true });
        }""",
        [selector, quiet_ms],
    )
    try:
        page.wait_for_function("() => window.__e2eQuietTicks.some((t) => t.ok)", timeout=timeout)
    except Exception as exc:
        changes = page.evaluate("() => window.__e2eQuietTicks")
        raise AssertionError(f"{selector} did not tick on its own between messages; changes: {changes}") from exc


def tag(node: Locator | ElementHandle, name: str) -> None:
    """Mark a DOM node with a JS property: only the very same node still carries it later."""
    node.evaluate("(node, name) => { node.__e2eTag = name; }", name)


def tagged(locator: Locator, name: str) -> bool:
    """True when the node now at `locator` is the node tagged `name` (it survived; it was not re-created)."""
    return bool(locator.evaluate("(node, name) => node.isConnected && node.__e2eTag === name", name))


def still_tagged(page: Page, selector: str, name: str) -> bool:
    """True when the node now at `selector` (if any, at once) is the node tagged `name`."""
    return bool(
        page.evaluate(
            "([s, n]) => { const e = document.querySelector(s); return !!e && e.isConnected && e.__e2eTag === n; }",
            [selector, name],
        )
    )


class FirstLoad:
    """Records what a page downloads from its creation on: every HTTP response and every websocket frame it receives.

    Start it before the page loads; once the page is drawn, `weigh()` waits out the rest of the first second of
    websocket data and adds it all up.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.responses: list[Response] = []
        self.frames: list[str | bytes] = []
        self.sizes: dict[str, int] = {}  # URL: body bytes, decoded, of the HTTP responses (not the upgrade)
        self.wire: dict[str, int] = {}  # URL: body bytes as sent (compressed where the server compressed)
        self.ws_bytes = 0
        page.on("response", self._on_response)
        page.on("websocket", self._on_websocket)

    def _on_response(self, response: Response) -> None:
        self.responses.append(response)

    def _on_websocket(self, ws: WebSocket) -> None:
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        self.frames.append(payload)

    def weigh(self) -> int:
        """Wait the rest of the first second of websocket data, then weigh it all; return the total in bytes."""
        self.page.wait_for_timeout(1_000)
        self.sizes = {}
        self.wire = {}
        for response in self.responses:
            if response.request.resource_type == "websocket" or response.status == 101:
                continue
            body = response.body()
            self.sizes[response.url] = len(body)
            # As the server sends it: gzip (Starlette's GZipMiddleware, level 9) where it said so. Computed, not
            # read from the browser, which reports a cached response at its decoded size.
            gzipped = response.headers.get("content-encoding") == "gzip"
            self.wire[response.url] = len(gzip.compress(body, 9)) if gzipped else len(body)
        self.ws_bytes = sum(len(f.encode() if isinstance(f, str) else f) for f in self.frames)
        return self.total

    @property
    def total(self) -> int:
        """Bytes downloaded: the bodies as sent, and the websocket data."""
        return sum(self.wire.values()) + self.ws_bytes

    @property
    def decoded(self) -> int:
        return sum(self.sizes.values()) + self.ws_bytes

    @property
    def report(self) -> str:
        """One line a response, largest first: bytes as sent, then decoded."""
        rows = sorted(self.sizes.items(), key=lambda kv: -kv[1])
        return "\n".join(f"{self.wire.get(url, size):>8} {size:>8} {url}" for url, size in rows)

    def assert_scripts_and_styles(self) -> None:
        """The page's scripts and styles are among what it loaded."""
        kinds = {url.rsplit(".", 1)[-1] for url in self.sizes}
        assert {"js", "css"} <= kinds, f"expected the page's scripts and styles among {sorted(self.sizes)}"

    def assert_within_budget(self, what: str = "first load") -> None:
        """What was downloaded is under FIRST_LOAD_BUDGET, and decoded under FIRST_LOAD_DECODED_CEILING."""
        detail = f"(websocket {self.ws_bytes}; sent, decoded, URL):\n{self.report}"
        assert self.total < FIRST_LOAD_BUDGET, f"{what} is {self.total} bytes as sent {detail}"
        assert self.decoded < FIRST_LOAD_DECODED_CEILING, f"{what} is {self.decoded} bytes decoded {detail}"


class Source:
    """A tiny native-protocol source (docs/protocol.md section 1): publishes on `P:events` with a seq per src,
    and keeps the authoritative keys (`P:runners`, `P:runner:<id>`, `P:depth`) as a real one does.

    `producer` and `job_fields` are what a job event says unless told otherwise, `broker` the src of depth
    reports, `interval` and `region` what a heartbeat says.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        producer: str = "producer",
        broker: str = "broker",
        interval: float = 10.0,
        region: str = "eu-west",
        job_fields: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.producer = producer
        self.broker = broker
        self.interval = interval
        self.region = region
        self.job_fields = {"channel": "default", "fn": "demo.task", **(job_fields or {})}
        self.seqs: dict[str, int] = {}
        self.boots: dict[str, float] = {}

    @classmethod
    @contextmanager
    def connect(cls, redis_url: str, prefix: str, **settings: Any) -> Iterator[Source]:
        """A source on a client of its own, closed afterwards."""
        client = redis.Redis.from_url(redis_url)
        try:
            yield cls(client, prefix, **settings)
        finally:
            client.close()

    def envelope(self, kind: str, src: str) -> dict[str, Any]:
        seq = self.seqs.get(src, 0) + 1
        self.seqs[src] = seq
        return {"v": 1, "type": kind, "src": src, "seq": seq, "ts": time.time()}

    def publish(self, message: bytes | dict[str, Any] | list[dict[str, Any]]) -> None:
        """Publish one object, a batch (a list of at most 1,000) or raw bytes on `P:events`."""
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        assert self.client.publish(f"{self.prefix}:events", data), "nobody is subscribed to P:events: is the server up?"

    def beat(self, runner: str, **fields: Any) -> dict[str, Any]:
        """A runner's heartbeat message, not sent; its boot stays the same from beat to beat (no restart)."""
        message = self.envelope("heartbeat", runner)
        boot = self.boots.setdefault(runner, message["ts"] - 60)
        message.update(
            boot=boot, interval=self.interval, host=f"{runner}-host", region=self.region, pid=4242,
            version="e2e/1", state="running", channels=["default"], concurrency=4, active=[], processed=0, failed=0,
        )  # fmt: skip
        message.update(fields)
        return message

    def beats(self, *messages: dict[str, Any]) -> None:
        """Register the beats' runners, write their keys (TTL three intervals) and publish, in batches of 1,000."""
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.sadd(f"{self.prefix}:runners", message["src"])
            ttl = int(3 * message["interval"]) + 1
            pipe.set(f"{self.prefix}:runner:{message['src']}", json.dumps(message), ex=ttl)
        pipe.execute()
        for start in range(0, len(messages), 1000):
            self.publish(list(messages[start : start + 1000]))

    def heartbeat(self, runner: str, **fields: Any) -> dict[str, Any]:
        """A runner's beat (online through a test unless told otherwise): `P:runner:<id>`, `P:runners`, publish."""
        message = self.beat(runner, **fields)
        self.beats(message)
        return message

    def job_message(self, event: str, job: str, src: str | None = None, **fields: Any) -> dict[str, Any]:
        """A job lifecycle event, not sent; `src` is the producer unless given."""
        message = self.envelope("job", src or self.producer)
        message.update(id=f"{message['src']}:{message['seq']}", event=event, job=job, **self.job_fields)
        message.update(fields)
        return message

    def job(self, event: str, job: str, src: str | None = None, **fields: Any) -> dict[str, Any]:
        """One job lifecycle event, e.g. `job("failed", "j1", src="r1", runner="r1", error="...")`."""
        message = self.job_message(event, job, src, **fields)
        self.publish(message)
        return message

    def depth_message(self, **channels: dict[str, Any]) -> dict[str, Any]:
        """A depth report, not sent: each channel's fields over zeros."""
        message = self.envelope("depth", self.broker)
        message["channels"] = {
            name: {"queued": 0, "inflight": 0, "scheduled": 0, "oldest": None, "paused": False, **fields}
            for name, fields in channels.items()
        }
        return message

    def depth(self, **channels: dict[str, Any]) -> dict[str, Any]:
        """Report channel depths, e.g. `depth(email={"queued": 7})`: write `P:depth`, then publish."""
        message = self.depth_message(**channels)
        entries = {name: json.dumps({**entry, "ts": message["ts"]}) for name, entry in message["channels"].items()}
        self.client.hset(f"{self.prefix}:depth", mapping=entries)
        self.publish(message)
        return message


def watch(tab: Page, errors: list[str]) -> Page:
    """Note in `errors` what `tab` logs as an error in its console."""

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} at {message.location}")

    tab.on("console", note)
    return tab


def watch_all(tab: Page, errors: list[str]) -> Page:
    """Note in `errors` what a tab other than the `page` fixture's (which does it itself) throws, and logs."""
    tab.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}\n{error.stack}"))
    return watch(tab, errors)


def open_live(page: Page, url: str) -> Page:
    """Go to `url` (probing its websocket) and wait until the page's socket is live."""
    install_ws_probe(page)
    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    return page
