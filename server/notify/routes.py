"""Routes: which alerts go to which target, by severity, rule, source and channel (JOBPULSE_ALERT_ROUTES).

Pure layer: standard library only. A route names a target (its name, its
kind, or its URL's host; `*` for every target) and conditions; an alert goes
to a target when one of the target's routes matches it, and to every target
no route names. A resolution goes to the targets that were told of the
firing, whatever the alert's severity became, so no receiver keeps an
incident open.

    JOBPULSE_ALERT_ROUTES="target=pager.example.com severity=critical;
                           target=webhook rule=no_runner,backlog_sla channel=email,billing"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FIELDS = ("target", "severity", "rule", "source", "channel")
# The rules whose key is a channel (server/streams/core/rules.py).
CHANNEL_RULES = frozenset({"no_runner", "failing_channel", "stuck_jobs", "backlog_sla"})
SEVERITIES = frozenset({"warning", "critical"})


@dataclass(frozen=True)
class Route:
    target: str
    severity: frozenset[str] = frozenset()  # empty: any
    rule: frozenset[str] = frozenset()
    source: frozenset[str] = frozenset()
    channel: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Addressee:
    """What a route can name a target by."""

    name: str
    kind: str
    host: str


def parse(text: str, rules: Iterable[str]) -> list[Route]:
    """JOBPULSE_ALERT_ROUTES: routes separated by `;`, each `field=value[,value...]` words; `target` is required.

    Raises:
        ValueError: saying which route and field is wrong.
    """
    known_rules = set(rules)
    routes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields: dict[str, frozenset[str]] = {}
        for word in part.split():
            name, eq, value = word.partition("=")
            values = frozenset(v for v in value.split(",") if v)
            if not eq or name not in FIELDS or not values or name in fields:
                raise ValueError(f"JOBPULSE_ALERT_ROUTES: {word!r} in {part!r} is not one of {', '.join(FIELDS)}=...")
            fields[name] = values
        if "target" not in fields or len(fields["target"]) != 1:
            raise ValueError(f"JOBPULSE_ALERT_ROUTES: {part!r} names no single target=")
        if fields.get("severity", frozenset()) - SEVERITIES:
            raise ValueError(f"JOBPULSE_ALERT_ROUTES: {part!r}: severity is warning or critical")
        if unknown := fields.get("rule", frozenset()) - known_rules:
            raise ValueError(f"JOBPULSE_ALERT_ROUTES: {part!r}: no rule {', '.join(sorted(unknown))}")
        (target,) = fields.pop("target")
        routes.append(Route(target=target, **fields))
    return routes


def matches(route: Route, rule: str, key: str, severity: str, sources: tuple[str, ...]) -> bool:
    """Does `route`'s condition hold for an alert (its rule, key and severity), given the configured sources'
    labels? With one source every alert is of it; with several, an alert's key begins with its source's label."""
    if route.severity and severity not in route.severity:
        return False
    if route.rule and rule not in route.rule:
        return False
    several = len(sources) > 1
    if route.source:
        label = key.partition(":")[0] if several else (sources[0] if sources else "")
        if label not in route.source:
            return False
    if route.channel:
        if rule not in CHANNEL_RULES:
            return False
        channel = key.partition(":")[2] if several else key
        if channel not in route.channel:
            return False
    return True


def targets_for(
    rule: str, key: str, severity: str, targets: Iterable[Addressee], routes: list[Route], sources: tuple[str, ...]
) -> list[str]:
    """The names of the targets an alert goes to."""
    out = []
    for target in targets:
        mine = [r for r in routes if r.target in ("*", target.name, target.kind, target.host)]
        if not mine or any(matches(r, rule, key, severity, sources) for r in mine):
            out.append(target.name)
    return out
