"""The story scenario's timeline (pure), the workload knobs its phases turn, and the `simulate` options for it."""

from __future__ import annotations

import argparse
import itertools
import random

import pytest

from server.simulator import config as sim_config, scenario
from server.simulator.scenario import (
    DEPLOY,
    KINDS,
    LEGACY_BACKLOG,
    LEGACY_RUNNER,
    REFERENCE_CYCLE,
    REPORTS_STALL,
    SILENT_RUNNER,
    TIMELINE,
    WEBHOOKS_FAILING,
    Phase,
    active,
    cycle_number,
    next_change,
    phase_of,
    window,
)
from server.simulator.workload import CHANNELS, UNCONSUMED_CHANNEL, Burst, Workload

# The demo's rules (server/cli.py cmd_demo, server/settings.py): what each incident must outlast, or stay under.
HEARTBEAT_S = 2.0
OFFLINE_AFTER_S = 6.0 * HEARTBEAT_S  # stale after 2.5 intervals, offline after 6
STUCK_AFTER_S = 90.0
REPORTS_SLA_S = 60.0


def kinds(t: float, cycle: float = REFERENCE_CYCLE) -> set[str]:
    return {phase.kind for phase in active(t, cycle)}


def test_timeline_has_every_incident_once_inside_the_cycle() -> None:
    """Each kind of incident appears once, within the reference cycle."""
    assert sorted(phase.kind for phase in TIMELINE) == sorted(KINDS)
    for phase in TIMELINE:
        assert 0 <= phase.start < phase.end <= REFERENCE_CYCLE
        assert phase.what


def test_the_cycle_starts_calm_and_has_calm_between_incidents() -> None:
    """A new user first sees a healthy fleet (30 s), and there is calm again between incidents."""
    assert all(not kinds(t) for t in range(30))
    assert kinds(30) == {SILENT_RUNNER}
    # Calm between the silent runner coming back and the legacy app publishing.
    silent, legacy = phase_of(SILENT_RUNNER), phase_of(LEGACY_BACKLOG)
    assert legacy.start - silent.end >= 10
    assert all(not kinds(t) for t in range(int(silent.end), int(legacy.start)))


def test_what_holds_at_points_of_the_cycle() -> None:
    """Phases hold from their start up to (not including) their end."""
    assert kinds(29.999) == set()
    assert kinds(84.9) == {SILENT_RUNNER}
    assert kinds(85) == set()
    assert kinds(100) == {LEGACY_BACKLOG}
    assert kinds(137) == {LEGACY_BACKLOG, LEGACY_RUNNER}
    assert kinds(160) == {LEGACY_BACKLOG, LEGACY_RUNNER, REPORTS_STALL, WEBHOOKS_FAILING}
    assert kinds(210) == {LEGACY_RUNNER, REPORTS_STALL}
    assert kinds(250) == {LEGACY_RUNNER, DEPLOY}
    assert kinds(295) == {LEGACY_RUNNER}
    assert kinds(-1) == set()


def test_the_cycle_repeats() -> None:
    """What holds at t holds again a cycle later, and the cycles are counted."""
    for t in range(0, 300, 5):
        assert kinds(t) == kinds(t + 300) == kinds(t + 7 * 300)
    assert [cycle_number(t, 300) for t in (0, 299.9, 300, 1000)] == [0, 0, 1, 3]


def test_a_shorter_cycle_compresses_every_phase() -> None:
    """With a 30 s cycle every offset is a tenth: tests run the whole story in seconds."""
    silent = phase_of(SILENT_RUNNER)
    assert window(silent, 30) == pytest.approx((3.0, 8.5))
    for t in range(0, 300):
        assert kinds(t / 10, 30) == kinds(t), t


def test_next_change_is_the_next_bound_and_nothing_changes_before_it() -> None:
    """The director sleeps until next_change: what holds must not change in between."""
    bounds = sorted({b for phase in TIMELINE for b in (phase.start, phase.end)} | {REFERENCE_CYCLE})
    assert next_change(-5, 300) == 0
    assert next_change(0, 300) == bounds[0] == 30
    assert next_change(30, 300) == 85
    assert next_change(299, 300) == 300
    assert next_change(300, 300) == 330
    rng = random.Random(3)
    for _ in range(2000):
        cycle = rng.choice((300.0, 30.0, 24.0, 7.0))
        t = rng.uniform(0, 3 * cycle)
        wake = next_change(t, cycle)
        assert wake > t
        for step in (0.25, 0.5, 0.75, 0.999):
            assert active(t + step * (wake - t), cycle) == active(t, cycle)


def test_each_incident_lasts_long_enough_for_the_demo_rules_and_no_longer() -> None:
    """Each phase raises its hot issue under the demo's rules, clears it, and raises no other one."""
    silent = phase_of(SILENT_RUNNER)
    # Offline (critical) well before it comes back; its held jobs come back before they count as stuck.
    assert OFFLINE_AFTER_S * 2 < silent.end - silent.start < STUCK_AFTER_S
    stall = phase_of(REPORTS_STALL)
    # The oldest queued report passes its SLA before the release, and no stalled attempt runs into the stuck rule.
    assert REPORTS_SLA_S + 10 < stall.end - stall.start < STUCK_AFTER_S
    backlog, runner = phase_of(LEGACY_BACKLOG), phase_of(LEGACY_RUNNER)
    # "Backlog and no runner" for a while, then a runner; the runner stays while the last retries come due.
    assert runner.start - backlog.start >= 30
    assert backlog.start < runner.start < backlog.end
    assert runner.end - backlog.end >= 2 * 60  # legacy retries back off 30 s, then 60 s (x0.8-1.2)
    failing = phase_of(WEBHOOKS_FAILING)
    assert 30 <= failing.end - failing.start <= 60
    deploy = phase_of(DEPLOY)
    assert deploy.start >= max(p.end for p in TIMELINE if p.kind not in (LEGACY_RUNNER, DEPLOY))


def test_phases_are_checked() -> None:
    """An unknown kind, an empty or out-of-cycle window, or a cycle of 0 is refused."""
    with pytest.raises(ValueError, match="kind"):
        Phase("meteor", 0, 10, "x")
    with pytest.raises(ValueError, match="start < end"):
        Phase(DEPLOY, 10, 10, "x")
    with pytest.raises(ValueError, match="start < end"):
        Phase(DEPLOY, 10, 301, "x")
    with pytest.raises(ValueError, match="cycle"):
        active(5, 0)
    with pytest.raises(ValueError, match="cycle"):
        next_change(5, -1)
    with pytest.raises(KeyError):
        phase_of(DEPLOY, ())


def test_custom_timelines_work_the_same_way() -> None:
    """The functions take any timeline (data), not only the built-in one."""
    timeline = (Phase(DEPLOY, 0, 150, "a"), Phase(REPORTS_STALL, 100, 300, "b"))
    assert [p.kind for p in active(120, 300, timeline)] == [DEPLOY, REPORTS_STALL]
    assert next_change(120, 300, timeline) == 150
    assert next_change(150, 300, timeline) == 300


# ---- the workload knobs the phases turn -------------------------------------------------------------


def channel_counts(workload: Workload, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        spec = workload.next_job()
        counts[spec.channel] = counts.get(spec.channel, 0) + 1
    return counts


def test_channel_share_and_rate_factor() -> None:
    """A channel switched off gets no jobs and lowers the rate by its share; the others keep their own rates."""
    channels = (*CHANNELS[:6], UNCONSUMED_CHANNEL)
    workload = Workload(7, channels)
    assert workload.rate_factor() == 1.0
    legacy = workload.share(UNCONSUMED_CHANNEL)
    workload.set_share(UNCONSUMED_CHANNEL, 0.0)
    assert workload.rate_factor() == pytest.approx(1 - legacy)
    assert UNCONSUMED_CHANNEL not in channel_counts(workload, 3000)
    workload.set_share(UNCONSUMED_CHANNEL, scenario.LEGACY_SHARE)
    assert workload.rate_factor() == pytest.approx(1 + (scenario.LEGACY_SHARE - 1) * legacy)
    counts = channel_counts(workload, 20_000)
    share = counts[UNCONSUMED_CHANNEL] / 20_000
    assert share == pytest.approx(scenario.LEGACY_SHARE * legacy / workload.rate_factor(), rel=0.15)
    assert workload.share(UNCONSUMED_CHANNEL) == legacy  # the steady share (the layout sizes pools with it)
    workload.set_share(UNCONSUMED_CHANNEL, 1.0)
    assert workload.rate_factor() == 1.0


def test_steady_knobs_leave_the_seeded_sequence_alone() -> None:
    """Turning a share away and back gives the same jobs as a workload never touched."""
    channels = (*CHANNELS[:4], UNCONSUMED_CHANNEL)
    plain, turned = Workload(11, channels), Workload(11, channels)
    turned.set_share("email", 3.0)
    turned.set_share("email", 1.0)
    for _ in range(200):
        a, b = plain.next_job(), turned.next_job()
        assert (a.fn, a.channel, a.payload, a.delay) == (b.fn, b.channel, b.payload, b.delay)


def test_immediate_channels_are_never_scheduled_ahead() -> None:
    """The story's legacy jobs all queue now: one due later could arrive after its runner left."""
    channels = (*CHANNELS[:4], UNCONSUMED_CHANNEL)
    workload = Workload(5, channels, immediate=frozenset({UNCONSUMED_CHANNEL}))
    workload.set_share(UNCONSUMED_CHANNEL, 20.0)
    specs = [workload.next_job() for _ in range(3000)]
    legacy = [s for s in specs if s.channel == UNCONSUMED_CHANNEL]
    assert len(legacy) > 500 and all(s.delay is None for s in legacy)
    assert any(s.delay is not None for s in specs if s.channel != UNCONSUMED_CHANNEL)


def test_failure_burst_fails_most_attempts_for_good_then_ends() -> None:
    """During the burst most webhook attempts fail with the burst's error, final at once; after it, as before."""
    workload = Workload(9, (*CHANNELS[:4], UNCONSUMED_CHANNEL), hang_rate=0.0)
    before = [workload.outcome(f"p{i}", "webhooks.deliver", 1, {}, "webhooks") for i in range(2000)]
    workload.set_burst(scenario.FAILING_CHANNEL, Burst(scenario.FAIL_RATE, scenario.FAIL_ERROR))
    during = [workload.outcome(f"p{i}", "webhooks.deliver", 1, {}, "webhooks") for i in range(2000)]
    other = [workload.outcome(f"p{i}", "mail.send_welcome", 1, {}, "email") for i in range(2000)]
    failed = [o.failure for o in during if o.failure is not None]
    assert len(failed) / 2000 == pytest.approx(scenario.FAIL_RATE, abs=0.03)
    assert all(f.error.startswith("HTTPError: 401 Client Error") and not f.retryable for f in failed)
    assert sum(o.failure is not None for o in other) < 100  # only the failing channel fails
    workload.set_burst(scenario.FAILING_CHANNEL, None)
    after = [workload.outcome(f"p{i}", "webhooks.deliver", 1, {}, "webhooks") for i in range(2000)]
    assert after == before
    assert sum(o.failure is not None for o in before) < 300
    # A forced outcome (`_sim`) still decides alone.
    workload.set_burst(scenario.FAILING_CHANNEL, Burst(1.0, scenario.FAIL_ERROR))
    assert workload.outcome("x", "webhooks.deliver", 1, {"_sim": {}}, "webhooks").failure is None


def test_no_hangs_when_the_hang_rate_is_zero() -> None:
    """The story runs with no random hangs (a hung job is stuck until an operator clears it)."""
    workload = Workload(3, (*CHANNELS[:6], UNCONSUMED_CHANNEL), hang_rate=0.0)
    outcomes = (workload.outcome(f"p{i}", fn, 1, {}) for i, fn in zip(range(20_000), itertools.cycle(("a", "b"))))
    assert not any(o.hang for o in outcomes)


# ---- the `simulate` options ---------------------------------------------------------------------------------


def parse(*argv: str) -> sim_config.FleetConfig:
    parser = argparse.ArgumentParser()
    sim_config.add_arguments(parser)
    return sim_config.config_from_args(parser.parse_args(argv), "redis://x", "p")


def test_simulate_defaults_to_steady_and_takes_story_with_a_cycle() -> None:
    """`simulate` stays steady unless asked; `--scenario story --cycle 30` configures the story."""
    steady = parse()
    assert (steady.scenario, steady.cycle, steady.silent_after) == ("steady", REFERENCE_CYCLE, 90.0)
    story = parse("--scenario", "story", "--cycle", "30")
    assert (story.scenario, story.cycle) == ("story", 30.0)
    with pytest.raises(SystemExit):
        parse("--scenario", "chaos")
    with pytest.raises(SystemExit):
        parse("--cycle", "0")
    with pytest.raises(ValueError, match="scenario"):
        sim_config.FleetConfig(redis_url="", scenario="chaos")
    with pytest.raises(ValueError, match="cycle"):
        sim_config.FleetConfig(redis_url="", cycle=float("nan"))
