"""The shell's events: the clock tick, the sources' links and reconciles, a restore from the store.

Pure layer. These events come from jobpulse itself, not from a source: the
clock moves the state's time on (runner silence, the day's windows, the rules),
a connector says its link is up or down or warns, a reconcile brings the fleet
and the depths back in line with the source's keys, and a restore brings back
what the store kept.
"""

from __future__ import annotations

from server.redact import redact
from server.streams.core import channels, functions, groups, rules, runners, series
from server.streams.core.aspects import ACTIVITY, ALERTS, ALL, HEALTH, LOGS, NOTIFY, PLATFORM, PULSE, RUNNERS, SERIES
from server.streams.core.events import (
    AuditNoted,
    LogRecorded,
    NotifyStatus,
    Reconciled,
    Rejected,
    Restored,
    ShellStats,
    SourceStatus,
    SourceWarning,
    Tick,
)
from server.streams.core.jobs import Failure
from server.streams.core.labels import MAX_LABELS
from server.streams.core.series import BUCKET_WIDTH, CHANNEL_WIDTH, LONGEST, PENDING, MinuteRing
from server.streams.core.state import Link, State

MAX_SOURCE_WARNINGS = 100  # conditions a source may hold at once (bounded like everything else)


def tick(state: State, msg: Tick) -> int:
    """The clock moved on: the minute's gauges, the pulse, runners' silence, the alert rules."""
    changed = series.advance(state, msg.now) | functions.drain(state)
    # Intake counters (events, duplicates, out-of-order) change with nearly every event; they are shown
    # once a tick rather than patched into every batch.
    health = state.health
    counters = (health.events, health.dupes, health.stale_events, health.evicted_jobs)
    if counters != health.shown:
        health.shown = counters
        changed |= HEALTH
    now = state.now
    state.day_end = msg.day_end
    if msg.connected:
        minute = int(now // 60)
        bucket = state.series.get(minute)
        if bucket is None:
            bucket = series.minute_bucket(state, minute)
            changed |= SERIES
        longest = _longest_running(state, now)
        if bucket[LONGEST] != longest:
            bucket[LONGEST] = longest
            state.dirty_minutes.add(minute)
            changed |= SERIES
        hour = series.hour_bucket(state, minute // 60)
        hour[PENDING:] = bucket[PENDING:]
    changed |= _pulse(state, now)
    for runner in state.runners.values():
        status = runners.runner_status(runner, now)
        if status != runner.status:
            changed |= runners.status_event(state, runner, status, now)
            runner.status = status
            state.dirty_runners.add(runner.id)
            changed |= RUNNERS
    if rules.evaluate(state, now):
        changed |= ALERTS
    return changed


def _longest_running(state: State, now: float) -> int:
    """Seconds the longest-running job has run (the first of the running pool started first)."""
    for job_id in state.running:
        started = state.jobs[job_id].started_at
        return max(0, int(now - started)) if started is not None else 0
    return 0


def _pulse(state: State, now: float) -> int:
    """Fold the beats received since the last tick into one heartbeat-latency sample."""
    beats = state.beats_this_tick
    if not beats:
        return 0
    latencies = sorted(lat for lat, _ in beats)
    gaps = [gap for _, gap in beats if gap is not None]
    p50 = latencies[len(latencies) // 2]
    state.pulse.append((int(now), round(p50 * 1000, 1), round(latencies[-1] * 1000, 1),
                        round(max(gaps), 2) if gaps else 0.0, len(beats)))  # fmt: skip
    state.beats_this_tick = []
    return PULSE


def _link(state: State, source: str) -> Link | None:
    """The link to `source`: a configured one (with one source configured, "" means it too), or, where none are
    configured (tests, tools), one made on first mention, at most MAX_LABELS."""
    links = state.health.links
    link = links.get(source)
    if link is not None:
        return link
    configured = state.limits.sources
    if len(configured) == 1 and not source:
        return links.get(next(iter(configured)))
    if configured or len(links) >= MAX_LABELS:
        return None  # a label nobody configured: nothing to show it under
    link = links[source] = Link(source)
    return link


def source_status(state: State, msg: SourceStatus) -> int:
    link = _link(state, msg.source)
    if link is None:
        return 0
    error = redact(msg.error)  # a driver's error may quote the URL it was given, password and all
    if link.connected == msg.connected and link.error == error and link.parts == msg.parts:
        return 0
    if link.connected != msg.connected:
        link.since = msg.at
    link.connected = msg.connected
    link.error = error
    link.parts = dict(msg.parts)
    return HEALTH


def source_warning(state: State, msg: SourceWarning) -> int:
    """Hold or clear a condition the source's connector reported; the rules raise it as an alert at the next tick."""
    link = _link(state, msg.source)
    if link is None:
        return 0
    warnings = link.warnings
    if not msg.severity:
        return HEALTH if warnings.pop(msg.key, None) is not None else 0
    value = (msg.severity, msg.title[:200], msg.detail[:500])
    if warnings.get(msg.key) == value:
        return 0
    if msg.key not in warnings and len(warnings) >= MAX_SOURCE_WARNINGS:
        return 0
    warnings[msg.key] = value
    return HEALTH


def reconciled(state: State, msg: Reconciled) -> int:
    changed = series.advance(state, msg.at) | HEALTH
    link = _link(state, msg.source)
    if link is not None:
        link.reconciled = msg.at
        if msg.rtt is not None:
            link.rtt = msg.rtt
    beating = set()
    for beat in msg.heartbeats:
        beating.add(beat.src)
        runner = runners.runner_of(state, beat.src)
        if runner.last_ts is not None and beat.boot == runner.boot and beat.ts <= runner.last_ts:
            continue  # we already know this beat or a later one
        runners.apply_beat(runner, beat)
        # The key proves a beat at beat.ts (the source's clock); map it to ours by the last skew seen.
        estimate = min(msg.at, beat.ts + runner.skew)
        if runner.last_recv is None or estimate > runner.last_recv:
            runner.last_recv = estimate
        if runner.first_seen is None:
            runner.first_seen = runner.last_recv
        runner.status = runners.runner_status(runner, state.now)
        state.dirty_runners.add(runner.id)
        changed |= RUNNERS | runners.sync_active(state, runner, beat)
    for runner_id in msg.registered:
        if runner_id not in state.runners:
            runners.runner_of(state, runner_id)  # registered but never seen beating: show it, offline
            state.dirty_runners.add(runner_id)
            changed |= RUNNERS
    if msg.complete:
        changed |= runners.forget_unregistered(state, msg, beating)
    touched = 0
    for name, depth in msg.depth.items():
        touched |= channels.set_depth(state, name, depth, depth.ts if depth.ts is not None else msg.at)
    if touched:
        changed |= touched | channels.retotal(state, msg.at)
    return changed


def restored(state: State, msg: Restored) -> int:
    state.counted_until = max(state.counted_until, msg.counted_until)
    if msg.synthetic_until is not None:
        state.synthetic_until = max(state.synthetic_until or msg.synthetic_until, msg.synthetic_until)
    for minute, values in msg.series.items():
        if minute not in state.series and len(values) <= BUCKET_WIDTH:
            state.series[minute] = [*values, *[0] * (BUCKET_WIDTH - len(values))]  # older, narrower buckets
    for hour, values in msg.hours.items():
        if hour not in state.hours and len(values) <= BUCKET_WIDTH:
            state.hours[hour] = [*values, *[0] * (BUCKET_WIDTH - len(values))]
    limits = state.limits
    for channel, minutes in msg.channel_series.items():
        ring = state.channel_series.get(channel)
        if ring is None:
            if len(state.channel_series) >= limits.max_channel_series:
                continue
            ring = state.channel_series[channel] = MinuteRing(CHANNEL_WIDTH, limits.channel_minutes)
        for minute, values in sorted(minutes.items()):
            if ring.get(minute) is None:
                for column, n in enumerate(values[:CHANNEL_WIDTH]):
                    ring.add(minute, column, n)
    series.recompute_sums(state)
    functions.drain(state)
    functions.restore(state, msg.stats, int(max(msg.now, state.now) // 60), msg.related)
    groups.restore(state, msg.groups)
    for record in msg.runners:
        beat = record.beat
        if beat.src in state.runners:
            continue
        runner = runners.runner_of(state, beat.src)
        runners.apply_beat(runner, beat)
        runner.last_recv = record.last_recv
        runner.stopped = record.stopped
        runner.stop_reason = record.stop_reason
        runner.first_seen = record.first_seen
        runner.status = runners.runner_status(runner, state.now)
    known = {f.event for f in state.failures}
    for f in reversed(msg.failures):  # newest first in the record, so append oldest first
        if f.event not in known:
            state.failures.appendleft(
                Failure(f.event, f.job, f.fn, f.channel, f.error, f.at, f.runner, f.attempt, f.traceback)
            )
    return ALL


def rejected(state: State, msg: Rejected) -> int:
    """A source's message failed the protocol: counted by reason."""
    counts = state.health.rejected
    counts[msg.reason] = counts.get(msg.reason, 0) + 1
    return HEALTH


def logged(state: State, msg: LogRecorded) -> int:
    """jobpulse logged a warning or an error: a row of the service log."""
    state.seq += 1
    state.logs.appendleft((state.seq, msg.at, msg.level, msg.logger, msg.message[:2000]))
    return LOGS


def shell_stats(state: State, msg: ShellStats) -> int:
    state.shell = dict(msg.values)
    return PLATFORM


def notify_status(state: State, msg: NotifyStatus) -> int:
    """The notifier's view of the outbox; sent every few seconds, news only when it differs."""
    if msg.at < state.notify_at:
        return 0  # an older read arriving late
    state.notify_at = msg.at
    if state.notify is not None and _same_notify(state.notify, msg):
        return 0
    state.notify = msg
    return NOTIFY


def _same_notify(a: NotifyStatus, b: NotifyStatus) -> bool:
    return (a.targets, a.waiting, a.retrying, a.dead, a.log, a.dead_letters, a.silences, a.firing) == (
        b.targets, b.waiting, b.retrying, b.dead, b.log, b.dead_letters, b.silences, b.firing
    )  # fmt: skip


def audit_noted(state: State, msg: AuditNoted) -> int:
    state.activity.appendleft(msg)
    return ACTIVITY
