"""Job search: the query language and its answers from the fold's indexes."""

from __future__ import annotations

from typing import Any

import pytest

from server.streams.core import search
from server.streams.core.reducer import fold, initial_state
from server.streams.core.search import QueryError, parse_query, run_query
from tests.unit.factories import job

T0 = 1_800_000_000.0


@pytest.fixture
def state():
    """Twelve jobs over two channels, three functions, two runners and several outcomes."""
    st = initial_state()
    for i in range(12):
        channel = "email" if i % 2 else "reports"
        fn = ("mail.send_welcome", "mail.send_receipt", "reports.render_pdf")[i % 3]
        kw: dict[str, Any] = {"channel": channel, "fn": fn}
        fold(st, job("queued", f"j{i:02d}", ts=T0 + i, cid=f"order-{i // 3}", **kw), T0 + i)
        if i < 9:
            fold(st, job("started", f"j{i:02d}", ts=T0 + i + 1, runner=f"r{i % 2}", started_at=T0 + i + 1, **kw),
                 T0 + i + 1)  # fmt: skip
        if i < 6:
            outcome = "failed" if i % 3 == 0 else "completed"
            fold(st, job(outcome, f"j{i:02d}", ts=T0 + i + 2, runner=f"r{i % 2}", duration=float(i),
                         error="ValueError: bad" if outcome == "failed" else None, **kw), T0 + 20 + i)  # fmt: skip
    return st


def ids(result):
    return [j.id for j in result.jobs]


def test_fields_aliases_and_quotes_parse():
    """Field names have aliases; quoted values keep spaces; a dash excludes."""
    query = parse_query('state:failed queue:email task:"mail send" -worker:r1 boom')
    assert [(t.field, t.value, t.negate) for t in query.terms] == [
        ("status", "failed", False),
        ("channel", "email", False),
        ("fn", "mail send", False),
        ("runner", "r1", True),
        ("", "boom", False),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [("colour:red", "unknown field"), ("attempt:lots", "attempt takes a number"), ("x " * 13, "at most 12")],
)
def test_bad_queries_name_the_problem(text, words):
    """An unknown field, a bad attempt or too many terms raise QueryError naming the problem."""
    with pytest.raises(QueryError, match=words):
        parse_query(text)


def test_exact_and_combined_filters(state):
    """Indexed filters combine; the total counts every match."""
    result = run_query(state, parse_query("status:completed channel:email"))
    assert sorted(ids(result)) == ["j01", "j05"]
    assert result.total == 2


def test_wildcards_negation_and_attempt(state):
    """`*` matches function names; `-field` excludes; attempt compares."""
    assert sorted(ids(run_query(state, parse_query("func:mail.send_* -status:queued -status:running")))) == [
        "j00",
        "j01",
        "j03",
        "j04",
    ]
    assert run_query(state, parse_query("attempt:>1")).total == 0
    assert run_query(state, parse_query("attempt:1")).total == 12


def test_live_statuses_come_from_their_pools(state):
    """queued and running are answered from the live pools, not scanned."""
    assert sorted(ids(run_query(state, parse_query("status:queued")))) == ["j09", "j10", "j11"]
    assert sorted(ids(run_query(state, parse_query("status:running"), limit=50))) == ["j06", "j07", "j08"]


def test_bare_words_match_id_function_and_correlation_id(state):
    """A bare word is a case-insensitive substring of the id, the function or the correlation id."""
    assert sorted(ids(run_query(state, parse_query("ORDER-3")))) == ["j09", "j10", "j11"]
    assert run_query(state, parse_query("render_pdf")).total == 4


def test_error_text_filter(state):
    """error: matches inside the error message."""
    assert sorted(ids(run_query(state, parse_query("error:bad")))) == ["j00", "j03"]


@pytest.mark.parametrize(
    ("sort", "first"),
    [("-updated", "j11"), ("updated", "j06"), ("-duration", "j05"), ("started", "j09"), ("-id", "j11"), ("id", "j00")],
)
def test_sorts(state, sort, first):
    """Every sort orders the page; the newest-first default walks the jobs in update order."""
    assert ids(run_query(state, parse_query(""), sort, 0, 3))[0] == first


def test_paging(state):
    """offset and limit cut pages out of the sorted matches; the total does not change."""
    first = run_query(state, parse_query(""), "id", 0, 5)
    second = run_query(state, parse_query(""), "id", 5, 5)
    assert ids(first) + ids(second) == [f"j{i:02d}" for i in range(10)]
    assert first.total == second.total == 12
    with pytest.raises(QueryError):
        run_query(state, parse_query(""), "id", search.MAX_OFFSET + 1, 5)
    with pytest.raises(QueryError):
        run_query(state, parse_query(""), "sideways")


def test_find_by_id_then_correlation_id(state):
    """Lookup gives the job with that id, then the jobs with that correlation id, newest first."""
    assert [j.id for j in search.find(state, "j03")] == ["j03"]
    assert [j.id for j in search.find(state, "order-1")] == ["j05", "j04", "j03"]
    assert search.find(state, "nothing") == []


def test_the_examples_people_are_shown_find_what_they_promise(state):
    """The job table's placeholder and the README's example find jobs: a name pattern matches anywhere in the name
    (`func:send_*` in mail.send_welcome), while keywords stay whole values (`channel:mail` is not `email`)."""
    assert ids(run_query(state, parse_query("status:failed channel:email func:send_*"))) == ["j03"]
    assert run_query(state, parse_query("func:send_*")).total == 8
    assert run_query(state, parse_query("func:*send*")).total == 8
    assert run_query(state, parse_query("func:SEND_w?lcome")).total == 4
    assert run_query(state, parse_query("func:send_welcome")).total == 4  # a plain name is found inside one
    assert run_query(state, parse_query("send_*")).total == 8  # so is a bare pattern
    assert run_query(state, parse_query("channel:mail")).total == 0
    assert run_query(state, parse_query("channel:e*")).total == 6
    assert run_query(state, parse_query("status:fail*")).total == 2
    assert run_query(state, parse_query("cid:order-3")).total == 3
    assert run_query(state, parse_query("-func:send_*")).total == 4


@pytest.mark.parametrize(
    ("pattern", "name", "found"),
    [
        ("web-*-r2", "eu-west-web-01-r2", True),
        ("web-*-r2", "eu-west-web-01-r3", False),
        ("WEB", "eu-west-web-01-r2", True),
        ("w?b-01", "eu-west-web-01-r2", True),
        ("a.b", "axb", False),  # only * and ? are special
        ("[ab]", "a", False),
        ("*", "", True),
    ],
)
def test_a_name_pattern_floats_and_only_star_and_question_mark_are_wild(pattern, name, found):
    from server.streams.core.patterns import name_matcher

    assert name_matcher(pattern)(name) is found


def test_the_runner_grid_finds_its_placeholder_pattern_and_counts_within_the_search():
    """The runners page's placeholder `web-*-r2` finds runners; the status and region counts are those of the
    runners the search finds, so the filters still offer real choices."""
    from server.streams.core.widgets import ViewLimits
    from server.streams.core.widgets.fleet import fleet
    from tests.unit.factories import beat

    st = initial_state()
    for region in ("eu-west", "us-east"):
        for n in range(3):
            for replica in ("r1", "r2"):
                src = f"{region}-web-0{n}-{replica}"
                fold(st, beat(src, ts=T0, region=region, host=f"host-{n}"), T0)
    view = fleet(st, ViewLimits(), q="web-*-r2")
    assert view["total"] == 6 and all(r.endswith("-r2") for r in view["order"])
    assert sum(view["counts"].values()) == 6 and view["regions"] == {"eu-west": 3, "us-east": 3}
    assert fleet(st, ViewLimits(), q="web-*-r2", region="us-east")["total"] == 3
    assert fleet(st, ViewLimits(), q="HOST-1")["total"] == 4  # the host, case-insensitive
