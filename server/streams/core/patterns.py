"""How a user's search pattern matches a name: one rule for the job search and the runner grid.

Pure layer: standard library only. People type part of a name and expect it
found wherever it sits: `send_` in `mail.send_welcome`, `web-*-r2` in
`eu-west-web-01-r2`. So, for names (functions, runner ids, hosts, job and
correlation ids), a pattern matches case-insensitively anywhere in the name:
plain text as a substring, and `*` (any run of characters, none included) and
`?` (one character) as wildcards inside a pattern that itself floats. Keywords
(a status, a channel) are whole values: exact, or a wildcard pattern over the
whole value (`status:fail*`), since `channel:mail` finding `email` would
surprise more than help.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

WILDCARDS = frozenset("*?")

Matcher = Callable[[str], bool]


def has_wildcard(pattern: str) -> bool:
    return any(c in WILDCARDS for c in pattern)


def _regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@lru_cache(maxsize=256)
def name_matcher(pattern: str) -> Matcher:
    """True for the names in which `pattern` occurs (case-insensitive; `*` and `?` are wildcards)."""
    if not has_wildcard(pattern):
        needle = pattern.lower()
        return lambda name: needle in name.lower()
    search = re.compile(_regex(pattern), re.IGNORECASE | re.DOTALL).search
    return lambda name: search(name) is not None


@lru_cache(maxsize=256)
def keyword_matcher(pattern: str) -> Matcher:
    """True for the values equal to `pattern`, or, with wildcards, matched by it as a whole (case-sensitive, as
    statuses and channel names are)."""
    if not has_wildcard(pattern):
        return lambda value: value == pattern
    fullmatch = re.compile(_regex(pattern), re.DOTALL).fullmatch
    return lambda value: fullmatch(value) is not None
