"""JSON Merge Patch: RFC 7396's own examples, and diff/apply round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from server.streams.core import mergepatch

GOLDEN = Path(__file__).parent.parent / "fixtures" / "mergepatch.json"

RFC_7396_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7396_APPENDIX_A)
def test_rfc_7396_examples(target, patch, expected):
    """apply() gives the results of RFC 7396 appendix A."""
    assert mergepatch.apply(target, patch) == expected


def test_golden_cases():
    """The golden cases shared with web/js/patch.js hold for the Python apply()."""
    for case in json.loads(GOLDEN.read_text()):
        assert mergepatch.apply(case["target"], case["patch"]) == case["expected"], case


def test_diff_of_equal_views_is_none():
    """No change, no patch."""
    assert mergepatch.diff({"a": {"b": 1}}, {"a": {"b": 1}}) is None


def test_diff_touches_only_changed_rows():
    """A change to one row patches that row's changed fields only."""
    old = {"rows": {"r1": {"s": "online", "n": 1}, "r2": {"s": "busy", "n": 2}}, "order": ["r1", "r2"]}
    new = {"rows": {"r1": {"s": "stale", "n": 1}, "r2": {"s": "busy", "n": 2}}, "order": ["r1", "r2"]}
    assert mergepatch.diff(old, new) == {"rows": {"r1": {"s": "stale"}}}


views = st.recursive(
    st.integers() | st.text(max_size=3) | st.booleans() | st.lists(st.integers(), max_size=3),
    lambda children: st.dictionaries(st.text("abc", max_size=2), children, max_size=4),
    max_leaves=20,
)


@given(old=st.dictionaries(st.text("abc", max_size=2), views, max_size=4),
       new=st.dictionaries(st.text("abc", max_size=2), views, max_size=4))  # fmt: skip
def test_apply_of_diff_gives_the_new_view(old, new):
    """For views without nulls, apply(old, diff(old, new)) == new."""
    patch = mergepatch.diff(old, new)
    assert (old if patch is None else mergepatch.apply(old, patch)) == new
