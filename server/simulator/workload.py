"""What the simulated fleet runs: channels, job functions, payloads, durations, failures and retries.

Lognormal durations per function (email ~0.3 s, a PDF ~3 s, a webhook ~0.5 s with
a long tail), realistic errors, `max_attempts` and exponential backoff. Jobs come
from one seeded generator and each attempt's outcome from (seed, job, attempt), so
a seed gives the same jobs, durations and failures however runners interleave.
A scenario may change a channel's share of the jobs and start a failure burst.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.simulator import tracebacks

CHANNELS = (
    "email",
    "default",
    "reports",
    "webhooks",
    "media",
    "billing",
    "notifications",
    "search",
    "exports",
    "priority",
)
"""Consumed channels, in the order `--channels N` takes them."""

UNCONSUMED_CHANNEL = "webhooks-legacy"
"""Gets jobs but has no runner: the "backlog with no runner" case."""

BACKED_UP_CHANNEL = "reports"
"""Served on purpose by too few, slow runners: its queue and oldest age grow."""

HANG_RATE = 0.003
"""Probability that an attempt hangs until an operator clears it."""

SCHEDULE_AHEAD = (60.0, 900.0)
"""A scheduled job's `run_at` is this many (scaled) seconds ahead."""

MAX_BACKOFF = 3600.0

_CHANNEL_WEIGHTS = {
    "email": 0.26,
    "default": 0.20,
    "reports": 0.10,
    "webhooks": 0.15,
    "media": 0.05,
    "billing": 0.07,
    "notifications": 0.08,
    "search": 0.05,
    "exports": 0.02,
    "priority": 0.02,
    UNCONSUMED_CHANNEL: 0.02,
}

Payload = Callable[[random.Random], dict[str, Any]]

_FIRST = ("ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hiro", "ines", "jonas", "kemi", "liam")
_LAST = ("garcia", "smith", "mueller", "tanaka", "okafor", "rossi", "novak", "silva", "kim", "dubois")
_DOMAINS = ("gmail.com", "outlook.com", "proton.me", "yahoo.co.uk", "acme.io", "fastmail.com")
_COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
_EVENTS = ("invoice.paid", "invoice.created", "order.shipped", "customer.updated", "payment.failed", "user.signup")
_LOCALES = ("en", "en-GB", "de", "fr", "es", "ja", "pt-BR")


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"


def _mail(template: str) -> Payload:
    def make(rng: random.Random) -> dict[str, Any]:
        return {
            "user_id": rng.randint(1000, 99999),
            "email": _email(rng),
            "template": template,
            "locale": rng.choice(_LOCALES),
        }

    return make


def _receipt(rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": rng.randint(10000, 99999),
        "user_id": rng.randint(1000, 99999),
        "email": _email(rng),
        "amount_cents": rng.randint(499, 49999),
        "currency": rng.choice(("USD", "EUR", "GBP")),
    }


def _user(rng: random.Random) -> dict[str, Any]:
    return {"user_id": rng.randint(1000, 99999), "source": rng.choice(("okta", "google", "azure-ad"))}


def _site(rng: random.Random) -> dict[str, Any]:
    return {"site": rng.choice(("www", "shop", "docs")), "locale": rng.choice(_LOCALES)}


def _audit(rng: random.Random) -> dict[str, Any]:
    return {"shard": rng.randint(0, 15), "batch": rng.randint(100, 5000)}


def _report(fmt: str) -> Payload:
    def make(rng: random.Random) -> dict[str, Any]:
        return {
            "report_id": rng.randint(100000, 999999),
            "account_id": rng.randint(100, 9999),
            "format": fmt,
            "period": rng.choice(("2025-10", "2025-11", "2025-Q3", "last-30-days")),
        }

    return make


def _webhook(rng: random.Random) -> dict[str, Any]:
    company = rng.choice(_COMPANIES)
    return {
        "endpoint_id": rng.randint(1, 4000),
        "url": f"https://hooks.{company}.example/{rng.choice(('jobpulse', 'webhooks', 'api/v2/events', 'ingest'))}",
        "event": rng.choice(_EVENTS),
        "delivery_id": f"whd_{_hex(rng, 12)}",
    }


def _asset(ext: str) -> Payload:
    def make(rng: random.Random) -> dict[str, Any]:
        return {
            "asset_id": rng.randint(100000, 9999999),
            "bucket": "media-prod",
            "key": f"uploads/2025/{rng.randint(1, 12):02d}/{_hex(rng, 8)}.{ext}",
            "bytes": rng.randint(20_000, 900_000_000 if ext == "mov" else 12_000_000),
        }

    return make


def _invoice(rng: random.Random) -> dict[str, Any]:
    return {
        "invoice_id": f"in_{_hex(rng, 14)}",
        "customer_id": f"cus_{_hex(rng, 14)}",
        "amount_cents": rng.randint(900, 250000),
        "currency": rng.choice(("USD", "EUR", "GBP")),
    }


def _customer(rng: random.Random) -> dict[str, Any]:
    return {"customer_id": f"cus_{_hex(rng, 14)}", "fields": rng.sample(["email", "address", "tax_id", "name"], 2)}


def _push(rng: random.Random) -> dict[str, Any]:
    return {
        "user_id": rng.randint(1000, 99999),
        "device": _hex(rng, 16),
        "title": rng.choice(("Your order", "New reply")),
    }


def _sms(rng: random.Random) -> dict[str, Any]:
    return {"to": f"+1555{rng.randint(1000000, 9999999)}", "template": rng.choice(("otp", "delivery", "reminder"))}


def _doc(rng: random.Random) -> dict[str, Any]:
    return {"index": rng.choice(("products", "articles", "users")), "doc_id": rng.randint(1, 5_000_000)}


def _batch(rng: random.Random) -> dict[str, Any]:
    return {"index": rng.choice(("products", "articles")), "from_id": rng.randint(1, 4_000_000), "count": 5000}


def _export(rng: random.Random) -> dict[str, Any]:
    return {
        "export_id": rng.randint(1000, 99999),
        "account_id": rng.randint(100, 9999),
        "tables": rng.sample(["orders", "customers", "invoices", "events", "products"], 3),
    }


def _ops(rng: random.Random) -> dict[str, Any]:
    return {"scope": rng.choice(("global", "eu", "us")), "requested_by": rng.choice(("oncall", "cron", "deploy"))}


@dataclass(frozen=True)
class Function:
    """One job function: where it runs, how long it takes, how it fails and retries."""

    name: str
    channel: str
    weight: float
    median: float
    sigma: float
    fail: float
    errors: tuple[str, ...]
    max_attempts: int
    backoff: float
    payload: Payload
    scheduled: float = 0.03
    tail: float = 0.0
    """Probability that an attempt is 10-30x slower than usual (a slow endpoint)."""

    def mean_duration(self) -> float:
        """Expected seconds of one attempt, unscaled."""
        lognormal = self.median * math.exp(self.sigma**2 / 2)
        return lognormal * (1 + self.tail * 19)


_HTTP = ("http_timeout", "http_502", "http_503", "conn_refused")

FUNCTIONS: tuple[Function, ...] = (
    Function(
        "mail.send_welcome",
        "email",
        0.25,
        0.3,
        0.4,
        0.02,
        ("smtp_disconnected", "smtp_refused", "smtp_timeout"),
        3,
        10,
        _mail("welcome"),
    ),
    Function(
        "mail.send_receipt", "email", 0.35, 0.35, 0.4, 0.015, ("smtp_disconnected", "smtp_timeout"), 3, 10, _receipt
    ),
    Function(
        "mail.send_password_reset",
        "email",
        0.15,
        0.25,
        0.3,
        0.01,
        ("smtp_disconnected", "smtp_refused"),
        3,
        5,
        _mail("password_reset"),
    ),
    Function(
        "mail.send_digest",
        "email",
        0.25,
        1.4,
        0.5,
        0.03,
        ("smtp_disconnected", "smtp_timeout", "db_timeout"),
        3,
        30,
        _mail("weekly_digest"),
        scheduled=0.4,
    ),
    Function(
        "accounts.sync_profile",
        "default",
        0.35,
        0.6,
        0.5,
        0.02,
        ("db_timeout", "key_error", "http_timeout"),
        3,
        15,
        _user,
    ),
    Function("cache.warm_homepage", "default", 0.15, 1.5, 0.4, 0.01, ("http_502", "http_timeout"), 2, 10, _site),
    Function("audit.flush_events", "default", 0.3, 0.4, 0.5, 0.015, ("db_deadlock", "db_timeout"), 5, 5, _audit),
    Function(
        "users.recalculate_stats",
        "default",
        0.2,
        2.0,
        0.6,
        0.02,
        ("db_timeout", "value_error", "lock_timeout"),
        3,
        30,
        _user,
    ),
    Function(
        "reports.render_pdf",
        "reports",
        0.55,
        3.0,
        0.5,
        0.04,
        ("weasyprint_fetch", "memory", "db_timeout"),
        2,
        60,
        _report("pdf"),
    ),
    Function(
        "reports.export_csv", "reports", 0.35, 2.0, 0.6, 0.02, ("db_timeout", "s3_slowdown"), 3, 60, _report("csv")
    ),
    Function(
        "reports.nightly_summary",
        "reports",
        0.1,
        7.0,
        0.4,
        0.05,
        ("db_timeout", "memory", "lock_timeout"),
        2,
        120,
        _report("pdf"),
        scheduled=1.0,
    ),
    Function("webhooks.deliver", "webhooks", 0.8, 0.5, 0.8, 0.08, _HTTP, 5, 5, _webhook, tail=0.03),
    Function("webhooks.deliver_batch", "webhooks", 0.2, 1.2, 0.7, 0.06, _HTTP, 5, 10, _webhook, tail=0.02),
    Function(
        "media.make_thumbnail", "media", 0.6, 0.8, 0.4, 0.02, ("pil_unidentified", "s3_slowdown"), 3, 10, _asset("jpg")
    ),
    Function(
        "media.transcode_video",
        "media",
        0.15,
        12.0,
        0.5,
        0.05,
        ("ffmpeg_exit", "s3_slowdown", "memory"),
        2,
        120,
        _asset("mov"),
    ),
    Function("media.extract_metadata", "media", 0.25, 0.4, 0.5, 0.01, ("pil_unidentified",), 2, 10, _asset("jpg")),
    Function(
        "billing.charge_invoice",
        "billing",
        0.5,
        1.1,
        0.4,
        0.04,
        ("card_declined", "stripe_rate_limit", "db_deadlock"),
        3,
        30,
        _invoice,
    ),
    Function(
        "billing.sync_customer",
        "billing",
        0.35,
        0.7,
        0.4,
        0.02,
        ("stripe_rate_limit", "http_timeout"),
        4,
        15,
        _customer,
    ),
    Function(
        "billing.generate_invoices",
        "billing",
        0.15,
        4.0,
        0.5,
        0.03,
        ("db_timeout", "lock_timeout"),
        2,
        120,
        _audit,
        scheduled=0.5,
    ),
    Function("push.send_apns", "notifications", 0.6, 0.25, 0.5, 0.03, ("apns_bad_token", "http_timeout"), 3, 5, _push),
    Function("sms.send_twilio", "notifications", 0.4, 0.6, 0.4, 0.04, ("twilio_error", "http_timeout"), 3, 10, _sms),
    Function("search.index_document", "search", 0.85, 0.2, 0.5, 0.01, ("es_timeout",), 5, 5, _doc),
    Function("search.reindex_batch", "search", 0.15, 5.0, 0.5, 0.03, ("es_timeout", "memory"), 3, 60, _batch),
    Function(
        "exports.build_archive", "exports", 1.0, 9.0, 0.6, 0.03, ("s3_slowdown", "memory", "db_timeout"), 2, 60, _export
    ),
    Function("ops.rotate_api_keys", "priority", 0.4, 0.5, 0.3, 0.01, ("db_timeout",), 3, 5, _ops),
    Function("ops.invalidate_cdn", "priority", 0.6, 1.0, 0.5, 0.05, ("http_timeout", "http_503"), 5, 5, _ops),
    Function("legacy.webhooks.deliver_v1", UNCONSUMED_CHANNEL, 1.0, 0.6, 0.8, 0.1, _HTTP, 3, 30, _webhook),
)

_BY_NAME = {fn.name: fn for fn in FUNCTIONS}

DEFAULT_FUNCTION = Function("default", "default", 1.0, 0.5, 0.5, 0.02, ("value_error", "key_error"), 1, 10, _ops)
"""The profile of a function that is not in the catalogue (a job sent with the `run` command)."""


def function(name: str) -> Function:
    """The profile of `name`, or the default profile for an unknown function."""
    return _BY_NAME.get(name, DEFAULT_FUNCTION)


@dataclass(frozen=True)
class JobSpec:
    """A job as the producer publishes it."""

    fn: str
    channel: str
    payload: dict[str, Any]
    cid: str | None
    max_attempts: int
    delay: float | None
    """Scaled seconds until `run_at` for a scheduled job; None to queue it now."""


@dataclass(frozen=True)
class Failure:
    error: str
    traceback: str
    retryable: bool = True


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a job does: run `duration` seconds (or hang), then succeed or fail."""

    duration: float
    hang: bool = False
    forced: bool = False
    """The payload's `_sim` decided it (a forced hang is never capped)."""
    failure: Failure | None = None
    backoff: float = 0.0
    """Scaled seconds before the next attempt, when this one fails."""


@dataclass(frozen=True)
class Burst:
    """A spell of failures on one channel: this share of attempts fails, with this error."""

    rate: float
    error: str


@dataclass
class Workload:
    """The job mix of one fleet: which channels are in play, and the seeded generators.

    A scenario turns its knobs while the fleet runs: a channel's share of the jobs (`set_share`), a failure
    burst on a channel (`set_burst`). Left alone, the workload is the steady one.
    """

    seed: int
    channels: tuple[str, ...]
    """Consumed channels plus the unconsumed one."""
    time_scale: float = 1.0
    hang_rate: float = HANG_RATE
    immediate: frozenset[str] = frozenset()
    """Channels whose jobs are never scheduled ahead (they would come due at any time, long after)."""
    _rng: random.Random = field(init=False, repr=False)
    _base_weights: list[float] = field(init=False, repr=False)
    _channel_weights: list[float] = field(init=False, repr=False)
    _factors: dict[str, float] = field(init=False, repr=False)
    _bursts: dict[str, Burst] = field(init=False, repr=False)
    _functions: dict[str, tuple[list[Function], list[float]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:jobs")
        self._base_weights = [_CHANNEL_WEIGHTS.get(ch, 0.02) for ch in self.channels]
        self._channel_weights = list(self._base_weights)
        self._factors = {}
        self._bursts = {}
        self._functions = {}
        for ch in self.channels:
            fns = [fn for fn in FUNCTIONS if fn.channel == ch]
            self._functions[ch] = (fns, [fn.weight for fn in fns])

    def share(self, channel: str) -> float:
        """The fraction of published jobs that go to `channel` in the steady mix."""
        if channel not in self.channels:
            return 0.0
        return self._base_weights[self.channels.index(channel)] / sum(self._base_weights)

    def set_share(self, channel: str, factor: float) -> None:
        """Publish `factor` times the usual number of `channel`'s jobs (0: none), the other channels as before."""
        if channel not in self.channels or not (math.isfinite(factor) and factor >= 0):
            return
        if factor == 1:
            self._factors.pop(channel, None)
        else:
            self._factors[channel] = factor
        self._channel_weights = [
            w * self._factors.get(ch, 1.0) for ch, w in zip(self.channels, self._base_weights, strict=True)
        ]

    def rate_factor(self) -> float:
        """The producer's rate relative to the configured one, so that the untouched channels keep theirs."""
        if not self._factors:
            return 1.0
        return sum(self._channel_weights) / sum(self._base_weights)

    def set_burst(self, channel: str, burst: Burst | None) -> None:
        """Make `burst.rate` of `channel`'s attempts fail with `burst.error` (None ends the burst)."""
        if burst is None:
            self._bursts.pop(channel, None)
        elif channel in self.channels and burst.error in tracebacks.ERRORS:
            self._bursts[channel] = burst

    def mean_duration(self, channel: str) -> float:
        """Expected scaled seconds of one attempt of a job of `channel`."""
        fns, weights = self._functions.get(channel, ([], []))
        if not fns:
            return DEFAULT_FUNCTION.mean_duration() * self.time_scale
        total = sum(w * fn.mean_duration() for fn, w in zip(fns, weights, strict=True))
        return total / sum(weights) * self.time_scale

    def next_job(self) -> JobSpec:
        """The next job of the seeded sequence."""
        rng = self._rng
        # With every channel switched off the rate is 0 and nothing is drawn; the steady mix keeps a draw defined.
        weights = self._channel_weights if any(self._channel_weights) else self._base_weights
        channel = rng.choices(self.channels, weights)[0]
        fns, weights = self._functions[channel]
        fn = rng.choices(fns, weights)[0]
        payload = fn.payload(rng)
        cid = _cid(rng, payload)
        delay = None
        if rng.random() < fn.scheduled and channel not in self.immediate:
            delay = rng.uniform(*SCHEDULE_AHEAD) * self.time_scale
        return JobSpec(fn.name, channel, payload, cid, fn.max_attempts, delay)

    def outcome(self, key: str, fn_name: str, attempt: int, payload: Any, channel: str | None = None) -> Outcome:
        """What attempt `attempt` of the job identified by `key` does (same inputs, same burst: same outcome).

        `channel` is the job's (a failure burst is per channel); by default the function's own.

        A payload may force the outcome with `"_sim"` (tests, demos): `{"fail": n}` fails the
        first n attempts, `{"hang": true}` hangs the first attempt until it is cleared,
        `{"duration": s}` runs s real seconds. With `_sim` present nothing random fails or hangs.
        """
        fn = function(fn_name)
        rng = random.Random(f"{self.seed}:{key}:{attempt}")
        duration = fn.median * rng.lognormvariate(0.0, fn.sigma)
        if rng.random() < fn.tail:
            duration *= rng.uniform(10, 30)
        duration *= self.time_scale
        hang = rng.random() < self.hang_rate
        burst = self._bursts.get(channel or fn.channel)
        fails = rng.random() < (max(fn.fail, burst.rate) if burst is not None else fn.fail)
        forced = payload.get("_sim") if isinstance(payload, Mapping) else None
        if isinstance(forced, Mapping):
            hang = bool(forced.get("hang")) and attempt == 1
            fails = attempt <= _int(forced.get("fail"), 0)
            if isinstance(forced.get("duration"), int | float) and not isinstance(forced.get("duration"), bool):
                duration = max(0.0, float(forced["duration"]))
        is_forced = isinstance(forced, Mapping)
        if hang:
            # The duration is what the attempt takes if the fleet already has enough hung jobs.
            return Outcome(duration=duration, hang=True, forced=is_forced)
        if not fails:
            return Outcome(duration=duration, forced=is_forced)
        kinds = [tracebacks.ERRORS[name] for name in fn.errors]
        if burst is not None and not is_forced:
            kinds = [tracebacks.ERRORS[burst.error]]
        if is_forced:
            # A forced failure says how many attempts fail, so it must be one a retry can get past.
            kinds = [kind for kind in kinds if kind.retryable] or kinds
        kind = rng.choice(kinds)
        error, trace = tracebacks.render(kind, fn_name, payload if isinstance(payload, Mapping) else {}, rng)
        # Failures usually come early (a refused connection) or at a timeout; either way not the full run.
        duration *= rng.uniform(0.1, 1.0)
        backoff = min(MAX_BACKOFF, fn.backoff * 2 ** (attempt - 1)) * rng.uniform(0.8, 1.2) * self.time_scale
        failure = Failure(error, trace, kind.retryable or is_forced)
        return Outcome(duration=duration, failure=failure, backoff=backoff, forced=is_forced)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _cid(rng: random.Random, payload: Mapping[str, Any]) -> str | None:
    """A correlation id the way apps set them: the business object when there is one, else a request id."""
    if "order_id" in payload:
        return f"order-{payload['order_id']}"
    if "invoice_id" in payload:
        return str(payload["invoice_id"])
    if rng.random() < 0.6:
        return f"req-{_hex(rng, 12)}"
    return None
