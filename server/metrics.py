"""Prometheus metrics at `/metrics`: jobpulse's own health and the fleet's, read when scraped.

Shell layer. A custom collector reads the live state and the hub's counters at
scrape time, so nothing is counted twice and the hot path (fold, fan-out) pays
nothing per event. The text format is prometheus-client's own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from server.handlers.ws import BAD_FRAME
from server.streams.core import sketch
from server.streams.core.functions import Cell
from server.streams.core.rules import LIVE_RUNNER
from server.streams.core.runners import RUNNER_STATUSES
from server.streams.core.series import DAY_MINUTES


class JobpulseCollector(Collector):
    """Everything jobpulse knows, as metric families, at the moment of the scrape."""

    def __init__(self, app_state: Any) -> None:
        self.app_state = app_state

    def collect(self) -> Iterator[Any]:
        st = self.app_state
        aggregator = st.aggregator
        state = aggregator.state
        health = state.health
        feeds = aggregator.feeds
        links = health.links
        # The fold's own counters (duplicates, gaps) are of all sources together: labelled "all" with several.
        together = next(iter(feeds)) if len(feeds) == 1 else "all"

        events = CounterMetricFamily("jobpulse_events", "Source messages folded", labels=["source"])
        for label, feed in feeds.items():
            events.add_metric([label], feed.messages)
        yield events
        rejected = CounterMetricFamily(
            "jobpulse_events_rejected", "Source messages refused", labels=["source", "reason"]
        )
        for label, feed in feeds.items():
            for reason, n in sorted(feed.rejected.items()):
                rejected.add_metric([label, reason], n)
        yield rejected
        dupes = CounterMetricFamily("jobpulse_events_duplicate", "Redelivered events dropped", labels=["source"])
        dupes.add_metric([together], health.dupes)
        yield dupes
        gaps = CounterMetricFamily("jobpulse_source_gaps", "Seq gaps seen (messages lost)", labels=["source"])
        gaps.add_metric([together], health.gaps)
        yield gaps
        up = GaugeMetricFamily("jobpulse_source_up", "1 while the source is connected", labels=["source", "kind"])
        for label, connector in aggregator.connectors.items():
            up.add_metric([label, connector.name], 1.0 if connector.connected else 0.0)
        yield up
        rtt = GaugeMetricFamily("jobpulse_redis_rtt_seconds", "Source Redis round trip", labels=["source"])
        for label, link in links.items():
            if link.rtt is not None:
                rtt.add_metric([label], link.rtt)
        yield rtt
        if health.last_event is not None:
            yield GaugeMetricFamily(
                "jobpulse_last_event_timestamp_seconds", "When the last source message was folded",
                value=health.last_event,
            )  # fmt: skip

        hub = st.hub
        if health.lag is not None:
            yield GaugeMetricFamily(
                "jobpulse_fold_lag_seconds",
                "Receive time minus the source's timestamp of the last live job event (includes clock skew)",
                value=health.lag,
            )
        yield GaugeMetricFamily("jobpulse_clients", "Websocket clients connected", value=len(hub.clients))
        yield GaugeMetricFamily("jobpulse_views", "Parametrized views open", value=hub.views)
        queued = sum(len(c.outbox) for c in hub.clients)
        yield GaugeMetricFamily("jobpulse_client_queued_messages", "Messages waiting in client outboxes", value=queued)
        stats = hub.stats
        for name, doc, value in (
            ("jobpulse_ticks", "Widget flushes (ticks)", stats.flushes),
            ("jobpulse_patches", "Widget patches made", stats.patches),
            ("jobpulse_messages", "Websocket messages built", stats.messages),
            ("jobpulse_client_resyncs", "Slow clients sent a snapshot instead of a backlog", stats.resyncs),
            ("jobpulse_clients_stalled_closed", "Clients closed for reading nothing", stats.stalled_closed),
            ("jobpulse_snapshots_encoded", "Snapshots encoded (once per widget version)", stats.snapshots_encoded),
            (
                "jobpulse_ticks_stretched",
                "Flushes after a stretched tick (the loop was saturated)",
                stats.stretched_flushes,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("jobpulse_tick_seconds", "Time spent flushing widgets", value=stats.flush_seconds)
        yield GaugeMetricFamily(
            "jobpulse_tick_interval_seconds",
            "The tick in force (stretched while the loop is saturated)",
            value=stats.tick_interval,
        )

        commands = CounterMetricFamily(
            "jobpulse_commands", "Operator commands by action and outcome", labels=["action", "outcome"]
        )
        for (action, outcome), n in sorted(st.commander.counters.items()):
            commands.add_metric([action, outcome], n)
        yield commands
        edge = CounterMetricFamily("jobpulse_http_events", "Refusals at the edge", labels=["what"])
        frames = CounterMetricFamily(
            "jobpulse_ws_bad_frames", "Bad websocket frames from clients, by reason", labels=["reason"]
        )
        for what, n in sorted(st.counters.items()):
            if what.startswith(BAD_FRAME):
                frames.add_metric([what.removeprefix(BAD_FRAME)], n)
            else:
                edge.add_metric([what], n)
        yield edge
        yield frames
        yield from _alert_metrics(getattr(st, "notifier", None))

        # The fleet.
        runners = GaugeMetricFamily("jobpulse_runners", "Runners by status", labels=["status"])
        counts = dict.fromkeys(RUNNER_STATUSES, 0)
        for runner in state.runners.values():
            counts[runner.status] = counts.get(runner.status, 0) + 1
        for status, n in counts.items():
            runners.add_metric([status], n)
        yield runners
        queued_jobs = GaugeMetricFamily("jobpulse_channel_queued", "Jobs queued per channel", labels=["channel"])
        inflight = GaugeMetricFamily("jobpulse_channel_inflight", "Jobs in flight per channel", labels=["channel"])
        oldest = GaugeMetricFamily(
            "jobpulse_channel_oldest_age_seconds", "Age of the oldest queued job per channel", labels=["channel"]
        )
        consumers = GaugeMetricFamily(
            "jobpulse_channel_runners",
            "Live runners (online, busy, draining) consuming each channel",
            labels=["channel"],
        )
        sla = GaugeMetricFamily(
            "jobpulse_channel_sla_seconds", "The channel's queue SLA (JOBPULSE_SLA): its oldest job's limit",
            labels=["channel"],
        )  # fmt: skip
        live: dict[str, int] = {}
        for runner in state.runners.values():
            if runner.status in LIVE_RUNNER:
                for consumed in runner.channels:
                    live[consumed] = live.get(consumed, 0) + 1
        for name, channel in sorted(state.channels.items()):
            queued_jobs.add_metric([name], channel.queued)
            inflight.add_metric([name], channel.inflight)
            consumers.add_metric([name], live.get(name, 0))
            sla.add_metric([name], state.limits.sla_of(name))
            if channel.oldest is not None and channel.queued:
                oldest.add_metric([name], max(0.0, state.now - channel.oldest))
        yield queued_jobs
        yield inflight
        yield oldest
        yield consumers
        yield sla
        # A 24 h window is a gauge (it falls as minutes leave it); columns: published, completed, failed, retried.
        done = GaugeMetricFamily(
            "jobpulse_channel_jobs_24h", "Jobs finished per channel in the last 24 h", labels=["channel", "result"]
        )
        first, last = state.minute - DAY_MINUTES + 1, state.minute
        for name, ring in sorted(state.channel_series.items()):
            done.add_metric([name, "completed"], ring.sum(first, last, 1))
            done.add_metric([name, "failed"], ring.sum(first, last, 2))
        yield done
        yield from _histograms(state, self.app_state.settings.metrics_functions)
        yield from _fold_counts(state)


# The histograms' buckets (s): a job's runtime or wait from 5 ms to an hour.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
          3600.0)  # fmt: skip


def _buckets(cells: list[Cell], which: str) -> tuple[list[tuple[str, float]], float]:
    """Prometheus' cumulative buckets and sum from sketches: each sketch bucket counts at the first bound at or
    above its upper edge, so a bound's count is exact up to the sketch's 2% edge; the sum is estimated from the
    buckets' values (within 2%)."""
    counts = [0] * (len(BOUNDS) + 1)
    total = 0.0
    for cell in cells:
        for i, n in (cell.rt if which == "rt" else cell.wt).items():
            upper = sketch.GAMMA**i if i > sketch.ZERO else sketch.MIN_VALUE
            counts[bisect_left(BOUNDS, upper * (1 - 1e-12))] += n
            total += n * sketch.value_of(i)
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*(repr(b) for b in BOUNDS), "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out, total


def _histograms(state: Any, cap: int) -> Iterator[Any]:
    """Runtime and wait histograms per channel, and per function for the `cap` busiest (cardinality)."""
    for label, stats, keep in (
        ("channel", state.channel_stats, len(state.channel_stats)),
        ("function", state.fn_stats, cap),
    ):
        busiest = sorted(stats.values(), key=lambda s: -sum(s.total.counts) - sum(s.minute_cell.counts))[:keep]
        for which, metric, what in (("rt", "runtime", "start to end"), ("wt", "wait", "queued or due to start")):
            family = HistogramMetricFamily(
                f"jobpulse_{label}_{metric}_seconds", f"Job {metric} ({what}) per {label}, since jobpulse started",
                labels=[label],
            )  # fmt: skip
            for stat in sorted(busiest, key=lambda s: s.name):
                buckets, total = _buckets([stat.total, stat.minute_cell], which)
                family.add_metric([stat.name], buckets, total)
            yield family


def _fold_counts(state: Any) -> Iterator[Any]:
    """Runtimes and waits left unmeasured, and the failure groups held (muted or not)."""
    unmeasured = CounterMetricFamily(
        "jobpulse_unmeasured", "Runtimes and waits two source clocks made negative (not in the sketches)"
    )
    unmeasured.add_metric([], state.health.unmeasured)
    yield unmeasured
    groups = GaugeMetricFamily("jobpulse_failure_groups", "Failure groups held, by whether they are muted",
                               labels=["muted"])  # fmt: skip
    muted = sum(1 for g in state.groups if g in state.group_mutes and state.group_mutes[g][0] > state.now)
    groups.add_metric(["true"], muted)
    groups.add_metric(["false"], len(state.groups) - muted)
    yield groups


def _alert_metrics(notifier: Any) -> Iterator[Any]:
    """Outbound alerts (docs/alerts.md): this process's deliveries; the shared outbox as last read."""
    if notifier is None or not notifier.enabled:
        return
    sent = CounterMetricFamily(
        "jobpulse_notifications",
        "Alert notification attempts by this process, by target and outcome (sent, retry, dead)",
        labels=["target", "outcome"],
    )
    for (target, outcome), n in sorted(notifier.counts.items()):
        sent.add_metric([target, outcome], n)
    yield sent
    outbox = notifier.outbox
    yield CounterMetricFamily(
        "jobpulse_notifications_dropped", "Notifications not enqueued: the outbox was full", value=outbox.dropped
    )
    yield CounterMetricFamily(
        "jobpulse_notify_malformed", "Alert records, outbox entries and silences that did not decode",
        value=outbox.malformed,
    )  # fmt: skip
    yield CounterMetricFamily(
        "jobpulse_notify_contended",
        "Alert plan rounds given up after repeated conflicting writes by other processes (proposed again next round)",
        value=outbox.contended,
    )
    yield CounterMetricFamily(
        "jobpulse_notify_errors", "Alert plan or delivery rounds that failed (Redis) and were retried",
        value=notifier.errors,
    )  # fmt: skip
    backlog = GaugeMetricFamily(
        "jobpulse_notifications_waiting", "Notifications in the shared outbox, by where they wait", labels=["where"]
    )
    for where, n in zip(("outbox", "retry", "dead"), notifier.backlog, strict=True):
        backlog.add_metric([where], n)
    yield backlog
    yield GaugeMetricFamily("jobpulse_alerts_firing", "Alerts firing (shared records)", value=notifier.firing)


def registry_for(app_state: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobpulseCollector(app_state))
    return registry
