"""Prometheus metrics at `/metrics`: jobpulse's own health and the fleet's, read when scraped.

Shell layer. A custom collector reads the live state and the hub's counters at
scrape time, so nothing is counted twice and the hot path (fold, fan-out) pays
nothing per event. The text format is prometheus-client's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from server.handlers.ws import BAD_FRAME
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
