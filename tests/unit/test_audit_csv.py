"""The audit log's CSV export shows every cell as text: nothing a user typed can start a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import pytest

from server.audit import FIELDS, neutral_cell, to_csv

# OWASP's CSV-injection triggers, and the ways around a check of the first character alone.
HOSTILE = [
    "=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1", "\n=1+1", " =1+1", "   +cmd|' /C calc'!A0",
    "\u3000=1", "＝1+1", "＋1", "－1", "＠SUM(A1)", "﹦1", " ＝1", "\t", "\r\n@x",
]  # fmt: skip
PLAIN = ["runner.ping", "email", "r-1 (us-east)", "a=b", "1-2", "x@y", "", "forbidden"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_cell_that_could_start_a_formula_is_text(value: str) -> None:
    assert neutral_cell(value) == "'" + value


@pytest.mark.parametrize("value", [*PLAIN, 7, -3, 1.5, None, True])
def test_other_cells_are_unchanged(value: object) -> None:
    assert neutral_cell(value) == value


def test_every_hostile_cell_of_an_export_reads_back_as_text() -> None:
    entries = []
    for index, value in enumerate(HOSTILE):
        entry: dict[str, object] = dict.fromkeys(FIELDS, value)
        entry.update(id=f"{index}-0", ok=False, count=1, ms=2)
        entries.append(entry)
    rows = list(csv.reader(io.StringIO(to_csv(entries))))
    assert rows[0][:3] == ["id", "ts", "user"]
    typed = {"id", "ok", "count", "ms"}  # jobpulse's own values, not text a user chose
    for row, value in zip(rows[1:], HOSTILE, strict=True):
        texts = [cell for name, cell in zip(["id", *FIELDS], row, strict=True) if name not in typed]
        assert texts and all(cell == "'" + value for cell in texts), row
