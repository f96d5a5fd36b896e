"""The alert lifecycle (server/notify/lifecycle.py) and the webhook's signature and backoff: examples and
properties, with no Redis and no clock."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings, strategies as st

from server.notify.lifecycle import Fire, Issue, Policy, Record, Resolve, acknowledge, decide, proposals
from server.notify.service import backoff
from server.notify.targets import shown_url, signature, verify, webhook_body
from server.settings import Settings

POLICY = Policy(min_open=30.0, remind=600.0, settle=3.0)


def issue(since: float = 1000.0, severity: str = "critical", rule: str = "no_runner", key: str = "email") -> Issue:
    return Issue(f"{rule}:{key}", rule, key, severity, f"no runner for {key}", "7 queued", since)


def test_an_issue_fires_once_open_long_enough_then_resolves_once():
    now = 1000.0
    assert list(proposals([issue(since=now)], [], now + 29.9, POLICY)) == []  # flap damping: not yet
    [proposal] = proposals([issue(since=now)], [], now + 30, POLICY)
    record, notice = decide(None, proposal, now + 30, POLICY)
    assert record is not None and notice is not None
    assert (notice.kind, record.state, record.fired_at, notice.id) == (
        "firing",
        "firing",
        now + 30,
        f"{record.episode}#1",
    )
    # Proposed again every round: no news, nothing sent.
    assert decide(record, proposal, now + 31, POLICY) == (None, None)
    # Gone from the issues: resolved once settled, with the same episode.
    assert list(proposals([], [record], now + 32, POLICY)) == []  # within `settle` of firing: a lagging view
    [resolve] = proposals([], [record], now + 40, POLICY)
    assert resolve == Resolve(record.id)
    done, notice = decide(record, resolve, now + 40, POLICY)
    assert done is not None and notice is not None
    assert (notice.kind, done.state, done.resolved_at, notice.id) == (
        "resolved",
        "resolved",
        now + 40,
        f"{record.episode}#2",
    )
    assert decide(done, resolve, now + 41, POLICY) == (None, None)


def test_a_lagging_process_cannot_fire_an_episode_already_resolved():
    record, _ = decide(None, Fire(issue(since=1000)), 1030, POLICY)
    assert record is not None
    done, _ = decide(record, Resolve(record.id), 1050, POLICY)
    assert done is not None
    # Another process still sees the episode that began at 1000 (or 1000.2 by its clock): stale.
    assert decide(done, Fire(issue(since=1000.2)), 1050.1, POLICY) == (None, None)
    # A new episode, begun after the resolution, is news.
    again, notice = decide(done, Fire(issue(since=1051)), 1081, POLICY)
    assert again is not None and notice is not None and notice.kind == "firing" and again.episode != record.episode


def test_escalation_is_news_easing_is_not_and_reminders_stop_when_acknowledged():
    record, _ = decide(None, Fire(issue(severity="warning")), 1030, POLICY)
    assert record is not None
    raised, notice = decide(record, Fire(issue(severity="critical")), 1040, POLICY)
    assert raised is not None and notice is not None and (notice.kind, raised.severity) == ("firing", "critical")
    eased, notice = decide(raised, Fire(issue(severity="warning")), 1050, POLICY)
    assert eased is not None and notice is None and eased.severity == "warning"
    reminded, notice = decide(eased, Fire(issue(severity="warning")), 1040 + 600, POLICY)
    assert reminded is not None and notice is not None and notice.kind == "reminder"
    acked = acknowledge(reminded, "ada", 1700)
    assert acked is not None and acked.acked_by == "ada"
    assert decide(acked, Fire(issue(severity="warning")), 1640 + 1200, POLICY) == (None, None)
    assert acknowledge(decide(acked, Resolve(acked.id), 3000, POLICY)[0], "ada", 3001) is None  # type: ignore[arg-type]


def test_silences_hold_the_alert_or_the_whole_rule():
    open_issue = issue(since=0)
    assert list(proposals([open_issue], [], 100, POLICY, silenced={"no_runner:email"})) == []
    assert list(proposals([open_issue], [], 100, POLICY, silenced={"no_runner"})) == []
    assert list(proposals([open_issue], [], 100, POLICY, silenced={"stuck_jobs"})) == [Fire(open_issue)]


def test_a_rule_may_have_its_own_minimum_open_time():
    policy = Policy(min_open=30.0, min_open_by_rule={"source_down": 5.0})
    down = issue(since=0, rule="source_down", key="")
    assert list(proposals([down, issue(since=0)], [], 6, policy)) == [Fire(down)]


# A property over the whole lifecycle: several processes, each seeing the same episodes of one issue a little
# late (its own lag), propose every round against one shared record, in any order.
episodes = st.lists(st.tuples(st.floats(0.5, 60), st.floats(0.5, 60)), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(timeline=episodes, lags=st.lists(st.floats(0, 0.9), min_size=1, max_size=3), order=st.randoms())
def test_processes_that_lag_send_one_firing_and_one_resolved_per_episode_that_lasts(timeline, lags, order):
    policy = Policy(min_open=10.0, remind=0.0, settle=3.0)
    starts = []
    t = 100.0
    for open_for, closed_for in timeline:
        starts.append((t, t + open_for))
        t += open_for + closed_for
    end = t + 20
    record: Record | None = None
    sent: list[tuple[str, float]] = []
    seen_since: dict[int, float | None] = dict.fromkeys(range(len(lags)))
    step = 0.5
    firing_at: dict[float, bool] = {}
    now = 100.0
    while now <= end:
        processes = list(range(len(lags)))
        order.shuffle(processes)
        for p in processes:
            view = now - lags[p]
            is_open = any(a <= view < b for a, b in starts)
            if is_open and seen_since[p] is None:
                seen_since[p] = now  # the process sees the episode open from this round on
            if not is_open:
                seen_since[p] = None
            since = seen_since[p]
            issues = [issue(since=since)] if since is not None else []
            for proposal in proposals(issues, [record] if record else [], now, policy):
                changed, notice = decide(record, proposal, now, policy)
                record = changed or record
                if notice is not None:
                    sent.append((notice.kind, now))
        firing_at[now] = record is not None and record.state == "firing"
        now += step
    kinds = [k for k, _ in sent]
    # Firing and resolved alternate, beginning with a firing and (the issue being over) ending resolved.
    assert kinds == ["firing", "resolved"] * (len(kinds) // 2)
    assert record is None or record.state == "resolved"
    # While an episode lasts past the damping (and the lags), the alert is firing; no alert fired before its
    # episode was open for the damping time.
    late = policy.min_open + max(lags) + 2 * step
    for a, b in starts:
        if b - a > late:
            assert firing_at[round_up(a + late, step)], (a, b, sent)
    for _, at in (x for x in sent if x[0] == "firing"):
        began = max(a for a, _ in starts if a <= at)  # the episode under way when it fired
        assert at >= began + policy.min_open


def round_up(t: float, step: float) -> float:
    return -(-t // step) * step


def test_the_signature_is_hmac_sha256_over_time_and_body_and_refuses_replays_and_tampering():
    body = b'{"kind":"firing"}'
    header = signature("k", 1_764_345_700, body)
    mac = hmac.new(b"k", b"1764345700." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764345700,v1={mac}"
    assert verify("k", header, body, 1_764_345_700 + 299)
    assert not verify("k", header, body, 1_764_345_700 + 301)  # replayed later than the tolerance
    assert not verify("k", header, body + b" ", 1_764_345_700)
    assert not verify("other", header, body, 1_764_345_700)
    assert not verify("k", "garbage", body, 1_764_345_700)


@given(attempt=st.integers(1, 100), rand=st.floats(0, 0.999))
def test_backoff_doubles_from_the_base_up_to_the_cap_with_half_of_it_jittered(attempt, rand):
    delay = backoff(attempt, 2.0, 300.0, rand)
    full = min(300.0, 2.0 * 2 ** (attempt - 1))
    assert full / 2 <= delay <= full


def test_a_webhook_url_is_shown_without_its_path_or_password():
    assert shown_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/…"
    assert shown_url("http://user:pw@alerts.local:9000") == "http://alerts.local:9000"


def test_the_webhook_body_says_what_happened():
    _record, notice = decide(None, Fire(issue(since=5)), 40, POLICY)
    assert notice is not None
    body = webhook_body(notice)
    assert body["version"] == 1 and body["kind"] == "firing" and body["id"] == notice.id
    assert body["alert"]["id"] == "no_runner:email" and "resolved_at" not in body["alert"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBPULSE_ALERT_WEBHOOKS": "ftp://x"}, "http:// or https://"),
        ({"JOBPULSE_ALERT_MIN_OPEN": "source_down"}, "rule=seconds"),
        ({"JOBPULSE_ALERT_TIMEOUT_S": "40", "JOBPULSE_ALERT_LEASE_S": "60"}, "twice"),
        ({"JOBPULSE_ALERT_ATTEMPTS": "0"}, "must be > 0"),
    ],
)
def test_alert_settings_that_cannot_work_are_refused(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_an_alert_in_alertmanager_form_is_held_while_firing_and_ended_when_resolved():
    from server.notify.targets import HOLD_S, alertmanager_alert

    record, _ = decide(None, Fire(issue(since=1000)), 1_764_345_700.25, POLICY)
    assert record is not None
    firing = alertmanager_alert(record, "firing", 1_764_345_800.0)
    assert firing["labels"] == {"alertname": "jobpulse_no_runner", "alert_id": "no_runner:email", "rule": "no_runner",
                                "severity": "critical", "service": "jobpulse", "key": "email"}  # fmt: skip
    assert firing["startsAt"] == "2025-11-28T16:01:40.250Z"
    assert firing["endsAt"] == "2025-11-28T16:08:20.000Z"  # held HOLD_S past the post, unless refreshed
    assert HOLD_S == 300
    assert firing["annotations"] == {"summary": record.title, "description": record.detail, "episode": record.episode}
    done, _ = decide(record, Resolve(record.id), 1_764_345_760.5, POLICY)
    assert done is not None
    resolved = alertmanager_alert(done, "resolved", 1_764_345_900.0)
    assert resolved["endsAt"] == "2025-11-28T16:02:40.500Z"  # in the past: Alertmanager resolves it
    test = alertmanager_alert(record, "test", 1_764_345_800.0)
    assert test["labels"]["alertname"] == "jobpulse_test"


def test_routes_send_an_alert_to_the_targets_whose_routes_match_and_to_every_target_no_route_names():
    from server.notify.routes import Addressee, parse, targets_for
    from server.streams.core.rules import RULES

    pager = Addressee("webhook-aa", "webhook", "pager.example.com")
    chat = Addressee("webhook-bb", "webhook", "chat.example.com")
    am = Addressee("alertmanager-cc", "alertmanager", "am.internal")
    routes = parse(
        "target=pager.example.com severity=critical; target=chat.example.com rule=no_runner,backlog_sla channel=email",
        RULES,
    )
    every = [pager, chat, am]
    one = ("native",)
    assert targets_for("no_runner", "email", "critical", every, routes, one) == [
        "webhook-aa",
        "webhook-bb",
        "alertmanager-cc",
    ]
    assert targets_for("no_runner", "billing", "critical", every, routes, one) == ["webhook-aa", "alertmanager-cc"]
    assert targets_for("backlog_sla", "email", "warning", every, routes, one) == ["webhook-bb", "alertmanager-cc"]
    assert targets_for("silent_runner", "r1", "warning", every, routes, one) == ["alertmanager-cc"]
    # Several sources: keys begin with the source's label.
    several = ("payments", "media")
    by_source = parse("target=alertmanager source=payments; target=webhook-aa channel=email", RULES)
    assert targets_for("no_runner", "payments:email", "warning", every, by_source, several) == [
        "webhook-aa", "webhook-bb", "alertmanager-cc"
    ]  # fmt: skip
    assert targets_for("no_runner", "media:video", "warning", every, by_source, several) == ["webhook-bb"]
    assert targets_for("source_down", "media", "critical", every, by_source, several) == ["webhook-bb"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severity=critical", "names no single target"),
        ("target=a severity=fatal", "warning or critical"),
        ("target=a rule=no_such_rule", "no rule no_such_rule"),
        ("target=a colour=red", "is not one of"),
        ("target=a severity=critical severity=warning", "is not one of"),
    ],
)
def test_routes_that_cannot_work_are_refused_by_name(text, message):
    from server.notify.routes import parse
    from server.streams.core.rules import RULES

    with pytest.raises(ValueError, match=message):
        parse(text, RULES)
    with pytest.raises(ValueError, match="JOBPULSE_ALERT_ROUTES"):
        Settings.from_env({"JOBPULSE_ALERT_ROUTES": text})


def test_a_pagerduty_url_through_apprise_triggers_and_resolves_the_episode_by_its_dedup_key():
    from urllib.parse import parse_qs, urlsplit

    from server.notify.targets import AppriseTarget, message

    target = AppriseTarget("apprise-x", "pagerduty://integrationkey@apikey/?region=eu")
    record, firing = decide(None, Fire(issue(since=1000)), 1030, POLICY)
    assert record is not None and firing is not None
    _, resolved = decide(record, Resolve(record.id), 1090, POLICY)
    assert resolved is not None
    fired = parse_qs(urlsplit(target.url_for(firing)).query)
    ended = parse_qs(urlsplit(target.url_for(resolved)).query)
    assert fired["action"] == ["trigger"] and ended["action"] == ["resolve"]
    assert fired["dedup"] == ended["dedup"] == [record.episode] and fired["region"] == ["eu"]
    assert fired["severity"] == ["critical"]
    slack = AppriseTarget("apprise-y", "slack://T1/B2/C3")
    assert slack.url_for(firing) == "slack://T1/B2/C3" and slack.shown == "slack://…"
    title, body = message(resolved)
    assert title == "[jobpulse] RESOLVED critical: no runner for email"
    assert "open 1m 30s, resolved at 1970-01-01T00:18:10.000Z" in body and record.episode in body


def test_apprise_urls_it_does_not_understand_are_refused_at_start():
    with pytest.raises(ValueError, match="Apprise does not understand nosuchservice://"):
        Settings.from_env({"JOBPULSE_ALERT_APPRISE": "nosuchservice://x"})
