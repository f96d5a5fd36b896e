"""Operator actions: their argument schemas, who may do them, which need two phases, what a preview counts.

Pure layer: msgspec and the fold's state only; no I/O, no clock (`now` comes in).
docs/protocol.md section 4.4 is the table this module implements; the shell
(`server.commander`) validates with `parse_args`, decides with `decide`, counts
with `preview` and sends what `plan` says to the job system.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from server.roles import Principal, Role
from server.streams.core.events import RunnerRemoved
from server.streams.core.state import State

# A source's ids (docs/protocol.md 1.5), with room for a source's label before them (`payments:`, section 7.2).
RunnerId = Annotated[str, Meta(min_length=1, max_length=225)]
ChannelName = Annotated[str, Meta(min_length=1, max_length=125, pattern=r"^[A-Za-z0-9_.:\-]+$")]
JobId = Annotated[str, Meta(min_length=1, max_length=225)]
Timeout = Annotated[float, Meta(ge=1, le=3600)]
SAMPLE = 10
LIVE_STATUSES = ("online", "busy", "draining")


class Args(Struct, forbid_unknown_fields=True, frozen=True):
    """Base of every action's arguments: unknown keys are refused."""


class RunnersArgs(Args, forbid_unknown_fields=True, frozen=True):
    runners: list[RunnerId] | Literal["*"]


class RestartArgs(Args, forbid_unknown_fields=True, frozen=True):
    runners: list[RunnerId] | Literal["*"]
    timeout: Timeout = 30.0


class LogsArgs(Args, forbid_unknown_fields=True, frozen=True):
    runner: RunnerId
    lines: Annotated[int, Meta(ge=1, le=500)] = 100


ConfigValue = str | int | float | bool | None


class BroadcastArgs(Args, forbid_unknown_fields=True, frozen=True):
    message: Annotated[str, Meta(min_length=1, max_length=500)] | None = None
    config: Annotated[dict[Annotated[str, Meta(min_length=1, max_length=64)], ConfigValue], Meta(max_length=20)] = {}


class RunArgs(Args, forbid_unknown_fields=True, frozen=True):
    fn: Annotated[str, Meta(min_length=1, max_length=300)]
    channel: ChannelName
    payload: dict[str, Any] = {}
    run_at: float | None = None
    cid: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=20)] | None = None


class BatchArgs(Args, forbid_unknown_fields=True, frozen=True):
    channels: Annotated[list[ChannelName], Meta(min_length=1, max_length=100)] | Literal["*"]
    count: Annotated[int, Meta(ge=1, le=100)] = 5
    fn: Annotated[str, Meta(min_length=1, max_length=300)] = "jobpulse.test"


class JobArgs(Args, forbid_unknown_fields=True, frozen=True):
    job: JobId


class ChannelArgs(Args, forbid_unknown_fields=True, frozen=True):
    channel: ChannelName


class ClearStuckArgs(Args, forbid_unknown_fields=True, frozen=True):
    channel: ChannelName | None
    older_than: Annotated[float, Meta(ge=10, le=86_400)] = 60.0


class RateLimitArgs(Args, forbid_unknown_fields=True, frozen=True):
    fn: Annotated[str, Meta(min_length=1, max_length=300)]
    # Celery's form: tasks per second, minute or hour ("10/m"); "0" removes the limit.
    rate: Annotated[str, Meta(min_length=1, max_length=20, pattern=r"^(0|[1-9][0-9]{0,8}(/[smh])?)$")]


AlertId = Annotated[str, Meta(min_length=1, max_length=300)]


class AlertArgs(Args, forbid_unknown_fields=True, frozen=True):
    alert: AlertId  # a hot issue's id (`rule:key`); for silences, a rule's name too


class SilenceArgs(Args, forbid_unknown_fields=True, frozen=True):
    alert: AlertId
    minutes: Annotated[int, Meta(ge=1, le=10_080)] = 60  # at most a week
    reason: Annotated[str, Meta(max_length=200)] = ""


GroupId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}$")]


class GroupArgs(Args, forbid_unknown_fields=True, frozen=True):
    group: GroupId  # a failure group's fingerprint (server/streams/core/groups.py)


class MuteArgs(Args, forbid_unknown_fields=True, frozen=True):
    group: GroupId
    minutes: Annotated[int, Meta(ge=1, le=43_200)] = 1_440  # at most 30 days
    reason: Annotated[str, Meta(max_length=200)] = ""


class NoArgs(Args, forbid_unknown_fields=True, frozen=True):
    pass


class CleanupArgs(Args, forbid_unknown_fields=True, frozen=True):
    older_than: Annotated[float, Meta(ge=0, le=30 * 86_400)] = 300.0  # on top of being offline


Need = Literal["operator", "admin"]


@dataclass(frozen=True)
class Spec:
    """One action: its schema, the role it needs (alone and in bulk), whether it is two-phase."""

    name: str
    args: type[Args]
    role: Need
    bulk_role: Need  # the role for the bulk form (more than one runner, every channel)
    two_phase: bool  # always two-phase
    bulk_two_phase: bool  # two-phase in its bulk form
    wire: str  # the command of docs/protocol.md section 2 ("" for jobpulse's own)
    local: bool = False  # jobpulse's own (its alerts), done by jobpulse, not by a source


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("runner.ping", RunnersArgs, "operator", "operator", False, False, "ping"),
        Spec("runner.logs", LogsArgs, "operator", "operator", False, False, "logs"),
        Spec("runner.drain", RunnersArgs, "operator", "admin", False, True, "drain"),
        Spec("runner.undrain", RunnersArgs, "operator", "admin", False, True, "undrain"),
        Spec("runner.restart", RestartArgs, "operator", "admin", False, True, "restart"),
        Spec("runner.shutdown", RestartArgs, "operator", "admin", True, True, "shutdown"),
        Spec("broadcast", BroadcastArgs, "admin", "admin", True, True, "broadcast"),
        Spec("job.run", RunArgs, "operator", "operator", False, False, "run"),
        Spec("job.batch", BatchArgs, "operator", "operator", False, False, "run"),
        Spec("job.retry", JobArgs, "operator", "operator", False, False, "retry"),
        Spec("job.run_now", JobArgs, "operator", "operator", False, False, "run_now"),
        Spec("job.cancel", JobArgs, "operator", "operator", False, False, "cancel"),
        Spec("channel.pause", ChannelArgs, "operator", "operator", False, False, "pause"),
        Spec("channel.resume", ChannelArgs, "operator", "operator", False, False, "resume"),
        Spec("channel.purge", ChannelArgs, "operator", "operator", True, True, "purge"),
        Spec("channel.clear_stuck", ClearStuckArgs, "operator", "admin", True, True, "clear_stuck"),
        Spec("runners.cleanup", CleanupArgs, "admin", "admin", True, True, "cleanup"),
        # Every worker that runs the function takes the new limit: a fleet-wide change, so confirmed first.
        Spec("task.rate_limit", RateLimitArgs, "operator", "operator", True, True, "rate_limit"),
        # jobpulse's own alerts (docs/alerts.md): no source involved.
        Spec("alert.ack", AlertArgs, "operator", "operator", False, False, "", local=True),
        Spec("alert.silence", SilenceArgs, "operator", "operator", False, False, "", local=True),
        Spec("alert.unsilence", AlertArgs, "operator", "operator", False, False, "", local=True),
        # Failure groups (docs/protocol.md 4.4): a retry of every failed job of a group jobpulse holds goes to
        # each job's source as `job.retry`, one by one; always previewed first. A mute is jobpulse's own.
        Spec("group.retry", GroupArgs, "operator", "operator", True, True, "retry"),
        Spec("group.mute", MuteArgs, "operator", "operator", False, False, "", local=True),
        Spec("group.unmute", GroupArgs, "operator", "operator", False, False, "", local=True),
        # It reaches every target, pagers included: an admin's call.
        Spec("notify.test", NoArgs, "admin", "admin", False, False, "", local=True),
    )
}

_decoders = {name: msgspec.json.Decoder(spec.args) for name, spec in SPECS.items()}
_encoder = msgspec.json.Encoder(order="sorted")


class BadArgs(ValueError):
    """The arguments do not fit the action's schema; the message names the argument."""


def parse_args(action: str, args: dict[str, Any], run_payload_max: int = 16_384) -> Args:
    """Validate `args` for `action` strictly.

    Raises:
        KeyError: for an unknown action.
        BadArgs: naming the argument that does not fit.
    """
    decoder = _decoders[action]
    try:
        parsed = decoder.decode(msgspec.json.encode(args))
    except msgspec.ValidationError as exc:
        raise BadArgs(_arg_message(exc)) from None
    if isinstance(parsed, RunArgs) and len(msgspec.json.encode(parsed.payload)) > run_payload_max:
        raise BadArgs(f"payload: larger than {run_payload_max} bytes of JSON")
    if isinstance(parsed, BroadcastArgs) and parsed.message is None and not parsed.config:
        raise BadArgs("message: required (or a config)")
    if isinstance(parsed, RunnersArgs | RestartArgs) and isinstance(parsed.runners, list):
        if not 1 <= len(parsed.runners) <= 1000:
            raise BadArgs("runners: from 1 to 1000 runner ids, or '*'")
        if len(set(parsed.runners)) != len(parsed.runners):
            raise BadArgs("runners: an id appears twice")
    return parsed


def _arg_message(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.lines`"; the page wants "lines: expected `int`, got `str`".
    text = str(exc)
    message, sep, where = text.rpartition(" - at `$.")
    if sep:
        name = where.rstrip("`").split("[", 1)[0].split(".", 1)[0]
        return f"{name}: {message[0].lower()}{message[1:]}"
    if text.startswith("Object missing required field `"):
        return f"{text.split('`')[1]}: required"
    if text.startswith("Object contains unknown field `"):
        return f"{text.split('`')[1]}: not an argument of this action"
    return text


def canonical(args: Args) -> str:
    """One spelling of the arguments (sorted keys): what a confirm token and the audit log hold."""
    return _encoder.encode(args).decode()


def is_bulk(args: Args) -> bool:
    if isinstance(args, RunnersArgs | RestartArgs):
        return args.runners == "*" or len(args.runners) > 1
    if isinstance(args, ClearStuckArgs):
        return args.channel is None
    return False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    two_phase: bool
    reason: str = ""


def decide(principal: Principal, action: str, args: Args | None = None) -> Decision:
    """May `principal` do `action` (with `args`: its bulk form counts), and does it take two phases?"""
    spec = SPECS[action]
    bulk = args is not None and is_bulk(args)
    need: Role = spec.bulk_role if bulk else spec.role
    two_phase = spec.bulk_two_phase if bulk else spec.two_phase
    if not principal.at_least(need):
        form = " in bulk" if bulk and spec.bulk_role != spec.role else ""
        return Decision(False, two_phase, f"needs the {need} role{form} (you are {principal.role})")
    return Decision(True, two_phase)


def target(args: Args) -> str:
    """What an action touches, for the audit log: `runner:a`, `runners:3`, `channel:email`, `job:j1`, `*`."""
    if isinstance(args, RunnersArgs | RestartArgs):
        if args.runners == "*":
            return "runners:*"
        return f"runner:{args.runners[0]}" if len(args.runners) == 1 else f"runners:{len(args.runners)}"
    if isinstance(args, LogsArgs):
        return f"runner:{args.runner}"
    if isinstance(args, JobArgs):
        return f"job:{args.job}"
    if isinstance(args, RateLimitArgs):
        return f"task:{args.fn}"[:200]
    if isinstance(args, ChannelArgs | RunArgs):
        return f"channel:{args.channel}"
    if isinstance(args, ClearStuckArgs):
        return f"channel:{args.channel}" if args.channel else "channels:*"
    if isinstance(args, BatchArgs):
        return "channels:*" if args.channels == "*" else ",".join(f"channel:{c}" for c in args.channels)[:200]
    if isinstance(args, AlertArgs | SilenceArgs):
        return f"alert:{args.alert}"
    if isinstance(args, NoArgs):
        return "alert targets"
    if isinstance(args, GroupArgs | MuteArgs):
        return f"group:{args.group}"
    return "*"


# -- previews -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[str]
    message: str


def live_runners(state: State) -> list[str]:
    return [r.id for r in state.runners.values() if r.status in LIVE_STATUSES]


def addressed(live: list[str], args: RunnersArgs | RestartArgs) -> list[str]:
    """The runners a runner action goes to: the listed ones, or every one of `live` for '*' (the preview's from
    the state, a source's from what the fold knows of it, `server.routing.Known.live`)."""
    return list(live) if args.runners == "*" else list(args.runners)


def stuck_jobs(state: State, channel: str | None, older_than: float, now: float) -> list[str]:
    """In-flight jobs of `channel` (None: all) that started more than `older_than` ago or whose runner is gone."""
    found = []
    for job_id in state.running:
        job = state.jobs.get(job_id)
        if job is None or (channel is not None and job.channel != channel):
            continue
        runner = state.runners.get(job.runner) if job.runner else None
        gone = runner is not None and runner.status in ("stale", "offline")
        if gone or (job.started_at is not None and now - job.started_at > older_than):
            found.append(job_id)
    return found


def dead_runners(state: State, older_than: float, now: float) -> list[str]:
    """Runners offline, silent for more than `older_than` seconds (stopped or not)."""
    out = []
    for runner in state.runners.values():
        if runner.status != "offline":
            continue
        heard = runner.last_recv if runner.last_recv is not None else runner.first_seen
        if heard is None or now - heard > older_than:
            out.append(runner.id)
    return out


def forget_dead(
    dead: list[str], now: float, src: str, seqs: Iterator[int], feed: Callable[[RunnerRemoved], None]
) -> int:
    """`runners.cleanup` on a source that keeps no runner registry jobpulse could clean (Celery, django-mojo): the
    `runner.removed` events that make jobpulse forget the `dead` runners the fold found (`Known.dead`), numbered
    by `seqs` for `src`, each handed to `feed`; how many there were."""
    for runner in dead:
        feed(RunnerRemoved(v=1, src=src, seq=next(seqs), ts=now, runner=runner, reason="cleanup"))
    return len(dead)


@dataclass
class Performed:
    """What a source that does its actions itself (Celery, django-mojo) answers: the ack's result, its toast."""

    result: dict[str, Any]
    message: str
    count: int | None


def preview(state: State, action: str, args: Args, now: float) -> Preview:
    """What `action` would touch, counted from jobpulse's state."""
    if isinstance(args, RunnersArgs | RestartArgs):
        ids = addressed(live_runners(state), args)
        verb = action.split(".", 1)[1]
        if len(ids) == 1 and args.runners != "*":
            # One runner: say what happens to it, by name, with the jobs it runs now.
            runner = state.runners.get(ids[0])
            active = len(runner.active) if runner is not None else 0
            jobs = f"its {_plural(active, 'running job')}" if active else "it (it runs no job now)"
            then = {
                "restart": f" It finishes {jobs} first (those still running at the timeout are requeued), then "
                "restarts.",
                "shutdown": f" It finishes {jobs} first (those still running at the timeout are requeued), then "
                "stops, and stays down until started again.",
                "drain": " It takes no new jobs and finishes the ones it runs.",
            }.get(verb, "")
            return Preview(1, ids, f"{verb.capitalize()} {ids[0]}?{then}")
        who = "every live runner" if args.runners == "*" else _plural(len(ids), "runner")
        warn = " Running jobs are requeued after the timeout." if verb in ("restart", "shutdown") else ""
        stays = " They stay down until started again." if verb == "shutdown" else ""
        return Preview(len(ids), ids[:SAMPLE], f"{verb.capitalize()} {who} ({len(ids)})?{warn}{stays}")
    if isinstance(args, BroadcastArgs):
        ids = live_runners(state)
        return Preview(len(ids), ids[:SAMPLE], f"Broadcast to {_plural(len(ids), 'live runner')}?")
    if action == "channel.purge" and isinstance(args, ChannelArgs):
        channel = state.channels.get(args.channel)
        queued = channel.queued if channel else 0
        sample = [j for j in state.queued if (job := state.jobs.get(j)) and job.channel == args.channel][:SAMPLE]
        return Preview(
            queued, sample, f"Purge {_plural(queued, 'queued job')} of {args.channel}? This cannot be undone."
        )
    if isinstance(args, ClearStuckArgs):
        ids = stuck_jobs(state, args.channel, args.older_than, now)
        where = args.channel or "every channel"
        return Preview(
            len(ids),
            ids[:SAMPLE],
            f"Take back {_plural(len(ids), 'stuck job')} of {where} (running over {args.older_than:g} s or on a "
            "runner that stopped beating)? Each is requeued if it has attempts left, else expired.",
        )
    if isinstance(args, RateLimitArgs):
        ids = live_runners(state)
        what = "remove the rate limit of" if args.rate == "0" else f"limit to {args.rate}"
        return Preview(len(ids), ids[:SAMPLE], f"{what.capitalize()} {args.fn} on every live runner ({len(ids)})?")
    if isinstance(args, CleanupArgs):
        ids = dead_runners(state, args.older_than, now)
        left = sum(len(state.runner_jobs.get(r, ())) for r in ids)
        return Preview(
            len(ids),
            ids[:SAMPLE],
            f"Forget {_plural(len(ids), 'dead runner')} (silent over {args.older_than:g} s) and take back the "
            f"{_plural(left, 'job')} they left?",
        )
    if isinstance(args, SilenceArgs):
        return Preview(1, [args.alert], f"Silence {args.alert} for {_plural(args.minutes, 'minute')}?")
    if action == "group.retry" and isinstance(args, GroupArgs):
        ids = group_failed_jobs(state, args.group)
        group = state.groups.get(args.group)
        what = f"{group.type.rsplit('.', 1)[-1]}: {group.message[:80]}" if group is not None else args.group
        return Preview(
            len(ids),
            ids[:SAMPLE],
            f"Retry {_plural(len(ids), 'failed job')} of the group {what}? Each goes back to its channel as a new "
            "attempt; jobs that failed since the preview are retried too.",
        )
    return Preview(1, [], f"{action} {target(args)}?")


def group_failed_jobs(state: State, group: str) -> list[str]:
    """The jobs jobpulse holds whose last failure is of `group` and that are still failed, oldest first."""
    failed = state.index["status"].get("failed", ())
    jobs = state.jobs
    return [j for j in failed if (job := jobs.get(j)) is not None and job.group == group]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def audit_args(args: Args) -> str:
    """The arguments as the audit log keeps them (capped: a run payload can be 16 KB)."""
    text = canonical(args)
    return text if len(text) <= 2000 else text[:1990] + "…(cut)"


def wire_args(args: Args) -> dict[str, Any]:
    """The arguments of the section-2 command."""
    out: dict[str, Any] = json.loads(canonical(args))
    out.pop("runners", None)
    return out
