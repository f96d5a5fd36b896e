"""The Failures page's widget: failures grouped by cause, the groups seen most lately first.

Pure layer: standard library only; no clock (time is `state.now`). The shape
is documented in docs/protocol.md section 3.13.
"""

from __future__ import annotations

from itertools import islice

from server.streams.core import groups
from server.streams.core.groups import Group
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits

GROUP_ROWS = 50  # groups the widget carries (the most lately seen); the total says how many there are


def _row(state: State, group: Group) -> View:
    now = state.now
    mute = state.group_mutes.get(group.id)
    minute = int(now // 60)
    row: View = {
        "type": group.type,
        "message": group.message,
        "frame": group.frame,
        "example": group.example,
        "count": group.count,
        "first": group.first,
        "last": group.last,
        "new": group.first >= now - state.limits.group_new_s,
        "hour": groups.recent(group, minute, groups.TREND_MINUTES),
        "functions": [[name, n] for name, n in group.functions.items()],
        "channels": [[name, n] for name, n in group.channels.items()],
        # Failures per minute, keyed by the minute's start (epoch s): a merge patch adds the new minute only.
        "trend": {str(m * 60): n for m, n in group.minutes.items() if m > minute - groups.TREND_MINUTES},
        "samples": [list(s) for s in group.samples],
    }
    if mute is not None and mute[0] > now:
        row["muted"] = {"until": mute[0], "by": mute[1], "reason": mute[2]}
    return row


def failure_groups(state: State, limits: ViewLimits) -> View:
    """`failure_groups`: the GROUP_ROWS groups seen most lately, newest first, and how many groups there are."""
    shown = list(islice(reversed(state.groups.values()), GROUP_ROWS))
    return {
        "rows": {g.id: _row(state, g) for g in shown},
        "order": [g.id for g in shown],
        "total": len(state.groups),
        "new_s": state.limits.group_new_s,
        "trend_minutes": groups.TREND_MINUTES,
    }
