"""Where alerts go: each target renders a notice in its receiver's format and sends it over HTTP.

A target's `send` returns on a 2xx answer and raises `DeliveryError` otherwise,
saying whether another attempt could succeed (a refused body will not; a
receiver that is down, slow or rate limiting may). The generic webhook's body
and signature are jobpulse's own (docs/alerts.md, docs/protocol.md 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
import msgspec

from server import __version__
from server.notify.lifecycle import Notice, Record
from server.redact import redact

USER_AGENT = f"jobpulse/{__version__}"
# Answers worth another attempt: the receiver is busy, rate limiting or down for now.
RETRYABLE = frozenset({408, 425, 429})
_encode = msgspec.json.Encoder().encode


class DeliveryError(Exception):
    """A delivery that did not succeed; `retry` says whether another attempt may."""

    def __init__(self, message: str, retry: bool, status: int = 0) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status


class Target(Protocol):
    name: str  # unique among the targets, stable across restarts: the outbox's entries name it
    kind: str
    shown: str  # what the page and the logs show (no secret)
    host: str  # the URL's host: what a route may name it by

    async def send(self, client: httpx.AsyncClient, notice: Notice) -> int: ...


def shown_url(url: str) -> str:
    """A target URL fit to show: scheme, host and port (webhook paths often are the secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return redact(
        f"{parts.scheme}://{host}{port}/…" if parts.path not in ("", "/") else f"{parts.scheme}://{host}{port}"
    )


def webhook_body(notice: Notice) -> dict[str, Any]:
    """The generic webhook's JSON body (docs/alerts.md)."""
    r = notice.record
    alert: dict[str, Any] = {
        "id": r.id, "rule": r.rule, "key": r.key, "severity": r.severity, "title": r.title, "detail": r.detail,
        "since": r.since, "fired_at": r.fired_at, "episode": r.episode,
    }  # fmt: skip
    if r.state == "resolved":
        alert["resolved_at"] = r.resolved_at
    if r.acked_by:
        alert["acked_by"], alert["acked_at"] = r.acked_by, r.acked_at
    return {"version": 1, "id": notice.id, "kind": notice.kind, "at": notice.at, "alert": alert}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Jobpulse-Signature`'s value: the signing time and HMAC-SHA256 over "<time>." + body, hex."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """Check a signature header as a receiver should: the MAC, and a signing time within `tolerance` of `now`
    (an old request replayed fails)."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


class Webhook:
    """The generic webhook: the notice as JSON, signed when a secret is set."""

    kind = "webhook"

    def __init__(self, name: str, url: str, secret: str = "") -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.shown = shown_url(url)
        self.host = urlsplit(url).hostname or ""

    async def send(self, client: httpx.AsyncClient, notice: Notice) -> int:
        body = _encode(webhook_body(notice))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Jobpulse-Event": notice.kind,
            # Receivers dedupe by it: a delivery whose answer was lost (a timeout, a crash) is sent again.
            "X-Jobpulse-Delivery": notice.id,
        }
        if self.secret:
            headers["X-Jobpulse-Signature"] = signature(self.secret, int(time.time()), body)
        return await _post(client, self.url, body, headers)


# How long past its last post Alertmanager holds an alert that is still firing: refreshed every REFRESH_S, so a
# jobpulse that dies leaves no alert firing for ever (Prometheus does the same with its evaluation interval).
HOLD_S = 300.0
REFRESH_S = 60.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(record: Record, kind: str, now: float) -> dict[str, Any]:
    """One alert in Alertmanager's API v2 form: labels identify it (Alertmanager dedupes and groups by them),
    `endsAt` in the past resolves it, in the future holds it that long unless refreshed."""
    labels = {"alertname": f"jobpulse_{record.rule}", "alert_id": record.id, "rule": record.rule,
              "severity": record.severity, "service": "jobpulse"}  # fmt: skip
    if record.key:
        labels["key"] = record.key
    if kind == "test":
        labels["alertname"] = "jobpulse_test"
    ends = record.resolved_at if record.state == "resolved" else now + (60.0 if kind == "test" else HOLD_S)
    return {
        "labels": labels,
        "annotations": {"summary": record.title, "description": record.detail, "episode": record.episode},
        "startsAt": _iso(record.fired_at),
        "endsAt": _iso(ends),
    }


class Alertmanager:
    """Prometheus Alertmanager: alerts POSTed to `/api/v2/alerts`, so teams route them with everything else."""

    kind = "alertmanager"

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.shown = shown_url(base_url)
        self.host = urlsplit(base_url).hostname or ""

    async def send(self, client: httpx.AsyncClient, notice: Notice) -> int:
        return await self.post(client, [alertmanager_alert(notice.record, notice.kind, time.time())])

    async def post(self, client: httpx.AsyncClient, alerts: list[dict[str, Any]]) -> int:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        return await _post(client, self.url, _encode(alerts), headers)


MARK = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "REMINDER", "test": "TEST"}


def message(notice: Notice) -> tuple[str, str]:
    """A notification as words, for chat, paging and mail: (title, body)."""
    r = notice.record
    title = f"[jobpulse] {MARK.get(notice.kind, notice.kind.upper())} {r.severity}: {r.title}"
    lines = [r.detail, "", f"alert {r.id} (rule {r.rule}), episode {r.episode}"]
    if notice.kind == "resolved":
        lines.append(f"open {_span(r.resolved_at - r.since)}, resolved at {_iso(r.resolved_at)}")
    else:
        lines.append(f"open since {_iso(r.since)}")
    if r.acked_by:
        lines.append(f"acknowledged by {r.acked_by}")
    return title, "\n".join(lines)


def _span(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


class AppriseTarget:
    """Chat, paging and mail through Apprise (https://github.com/caronc/apprise): Slack, Microsoft Teams,
    PagerDuty, email (mailto://) and a hundred more, each from one URL. A PagerDuty URL gets the episode as its
    dedup key and `action=resolve` on a resolution, so the incident closes by itself."""

    kind = "apprise"

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.scheme = url.partition("://")[0].lower()
        self.shown = f"{self.scheme}://…"  # an Apprise URL's host and path are often its tokens
        self.host = ""

    def url_for(self, notice: Notice) -> str:
        """The URL for this notice: PagerDuty's trigger or resolve of the episode, every other one as given."""
        if self.scheme not in ("pagerduty", "pagerdutys"):
            return self.url
        action = "resolve" if notice.kind == "resolved" else "trigger"
        dedup = notice.record.episode if notice.kind != "test" else notice.id
        severity = "critical" if notice.record.severity == "critical" else "warning"
        extra = urlencode({"action": action, "dedup": dedup, "severity": severity})
        return f"{self.url}{'&' if '?' in self.url else '?'}{extra}"

    async def send(self, client: httpx.AsyncClient, notice: Notice) -> int:
        import apprise  # only where an Apprise target is configured: it loads its plugins on import

        service = apprise.Apprise()
        if not service.add(self.url_for(notice)):
            raise DeliveryError(f"Apprise does not understand the {self.scheme}:// URL", retry=False)
        title, body = message(notice)
        kind = {"resolved": apprise.NotifyType.SUCCESS, "test": apprise.NotifyType.INFO}.get(
            notice.kind,
            apprise.NotifyType.FAILURE if notice.record.severity == "critical" else apprise.NotifyType.WARNING,
        )

        def deliver() -> tuple[bool, str]:
            with apprise.LogCapture(level=apprise.logging.WARNING) as said:  # type: ignore[no-untyped-call]
                done = bool(service.notify(title=title, body=body, notify_type=kind))
            return done, said.getvalue()

        done, said = await asyncio.to_thread(deliver)  # Apprise's plugins block (requests, smtplib)
        if not done:
            why = [line.split(" - ", 2)[-1] for line in said.strip().splitlines()][-1:] or ["Apprise could not send"]
            raise DeliveryError(redact(f"{self.scheme}: {why[0]}")[:300], retry=True)
        return 200


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"timed out ({type(exc).__name__})", retry=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(redact(f"{type(exc).__name__}: {exc}")[:300], retry=True) from exc
    status = response.status_code
    if 200 <= status < 300:
        return status
    text = redact(response.text[:200].strip())
    retry = status >= 500 or status in RETRYABLE
    raise DeliveryError(f"HTTP {status}{': ' + text if text else ''}", retry=retry, status=status)


def configured(webhooks: str, secret: str, alertmanager: str = "", apprise_urls: str = "") -> list[Target]:
    """The targets the settings name, each named by its kind and a hash of its URL: stable across restarts and
    reorderings, so a notification waiting in the outbox goes where it was meant to."""
    targets: list[Target] = []
    for url in dict.fromkeys(webhooks.split()):
        targets.append(Webhook(f"webhook-{_digest(url)}", url, secret))
    if alertmanager:
        targets.append(Alertmanager(f"alertmanager-{_digest(alertmanager)}", alertmanager))
    for url in dict.fromkeys(apprise_urls.split()):
        targets.append(AppriseTarget(f"apprise-{_digest(url)}", url))
    return targets


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]
