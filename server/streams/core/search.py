"""Job search: a small query language, parsed and answered from the fold's in-memory indexes.

Pure layer: standard library only. `parse_query("status:failed channel:email func:send_* boom")`
gives a `Query`; `run_query(state, query, sort, offset, limit)` answers it from
the indexes the reducer keeps (jobs by status, channel, function, runner), so a
request never scans Redis and rarely scans every job.

Grammar: whitespace-separated terms. `field:value` filters (fields below;
`-field:value` excludes); `"quoted values"` may hold spaces; a bare word
matches the job id, function or correlation id. Values match as
`server/streams/core/patterns.py` says: a name (function, runner, id, correlation
id) wherever the pattern occurs in it, case-insensitively, with `*` and `?` as
wildcards (`func:send_*` finds `mail.send_welcome`); a keyword (status,
channel, source) as a whole value. With several sources, `source:pay` keeps
the jobs of source `pay`, and `channel:email` finds every source's `email`
(`channel:pay:email` the one of `pay`).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set as AbstractSet
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from server.streams.core.jobs import Ids, Job
from server.streams.core.labels import SEP, source_of
from server.streams.core.patterns import has_wildcard, keyword_matcher, name_matcher
from server.streams.core.state import State

FIELDS = {
    "status": "status",
    "state": "status",
    "channel": "channel",
    "ch": "channel",
    "queue": "channel",
    "func": "fn",
    "fn": "fn",
    "function": "fn",
    "task": "fn",
    "runner": "runner",
    "worker": "runner",
    "cid": "cid",
    "id": "job",
    "job": "job",
    "error": "error",
    "attempt": "attempt",
    "source": "source",
    "system": "source",
}
INDEXED = ("status", "channel", "fn", "runner")
KEYWORDS = frozenset({"status", "channel", "source"})  # matched as whole values; the other fields are names
SORTS = ("updated", "-updated", "queued", "-queued", "started", "-started", "duration", "-duration", "attempt",
         "-attempt", "id", "-id")  # fmt: skip
MAX_TERMS = 12
MAX_VALUE = 200
MAX_OFFSET = 10_000  # pages beyond this are not served (narrow the query instead)

_TERM = re.compile(r'(-?)(?:([A-Za-z_]+):)?(?:"([^"]*)"|(\S+))')


class QueryError(ValueError):
    """A query that cannot be run; the message names the problem."""


@dataclass(frozen=True)
class Term:
    field: str  # one of FIELDS' values, or "" for a bare word
    value: str
    negate: bool = False

    @property
    def wildcard(self) -> bool:
        return has_wildcard(self.value)

    def matcher(self) -> Callable[[str], bool]:
        """How this term's value matches a field's value (a keyword as a whole, a name anywhere in it)."""
        return keyword_matcher(self.value) if self.field in KEYWORDS else name_matcher(self.value)


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()
    text: str = ""

    def canonical(self) -> str:
        """The query rewritten in a normal form (field names resolved, terms sorted)."""
        parts = []
        for term in sorted(self.terms, key=lambda t: (t.field, t.negate, t.value)):
            value = f'"{term.value}"' if " " in term.value or not term.value else term.value
            prefix = "-" if term.negate else ""
            parts.append(f"{prefix}{term.field}:{value}" if term.field else f"{prefix}{value}")
        return " ".join(parts)


def parse_query(text: str) -> Query:
    """Parse a search string.

    Raises:
        QueryError: an unknown field, too many terms, or a value too long.
    """
    text = text.strip()
    terms = []
    for match in _TERM.finditer(text):
        negate, name, quoted, plain = match.groups()
        value = quoted if quoted is not None else plain
        if name is None and value is None:
            continue
        if len(value) > MAX_VALUE:
            raise QueryError(f"a value is longer than {MAX_VALUE} characters")
        if name is not None:
            resolved = FIELDS.get(name.lower())
            if resolved is None:
                raise QueryError(f"unknown field {name!r}; fields: {', '.join(sorted(set(FIELDS)))}")
            if resolved == "attempt" and not re.fullmatch(r"[<>]?=?\d{1,4}", value):
                raise QueryError("attempt takes a number, optionally with <, >, <= or >=")
            terms.append(Term(resolved, value, bool(negate)))
        else:
            terms.append(Term("", value, bool(negate)))
    if len(terms) > MAX_TERMS:
        raise QueryError(f"at most {MAX_TERMS} terms")
    return Query(tuple(terms), text)


@dataclass
class Result:
    """One page of matching jobs, and how many match in all."""

    jobs: list[Job] = field(default_factory=list)
    total: int = 0


class _Sets(Mapping[str, AbstractSet[str]]):
    """An index read as sets: the fold keeps a value's ids as a 1-tuple or a dict (state.Ids)."""

    __slots__ = ("_index",)

    def __init__(self, index: Mapping[str, Ids | AbstractSet[str]]) -> None:
        self._index = index

    def __getitem__(self, value: str) -> AbstractSet[str]:
        ids = self._index[value]
        if isinstance(ids, tuple):
            return frozenset(ids)
        return ids.keys() if isinstance(ids, dict) else ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def _index(state: State, name: str) -> Mapping[str, AbstractSet[str]]:
    if name != "status":
        return _Sets(state.index[name])
    # Live statuses are indexed by their ordered pools; settled ones by the fold's index.
    live = {"queued": state.queued.keys(), "running": state.running.keys(), "scheduled": state.scheduled.keys()}
    return _Sets({**state.index["status"], **{k: v for k, v in live.items() if v}})


def _candidates(state: State, query: Query) -> tuple[AbstractSet[str] | None, set[int]]:
    """Job ids that can match, from the indexes, and which terms the indexes answered in full.

    The ids are None when no positive indexed term narrows the search.
    """
    best: AbstractSet[str] | None = None
    answered: set[int] = set()
    for position, term in enumerate(query.terms):
        if term.negate or term.field not in INDEXED:
            continue
        index = _index(state, term.field)
        ids: AbstractSet[str]
        if term.field in KEYWORDS and not term.wildcard:
            names = _names(state, term)
            ids = index.get(names[0], set()) if len(names) == 1 else set().union(*(index.get(n, ()) for n in names))
        else:
            matches = _term_matcher(state, term)
            keys = [k for k in index if matches(k)]
            ids = set().union(*(index[k] for k in keys)) if keys else set()
        answered.add(position)
        best = ids if best is None else best & ids
        if not best:
            return set(), answered
    return best, answered


def _attempt_test(value: str) -> Callable[[int], bool]:
    op = re.match(r"[<>]?=?", value).group(0)  # type: ignore[union-attr]
    n = int(value[len(op) :])
    return {
        "": lambda a: a == n,
        "=": lambda a: a == n,
        "<": lambda a: a < n,
        ">": lambda a: a > n,
        "<=": lambda a: a <= n,
        ">=": lambda a: a >= n,
    }[op]


def _names(state: State, term: Term) -> list[str]:
    """The values a keyword term stands for: with several sources, a channel of every source by its own name."""
    if term.field == "channel" and state.limits.several and SEP not in term.value:
        return [term.value, *(f"{label}{SEP}{term.value}" for label in state.limits.sources)]
    return [term.value]


def _term_matcher(state: State, term: Term) -> Callable[[str], bool]:
    matches = term.matcher()
    if term.field == "channel" and state.limits.several:
        # `channel:email` or `channel:em*` also find `pay:email`: a source's channels by their own names.
        return lambda name: matches(name) or matches(name.partition(SEP)[2])
    return matches


def _matcher(state: State, query: Query) -> Callable[[Job], bool]:
    tests: list[Callable[[Job], bool]] = []
    for term in query.terms:
        test = _term_test(state, term)
        tests.append((lambda t: lambda job: not t(job))(test) if term.negate else test)
    if not tests:
        return lambda job: True
    return lambda job: all(t(job) for t in tests)


def _term_test(state: State, term: Term) -> Callable[[Job], bool]:
    value = term.value
    if term.field == "source":
        sources, matches = state.limits.sources, term.matcher()
        return lambda job: matches(source_of(job.id, sources))
    if term.field == "attempt":
        check = _attempt_test(value)
        return lambda job: check(job.attempt)
    if term.field == "":
        word = name_matcher(value)
        return lambda job: word(job.id) or word(job.fn) or (job.cid is not None and word(job.cid))
    if term.field == "error":
        needle = value.lower().strip("*")
        return lambda job: job.error is not None and needle in job.error.lower()
    getter: Callable[[Job], str | None] = {
        "status": lambda job: job.status,
        "channel": lambda job: job.channel,
        "fn": lambda job: job.fn,
        "runner": lambda job: job.runner,
        "cid": lambda job: job.cid,
        "job": lambda job: job.id,
    }[term.field]
    matches = _term_matcher(state, term)
    return lambda job: (v := getter(job)) is not None and matches(v)


def _sort_key(sort: str) -> tuple[Callable[[Job], Any], bool]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    keys: dict[str, Callable[[Job], Any]] = {
        "updated": lambda j: j.updated,
        "queued": lambda j: j.queued_at or 0.0,
        "started": lambda j: j.started_at or 0.0,
        "duration": lambda j: j.duration or -1.0,
        "attempt": lambda j: j.attempt,
        "id": lambda j: j.id,
    }
    return keys[name], descending


def run_query(state: State, query: Query, sort: str = "-updated", offset: int = 0, limit: int = 50) -> Result:
    """Answer a query: the page [offset, offset + limit) in `sort` order, and the total count.

    Raises:
        QueryError: an unknown sort, or a page beyond what is kept.
    """
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r}; sorts: {', '.join(SORTS)}")
    if not 0 <= offset <= MAX_OFFSET or not 1 <= limit <= 500:
        raise QueryError(f"offset must be 0..{MAX_OFFSET} and limit 1..500")
    jobs = state.jobs
    candidates, answered = _candidates(state, query)
    rest = Query(tuple(t for i, t in enumerate(query.terms) if i not in answered))
    want = offset + limit
    if sort == "-updated" and candidates is None:
        # The commonest view, everything newest first: jobs are kept in update order, so walk it backwards.
        if not rest.terms:
            return Result(list(islice(reversed(jobs.values()), offset, want)), len(jobs))
        matched = _filter(state, jobs.values(), rest)
        return Result(matched[::-1][offset:want], len(matched))
    pool: Iterable[Job] = jobs.values() if candidates is None else [jobs[i] for i in candidates if i in jobs]
    matched = _filter(state, pool, rest)
    key, descending = _sort_key(sort)
    top = (heapq.nlargest if descending else heapq.nsmallest)(want, matched, key=key)
    return Result(top[offset:want], len(matched))


def _filter(state: State, pool: Iterable[Job], query: Query) -> list[Job]:
    """The jobs of `pool` that match every term (which the indexes did not answer)."""
    if not query.terms:
        return list(pool)
    if all(t.field == "" and not t.negate and not t.wildcard for t in query.terms):
        # Bare words only (the search box): one comprehension, no call per job, is several times faster.
        found = list(pool)
        for term in query.terms:
            needle = term.value.lower()
            found = [
                j for j in found if needle in j.id.lower() or needle in j.fn.lower() or needle in (j.cid or "").lower()
            ]
        return found
    matches = _matcher(state, query)
    return [j for j in pool if matches(j)]


def find(state: State, needle: str, limit: int = 20) -> list[Job]:
    """Job lookup: the job with id `needle` first, then the jobs whose correlation id is `needle`, newest first."""
    jobs = state.jobs
    out = []
    job = jobs.get(needle)
    if job is not None:
        out.append(job)
    related = [jobs[i] for i in state.index["cid"].get(needle, ()) if i != needle and i in jobs]
    out.extend(heapq.nlargest(limit - len(out), related, key=lambda j: (j.updated, j.id)))
    return out
