"""Settings from environment variables (12-factor): the only module that reads os.environ.

Every setting has an environment variable, a default and a one-line doc; the
README's configuration table lists them all (a test keeps the two in step).
Every cap on memory jobpulse keeps is a setting here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.notify.routes import parse as parse_routes
from server.redact import redact
from server.streams.core.labels import LABEL_RE, MAX_LABELS, SourceRule
from server.streams.core.rules import RULES
from server.streams.core.state import Limits
from server.streams.core.widgets import ViewLimits

CELERY_STALE_FACTOR = 1.5
CELERY_OFFLINE_FACTOR = 2.0
MOJO_STALE_FACTOR = 1.5
MOJO_OFFLINE_FACTOR = 3.0


def loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    name = host.strip().lower().strip("[]").rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All of jobpulse's configuration. Build with `Settings.from_env()`."""

    redis_url: str = _setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis of the job system (the source)")
    store_url: str = _setting("JOBPULSE_STORE_URL", "", "Redis for jobpulse's own state; empty = the source's Redis")
    prefix: str = _setting("JOBPULSE_PREFIX", "jobpulse", "key and channel prefix of the native protocol")
    source: str = _setting("JOBPULSE_SOURCE", "native", "job system: native, celery or mojo (django-mojo)")
    sources: str = _setting(
        "JOBPULSE_SOURCES", "", "several job systems at once: label:kind[:url],... (README, Several sources)"
    )
    host: str = _setting("HOST", "127.0.0.1", "address the web server binds")
    port: int = _setting("PORT", 8000, "port the web server listens on")
    log_level: str = _setting("JOBPULSE_LOG_LEVEL", "info", "debug, info, warning or error")
    log_format: str = _setting("JOBPULSE_LOG_FORMAT", "text", "text, or json: one JSON object per line (structured)")
    access_log: bool = _setting(
        "JOBPULSE_ACCESS_LOG", False, "log every HTTP request and websocket upgrade (a line each, at info)"
    )
    workers: int = _setting("JOBPULSE_WORKERS", 1, "jobpulse serve: processes sharing the port (each a whole jobpulse)")
    tick_ms: int = _setting("JOBPULSE_TICK_MS", 25, "coalescing tick: widget patches go out at most this often")
    tick_max_ms: int = _setting(
        "JOBPULSE_TICK_MAX_MS", 200, "the tick stretches up to this while the server is saturated (a connect storm)"
    )
    beat_s: float = _setting("JOBPULSE_BEAT_S", 2.0, "a quiet client gets a beat this often (its stale detector)")
    clock_ms: int = _setting("JOBPULSE_CLOCK_MS", 1000, "clock tick into the fold (staleness, minute roll-over)")
    reconcile_s: float = _setting("JOBPULSE_RECONCILE_S", 5.0, "re-read the authoritative keys this often")
    source_ping_s: float = _setting("JOBPULSE_SOURCE_PING_S", 0.5, "PING the source's pub/sub connection this often")
    source_timeout_s: float = _setting(
        "JOBPULSE_SOURCE_TIMEOUT_S", 1.0, "source down once its Redis is silent this long (a stall) or will not connect"
    )
    source_backoff_max_s: float = _setting("JOBPULSE_SOURCE_BACKOFF_MAX_S", 2.0, "longest wait between reconnects")
    persist_s: float = _setting("JOBPULSE_PERSIST_S", 5.0, "write series, runners and failures to the store this often")
    replay_max: int = _setting("JOBPULSE_REPLAY_MAX", 50_000, "most P:stream entries replayed after a gap or at start")
    message_max: int = _setting("JOBPULSE_MESSAGE_MAX", 1_048_576, "largest accepted pub/sub message, bytes")
    log_rejects_per_min: int = _setting("JOBPULSE_LOG_REJECTS_PER_MIN", 20, "log at most this many rejections a minute")
    max_jobs: int = _setting("JOBPULSE_MAX_JOBS", 100_000, "jobs kept and searchable (~1.6 KB each; finished go first)")
    max_runners: int = _setting("JOBPULSE_MAX_RUNNERS", 2_000, "runners kept (the one offline longest goes first)")
    max_channels: int = _setting("JOBPULSE_MAX_CHANNELS", 1_000, "channels kept")
    max_sources: int = _setting("JOBPULSE_MAX_SOURCES", 10_000, "publishers whose seq is tracked")
    failures_cap: int = _setting("JOBPULSE_FAILURES_CAP", 500, "recent failures kept (memory and store)")
    dedupe_window: int = _setting("JOBPULSE_DEDUPE_WINDOW", 100_000, "event ids remembered to drop redeliveries")
    series_minutes: int = _setting("JOBPULSE_SERIES_MINUTES", 2_880, "per-minute series retention (48 h)")
    payload_cap: int = _setting("JOBPULSE_PAYLOAD_CAP", 4_096, "bytes of a job's payload kept")
    traceback_cap: int = _setting("JOBPULSE_TRACEBACK_CAP", 8_192, "characters of a traceback kept (the tail)")
    stale_factor: float = _setting(
        "JOBPULSE_STALE_FACTOR", 2.5, "a runner is stale after this many intervals silent (celery, mojo: 1.5)"
    )
    offline_factor: float = _setting(
        "JOBPULSE_OFFLINE_FACTOR", 6.0, "... and offline after this many (celery: 2, mojo: 3: their own rules)"
    )
    spark_minutes: int = _setting("JOBPULSE_SPARK_MINUTES", 60, "minutes in the Jobs Published sparkline")
    patch_ring: int = _setting("JOBPULSE_PATCH_RING", 256, "patches kept per widget for resume after reconnect")
    client_queue: int = _setting("JOBPULSE_CLIENT_QUEUE", 64, "messages queued per slow client before a resync")
    client_queue_bytes: int = _setting("JOBPULSE_CLIENT_QUEUE_BYTES", 1_048_576, "bytes queued per slow client")
    stall_timeout_s: float = _setting("JOBPULSE_STALL_TIMEOUT_S", 15.0, "close a client that reads nothing this long")
    max_clients: int = _setting("JOBPULSE_MAX_CLIENTS", 10_000, "websocket clients per process")
    max_clients_per_address: int = _setting(
        "JOBPULSE_MAX_CLIENTS_PER_ADDRESS", 200, "websocket clients per client address per process (0: no limit)"
    )
    connects_per_address: int = _setting(
        "JOBPULSE_CONNECTS_PER_ADDRESS", 300, "websocket connects per client address in 10 s (0: no limit)"
    )
    ws_max_frame: int = _setting("JOBPULSE_WS_MAX_FRAME", 65_536, "largest accepted client frame, bytes")
    ws_bad_frames: int = _setting("JOBPULSE_WS_BAD_FRAMES", 20, "bad frames a client may send in 10 s before 1008")
    ws_deflate: bool = _setting(
        "JOBPULSE_WS_DEFLATE", False, "permessage-deflate, each message compressed once for all (`jobpulse serve`)"
    )
    ws_sndbuf: int = _setting(
        "JOBPULSE_WS_SNDBUF", 65_536, "kernel send buffer per websocket, bytes (0: the kernel's own, up to MBs)"
    )
    max_views: int = _setting("JOBPULSE_MAX_VIEWS", 1_000, "filtered views (runner grid, job table) open at once")
    latency_samples: int = _setting(
        "JOBPULSE_LATENCY_SAMPLES", 4_096, "HTTP and push latency samples kept for the status page's percentiles"
    )
    view_ttl_s: float = _setting("JOBPULSE_VIEW_TTL_S", 60.0, "keep a view nobody watches this long (for resume)")
    query_refresh_ms: int = _setting("JOBPULSE_QUERY_REFRESH_MS", 1000, "recompute a job-table view at most this often")
    hours_retention: int = _setting("JOBPULSE_HOURS_RETENTION", 720, "hourly series retention, hours (30 days)")
    max_channel_series: int = _setting("JOBPULSE_MAX_CHANNEL_SERIES", 200, "channels with their own per-minute series")
    max_functions: int = _setting(
        "JOBPULSE_MAX_FUNCTIONS", 200, 'job functions with their own numbers (the rest count as "(other)")'
    )
    stats_window_min: int = _setting("JOBPULSE_STATS_WINDOW_MIN", 60, "minutes the Functions table sums (rolling)")
    stats_minutes: int = _setting(
        "JOBPULSE_STATS_MINUTES", 2_880, "per-minute function and channel sketches kept in Redis (48 h)"
    )
    stats_chart_minutes: int = _setting(
        "JOBPULSE_STATS_CHART_MINUTES", 360, "per-minute percentiles a function's chart shows (in memory)"
    )
    stats_chart_hours: int = _setting(
        "JOBPULSE_STATS_CHART_HOURS", 168, "per-hour percentiles a function's chart shows (in memory; 7 days)"
    )
    stats_days: int = _setting("JOBPULSE_STATS_DAYS", 30, "per-day percentiles a function's chart shows")
    metrics_functions: int = _setting(
        "JOBPULSE_METRICS_FUNCTIONS", 20, "busiest functions with their own /metrics histograms (cardinality cap)"
    )
    max_groups: int = _setting("JOBPULSE_MAX_GROUPS", 500, "failure groups kept (the one seen least lately goes first)")
    group_new_s: float = _setting(
        "JOBPULSE_GROUP_NEW_S", 3600.0, "a failure group is new this long after it first appears (hot issue)"
    )
    group_new_min: int = _setting(
        "JOBPULSE_GROUP_NEW_MIN", 3, "failures a new group needs before it raises a hot issue"
    )
    group_spike_min: int = _setting(
        "JOBPULSE_GROUP_SPIKE_MIN", 10, "failures of a group in 5 min that can make a spike (hot issue)"
    )
    group_spike_factor: float = _setting(
        "JOBPULSE_GROUP_SPIKE_FACTOR", 3.0, "... and how many times its 5-minute rate over the hour before"
    )
    sla: str = _setting("JOBPULSE_SLA", "*=300", "oldest-queued-age SLA per channel, s: email=60,reports=1800,*=300")
    stuck_after_s: float = _setting("JOBPULSE_STUCK_AFTER_S", 600.0, "a job running longer is stuck (hot issue)")
    fail_rate: float = _setting("JOBPULSE_FAIL_RATE", 0.2, "failed share of finished jobs that makes a channel failing")
    fail_min: int = _setting("JOBPULSE_FAIL_MIN", 5, "failures needed in the window before a channel is failing")
    fail_window_min: int = _setting("JOBPULSE_FAIL_WINDOW_MIN", 5, "minutes the failure rate is judged over")
    timezone: str = _setting("JOBPULSE_TIMEZONE", "UTC", "time zone of 'today' (IANA name, e.g. Europe/Berlin)")
    environment: str = _setting("JOBPULSE_ENV", "", "environment badge on every page, e.g. production or staging")
    env_color: str = _setting("JOBPULSE_ENV_COLOR", "", "badge colour (CSS); default red for prod*, amber otherwise")
    logs_cap: int = _setting("JOBPULSE_LOGS_CAP", 500, "jobpulse's own warnings and errors kept for the log page")
    # -- the celery source (docs/protocol.md section 6) --
    celery_broker: str = _setting("JOBPULSE_CELERY_BROKER", "", "Celery's Redis broker URL; empty = REDIS_URL")
    celery_queues: str = _setting("JOBPULSE_CELERY_QUEUES", "", "queues to watch besides those found, comma-separated")
    celery_default_queue: str = _setting("JOBPULSE_CELERY_DEFAULT_QUEUE", "celery", "Celery's task_default_queue")
    celery_inspect_s: float = _setting(
        "JOBPULSE_CELERY_INSPECT_S", 30.0, "ask workers what they run this often (inspect)"
    )
    celery_inspect_timeout_s: float = _setting(
        "JOBPULSE_CELERY_INSPECT_TIMEOUT_S", 1.0, "wait this long for inspect replies"
    )
    # -- the mojo source: a django-mojo deployment's Redis and Postgres (docs/mojo.md) --
    mojo_redis_url: str = _setting("JOBPULSE_MOJO_REDIS_URL", "", "django-mojo's REDIS_URL; empty = REDIS_URL")
    mojo_prefix: str = _setting("JOBPULSE_MOJO_PREFIX", "mojo:jobs", "django-mojo's JOBS_REDIS_PREFIX")
    mojo_pubsub_prefix: str = _setting("JOBPULSE_MOJO_PUBSUB_PREFIX", "", "django-mojo's REDIS_PUBSUB_PREFIX")
    mojo_database_url: str = _setting(
        "JOBPULSE_MOJO_DATABASE_URL", "", "django-mojo's Postgres (postgresql://...); a read-only role is enough"
    )
    mojo_write_database_url: str = _setting(
        "JOBPULSE_MOJO_WRITE_DATABASE_URL", "", "a role that may write jobs_job and jobs_jobevent (run, cancel, purge)"
    )
    mojo_heartbeat_s: float = _setting("JOBPULSE_MOJO_HEARTBEAT_S", 5.0, "django-mojo's JOBS_RUNNER_HEARTBEAT_SEC")
    mojo_concurrency: int = _setting(
        "JOBPULSE_MOJO_CONCURRENCY", 10, "django-mojo's JOBS_ENGINE_MAX_WORKERS (slots shown per runner)"
    )
    mojo_channels: str = _setting("JOBPULSE_MOJO_CHANNELS", "", "channels to watch besides those found (comma list)")
    mojo_poll_s: float = _setting("JOBPULSE_MOJO_POLL_S", 0.5, "read new job events from Postgres this often")
    mojo_redis_poll_s: float = _setting("JOBPULSE_MOJO_REDIS_POLL_S", 1.0, "read heartbeats and depths this often")
    mojo_lookback_s: float = _setting(
        "JOBPULSE_MOJO_LOOKBACK_S", 60.0, "wait this long for an event id that commits late before giving up on it"
    )
    mojo_metrics_tz: str = _setting(
        "JOBPULSE_MOJO_METRICS_TZ", "America/Los_Angeles", "django-mojo's METRICS_TIMEZONE (its engine's hour buckets)"
    )
    mojo_rows_s: float = _setting(
        "JOBPULSE_MOJO_ROWS_S", 5.0, "re-read the rows of jobs shown as waiting or running this often"
    )
    # -- sign-in, commands, audit (docs/protocol.md sections 4 and 5) --
    auth: str = _setting("JOBPULSE_AUTH", "users", "users (sign-in), proxy (trusted header) or dev (no sign-in)")
    dev_remote: bool = _setting(
        "JOBPULSE_DEV_REMOTE", False, "allow dev mode (no sign-in) against a Redis or Postgres on another host"
    )
    users: str = _setting("JOBPULSE_USERS", "", "name:role:argon2-hash entries, space-separated (hash-password)")
    tokens: str = _setting("JOBPULSE_TOKENS", "", "API tokens as name:role:sha256 entries, space-separated (token)")
    secret: str = _setting("JOBPULSE_SECRET", "", "signs cookies and confirm tokens; empty = one shared via the store")
    proxy_user_header: str = _setting("JOBPULSE_PROXY_USER_HEADER", "X-Forwarded-User", "proxy mode: user header")
    proxy_roles: str = _setting("JOBPULSE_PROXY_ROLES", "*=viewer", "proxy mode: user=role,...; * for the rest")
    trusted_proxies: str = _setting(
        "JOBPULSE_TRUSTED_PROXIES",
        "127.0.0.1,::1",
        "proxies whose X-Forwarded-For/-Proto and (proxy mode) user header are believed",
    )
    allowed_origins: str = _setting(
        "JOBPULSE_ALLOWED_ORIGINS", "", "other origins allowed to open /ws, comma-separated"
    )
    session_idle_s: float = _setting("JOBPULSE_SESSION_IDLE_S", 28_800.0, "a session unused this long ends (8 h)")
    session_max_s: float = _setting("JOBPULSE_SESSION_MAX_S", 604_800.0, "a session ends this long after sign-in")
    session_check_s: float = _setting("JOBPULSE_SESSION_CHECK_S", 30.0, "re-check open sockets' sessions this often")
    session_grace_s: float = _setting(
        "JOBPULSE_SESSION_GRACE_S", 900.0, "store down: trust a session checked within this long (pages stay up)"
    )
    session_cache: int = _setting("JOBPULSE_SESSION_CACHE", 10_000, "sessions remembered for the store-down grace")
    login_failures: int = _setting("JOBPULSE_LOGIN_FAILURES", 5, "failed sign-ins per user or address in 15 min")
    logins_in_flight: int = _setting(
        "JOBPULSE_LOGINS_IN_FLIGHT", 2, "sign-ins checked at once (password hashing off the event loop); more get 429"
    )
    command_rate: int = _setting("JOBPULSE_COMMAND_RATE", 60, "commands a user may send a minute")
    command_timeout_s: float = _setting("JOBPULSE_COMMAND_TIMEOUT_S", 5.0, "wait this long for runners' replies")
    command_memory_s: float = _setting("JOBPULSE_COMMAND_MEMORY_S", 3_600.0, "remember command ids (retries) this long")
    confirm_ttl_s: float = _setting("JOBPULSE_CONFIRM_TTL_S", 60.0, "a preview's confirm token is good this long")
    run_payload_max: int = _setting("JOBPULSE_RUN_PAYLOAD_MAX", 16_384, "largest payload of job.run, bytes of JSON")
    audit_retention_days: float = _setting("JOBPULSE_AUDIT_RETENTION_DAYS", 90.0, "audit entries kept this many days")
    activity_rows: int = _setting("JOBPULSE_ACTIVITY_ROWS", 50, "recent audit entries in the live activity widget")
    # Outbound alerts (docs/alerts.md): hot issues sent to webhooks and Alertmanager through a durable outbox.
    alert_webhooks: str = _setting(
        "JOBPULSE_ALERT_WEBHOOKS", "", "generic webhook URLs for alerts, space-separated (docs/alerts.md)"
    )
    alert_webhook_secret: str = _setting(
        "JOBPULSE_ALERT_WEBHOOK_SECRET", "", "HMAC-SHA256 key that signs webhook bodies; empty = unsigned"
    )
    alertmanager_url: str = _setting(
        "JOBPULSE_ALERTMANAGER_URL", "", "Prometheus Alertmanager base URL (alerts POSTed to /api/v2/alerts)"
    )
    alert_apprise: str = _setting(
        "JOBPULSE_ALERT_APPRISE", "", "Apprise URLs for alerts (Slack, Teams, PagerDuty, mailto://...), space-separated"
    )
    alert_routes: str = _setting(
        "JOBPULSE_ALERT_ROUTES",
        "",
        "which alerts go where: target=... severity= rule= source= channel=; ... (docs/alerts.md)",
    )
    alert_min_open_s: float = _setting(
        "JOBPULSE_ALERT_MIN_OPEN_S", 30.0, "a hot issue fires only once open this long (flap damping)"
    )
    alert_min_open: str = _setting(
        "JOBPULSE_ALERT_MIN_OPEN", "", "per-rule minimum open time: rule=seconds,... (e.g. source_down=5)"
    )
    alert_remind_s: float = _setting(
        "JOBPULSE_ALERT_REMIND_S", 14_400.0, "remind of an open, unacknowledged alert this often (0 = never)"
    )
    alert_attempts: int = _setting("JOBPULSE_ALERT_ATTEMPTS", 8, "delivery attempts before a dead letter")
    alert_retry_s: float = _setting("JOBPULSE_ALERT_RETRY_S", 2.0, "first retry's delay; doubles, with jitter")
    alert_retry_max_s: float = _setting("JOBPULSE_ALERT_RETRY_MAX_S", 300.0, "longest delay between attempts")
    alert_timeout_s: float = _setting("JOBPULSE_ALERT_TIMEOUT_S", 10.0, "one delivery attempt's time limit")
    alert_lease_s: float = _setting(
        "JOBPULSE_ALERT_LEASE_S", 60.0, "a delivery held this long by a process that died is taken over"
    )
    alert_outbox_cap: int = _setting("JOBPULSE_ALERT_OUTBOX_CAP", 10_000, "notifications waiting at most")
    alert_log_cap: int = _setting("JOBPULSE_ALERT_LOG_CAP", 500, "delivery log entries kept")
    alert_dead_cap: int = _setting("JOBPULSE_ALERT_DEAD_CAP", 1_000, "dead letters kept")
    # Not a variable of its own: JOBPULSE_SOURCES, each entry resolved into its own settings (from_env).
    specs: tuple[SourceSpec, ...] = field(default=(), metadata={"env": None, "doc": ""})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from `environ` (default os.environ); `overrides` win.

        Raises:
            ValueError: naming the variable, when a value does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name is None:
                continue
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, raw, type(f.default))
        values.update(overrides)
        if values.get("source") == "mojo":
            # django-mojo's own rule (manager.py get_runners): alive while its last beat is younger than 3
            # intervals, which is also the heartbeat key's TTL. Stale halfway there.
            values.setdefault("stale_factor", MOJO_STALE_FACTOR)
            values.setdefault("offline_factor", MOJO_OFFLINE_FACTOR)
        if values.get("source") == "celery":
            # Celery's own rule (celery.events.state, HEARTBEAT_EXPIRE_WINDOW): a worker is gone after two
            # heartbeat intervals of silence. Stale halfway there. Set the factors yourself to override.
            values.setdefault("stale_factor", CELERY_STALE_FACTOR)
            values.setdefault("offline_factor", CELERY_OFFLINE_FACTOR)
        settings = cls(**values)
        settings.check()
        if settings.sources.strip():
            settings = dataclasses.replace(settings, specs=_specs(cls, settings.sources, env))
        return settings

    def source_specs(self) -> tuple[SourceSpec, ...]:
        """The sources to watch: JOBPULSE_SOURCES' entries, or the one JOBPULSE_SOURCE names (labelled by kind)."""
        return self.specs or (SourceSpec(self.source, self.source, self),)

    def source_rules(self) -> dict[str, SourceRule]:
        return {
            spec.label: SourceRule(spec.label, spec.kind, spec.settings.stale_factor, spec.settings.offline_factor)
            for spec in self.source_specs()
        }

    def check(self) -> None:
        """Raise ValueError for values that cannot work."""
        if self.log_format not in ("text", "json"):
            raise ValueError(f"JOBPULSE_LOG_FORMAT={self.log_format!r}: 'text' or 'json'")
        kinds = _kinds()
        if self.source not in kinds:
            raise ValueError(f"JOBPULSE_SOURCE={self.source!r}: one of {', '.join(sorted(kinds))}")
        if self.source == "mojo":
            if not self.mojo_database_url:
                raise ValueError("JOBPULSE_SOURCE=mojo needs JOBPULSE_MOJO_DATABASE_URL (django-mojo's Postgres)")
            for name in ("mojo_heartbeat_s", "mojo_poll_s", "mojo_redis_poll_s", "mojo_lookback_s", "mojo_rows_s"):
                if getattr(self, name) <= 0:
                    raise ValueError(f"{self.env_name(name)} must be > 0")
        positive: tuple[str, ...] = ("tick_ms", "clock_ms", "max_jobs", "max_runners", "failures_cap", "dedupe_window")
        positive += ("patch_ring", "workers", "logins_in_flight", "max_functions", "stats_minutes")
        positive += ("stats_chart_minutes", "stats_chart_hours", "stats_days", "max_groups", "group_new_min")
        positive += ("group_spike_min", "group_spike_factor")
        if self.stats_window_min < 2:
            raise ValueError("JOBPULSE_STATS_WINDOW_MIN must be at least 2")
        if self.tick_max_ms < self.tick_ms:
            raise ValueError("JOBPULSE_TICK_MAX_MS must be >= JOBPULSE_TICK_MS")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.env_name(name)} must be > 0")
        if self.ws_sndbuf < 0:
            raise ValueError("JOBPULSE_WS_SNDBUF must be >= 0 (0: the kernel's own)")
        for name in ("max_clients_per_address", "connects_per_address"):
            if getattr(self, name) < 0:
                raise ValueError(f"{self.env_name(name)} must be >= 0 (0: no limit)")
        if self.offline_factor <= self.stale_factor:
            raise ValueError("JOBPULSE_OFFLINE_FACTOR must be larger than JOBPULSE_STALE_FACTOR")
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError("JOBPULSE_PREFIX must be non-empty and without spaces")
        self.sla_map()
        self.alert_min_open_map()
        parse_routes(self.alert_routes, RULES)
        if self.alert_apprise.strip():
            import apprise  # only when configured: it loads its plugins on import

            for url in self.alert_apprise.split():
                if not apprise.Apprise().add(url):
                    raise ValueError(
                        f"JOBPULSE_ALERT_APPRISE: Apprise does not understand {url.partition('://')[0]}://…"
                    )
        for name in ("alert_attempts", "alert_retry_s", "alert_retry_max_s", "alert_timeout_s", "alert_lease_s",
                     "alert_outbox_cap", "alert_log_cap", "alert_dead_cap"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.env_name(name)} must be > 0")
        if self.alert_min_open_s < 0 or self.alert_remind_s < 0:
            raise ValueError("JOBPULSE_ALERT_MIN_OPEN_S and JOBPULSE_ALERT_REMIND_S must be >= 0")
        if self.alert_timeout_s * 2 > self.alert_lease_s:
            # A delivery still under way when its lease runs out would be sent a second time by another process.
            raise ValueError("JOBPULSE_ALERT_LEASE_S must be at least twice JOBPULSE_ALERT_TIMEOUT_S")
        for url in [*self.alert_webhooks.split(), *([self.alertmanager_url] if self.alertmanager_url else [])]:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"alert target {redact(url)!r}: an http:// or https:// URL")
        if self.auth not in ("users", "proxy", "dev"):
            raise ValueError(f"JOBPULSE_AUTH={self.auth!r}: expected users, proxy or dev")
        if self.auth == "dev" and self.environment.strip().lower().startswith("prod"):
            raise ValueError(
                "JOBPULSE_AUTH=dev (no sign-in, everyone admin) is refused when JOBPULSE_ENV is production"
            )
        if self.auth == "dev" and not self.dev_remote:
            for name in ("redis_url", "store_url", "celery_broker", "mojo_redis_url", "mojo_database_url",
                         "mojo_write_database_url"):  # fmt: skip
                host = urlsplit(getattr(self, name)).hostname  # None for an empty URL
                if host and not loopback(host):
                    raise ValueError(
                        f"JOBPULSE_AUTH=dev (no sign-in, everyone admin) is refused against {self.env_name(name)} "
                        f"on {host}, another host: set JOBPULSE_DEV_REMOTE=1 if that is really meant"
                    )
        for name in ("timezone", "mojo_metrics_tz"):
            try:
                ZoneInfo(getattr(self, name))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{self.env_name(name)}={getattr(self, name)!r} is not a known time zone") from None

    def alert_min_open_map(self) -> dict[str, float]:
        """JOBPULSE_ALERT_MIN_OPEN as rule -> seconds; rules not named take JOBPULSE_ALERT_MIN_OPEN_S."""
        out: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.alert_min_open.split(","))):
            name, eq, value = part.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not eq or not name.strip() or not 0 <= seconds <= 86_400:
                raise ValueError(f"JOBPULSE_ALERT_MIN_OPEN: {part!r} is not rule=seconds (0-86400)")
            out[name.strip()] = seconds
        return out

    def sla_map(self) -> dict[str, float]:
        """JOBPULSE_SLA as channel -> seconds ("*" for every other channel)."""
        out: dict[str, float] = {"*": 300.0}
        for part in filter(None, (p.strip() for p in self.sla.split(","))):
            name, eq, value = part.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not eq or not name.strip() or seconds <= 0:
                raise ValueError(f"JOBPULSE_SLA: {part!r} is not channel=seconds")
            out[name.strip()] = seconds
        return out

    @classmethod
    def env_name(cls, attribute: str) -> str:
        for f in dataclasses.fields(cls):
            if f.name == attribute:
                return str(f.metadata["env"])
        raise KeyError(attribute)

    @property
    def store(self) -> str:
        """Where jobpulse keeps its own state: JOBPULSE_STORE_URL, else the source's Redis (for a Celery
        source given only its broker, the broker's Redis)."""
        if self.store_url:
            return self.store_url
        if self.specs:
            return self.specs[0].settings.store  # several sources: the first one's Redis
        if self.source == "celery" and self.celery_broker:
            return self.celery_broker
        if self.source == "mojo" and self.mojo_redis_url:
            return self.mojo_redis_url
        return self.redis_url

    def limits(self) -> Limits:
        return Limits(
            max_jobs=self.max_jobs,
            max_runners=self.max_runners,
            max_channels=self.max_channels,
            max_sources=self.max_sources,
            failures_cap=self.failures_cap,
            dedupe_window=self.dedupe_window,
            series_minutes=self.series_minutes,
            payload_cap=self.payload_cap,
            traceback_cap=self.traceback_cap,
            stale_factor=self.stale_factor,
            offline_factor=self.offline_factor,
            hours_retention=self.hours_retention,
            max_channel_series=self.max_channel_series,
            max_functions=self.max_functions,
            fn_window=self.stats_window_min,
            fn_minutes=self.stats_chart_minutes,
            fn_hours=self.stats_chart_hours,
            fn_days=self.stats_days,
            max_groups=self.max_groups,
            group_new_s=self.group_new_s,
            group_new_min=self.group_new_min,
            group_spike_min=self.group_spike_min,
            group_spike_factor=self.group_spike_factor,
            logs_cap=self.logs_cap,
            activity_rows=self.activity_rows,
            sources=self.source_rules(),
            sla=self.sla_map(),
            stuck_after=self.stuck_after_s,
            fail_window=self.fail_window_min,
            fail_min=self.fail_min,
            fail_rate=self.fail_rate,
        )

    def view_limits(self) -> ViewLimits:
        return ViewLimits(spark_minutes=self.spark_minutes)


@dataclass(frozen=True)
class SourceSpec:
    """One source to watch: its label (on every row), its kind (a connector of the registry), its settings."""

    label: str
    kind: str
    settings: Settings


def _kinds() -> dict[str, str]:
    """The job systems jobpulse has a connector for, each with the variable an entry's URL sets: the registry
    (server/streams/sources), read when settings are checked (it imports the connectors, which import this)."""
    from server.streams.sources import REGISTRY

    return {name: kind.url_setting for name, kind in REGISTRY.items()}


def _specs(cls: type[Settings], text: str, env: Mapping[str, str]) -> tuple[SourceSpec, ...]:
    """JOBPULSE_SOURCES (`label:kind[:url],...`) with each source's settings: the global ones, overridden by
    `JOBPULSE_<LABEL>_<NAME>` (NAME: a variable's name without its JOBPULSE_ prefix, e.g.
    JOBPULSE_MEDIA_MOJO_DATABASE_URL, JOBPULSE_EDGE_PREFIX, JOBPULSE_EDGE_REDIS_URL).

    Raises:
        ValueError: naming the entry, for a bad label, kind or setting.
    """
    specs: list[SourceSpec] = []
    kinds = _kinds()
    for entry in filter(None, (e.strip() for e in text.split(","))):
        label, _, rest = entry.partition(":")
        kind, _, url = rest.partition(":")
        label, kind = label.strip(), kind.strip()
        if not LABEL_RE.match(label):
            raise ValueError(f"JOBPULSE_SOURCES: label {label!r}: a-z, 0-9 and -, at most 16, starting with a letter")
        if kind not in kinds:
            raise ValueError(f"JOBPULSE_SOURCES {label}: kind {kind!r}: one of {', '.join(sorted(kinds))}")
        if any(spec.label == label for spec in specs):
            raise ValueError(f"JOBPULSE_SOURCES: label {label!r} twice")
        mine = f"JOBPULSE_{label.upper().replace('-', '_')}_"
        own = {**env}
        for name, value in env.items():
            if name.startswith(mine):
                rest_name = name[len(mine) :]
                own[rest_name if rest_name in ("REDIS_URL", "HOST", "PORT") else f"JOBPULSE_{rest_name}"] = value
        own["JOBPULSE_SOURCE"], own["JOBPULSE_SOURCES"] = kind, ""
        if url:
            own[kinds[kind]] = url
        try:
            specs.append(SourceSpec(label, kind, cls.from_env(own)))
        except ValueError as exc:
            raise ValueError(f"JOBPULSE_SOURCES {label}: {exc} (for this source alone: {mine}<NAME>)") from None
    if not specs:
        raise ValueError("JOBPULSE_SOURCES: no source named")
    if len(specs) > MAX_LABELS:
        raise ValueError(f"JOBPULSE_SOURCES: at most {MAX_LABELS} sources")
    return tuple(specs)


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw.replace("_", ""))
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def documented() -> list[tuple[str, str, str]]:
    """(environment variable, default, doc) of every setting, for the README."""
    return [
        (f.metadata["env"], repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(Settings)
        if f.metadata["env"] is not None
    ]
