"""The audit log: every operator command, done or refused, appended to a Redis stream.

Shell layer. `P:jp:audit` is a stream, so entries are ordered, durable with
the store, and read back newest first in pages. Entries older than the
retention setting are trimmed by `XADD ... MINID` as new ones arrive; nothing
else removes them. docs/protocol.md section 5.5.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis.asyncio as aredis

from server.pubsub import follow
from server.streams.core.events import AuditNoted

log = logging.getLogger("jobpulse.audit")

FIELDS = ("ts", "user", "role", "auth", "action", "phase", "target", "args", "ok", "result", "count", "error", "ms",
          "cmd", "addr", "source")  # fmt: skip
SCAN_BATCH = 500
SCAN_MAX = 20_000  # entries read for one page of a filtered query, at most


@dataclass(frozen=True)
class Filters:
    user: str = ""
    action: str = ""  # exact, or a prefix ending in "." ("runner." for every runner action)
    ok: bool | None = None
    since: float | None = None
    until: float | None = None
    source: str = ""  # one of the sources the command went to (several sources)

    def match(self, entry: dict[str, Any]) -> bool:
        if self.user and entry["user"] != self.user:
            return False
        if self.action and not (
            entry["action"] == self.action or (self.action.endswith(".") and entry["action"].startswith(self.action))
        ):
            return False
        if self.ok is not None and entry["ok"] is not self.ok:
            return False
        if self.source and self.source not in entry.get("source", "").split(","):
            return False
        return not (self.since is not None and entry["ts"] < self.since)


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": _text(entry_id)}
    for name in FIELDS:
        out[name] = fields.get(name.encode(), b"").decode(errors="replace")
    out["ts"] = float(out["ts"] or 0)
    out["ok"] = out["ok"] == "1"
    out["count"] = int(out["count"]) if out["count"].lstrip("-").isdigit() else None
    out["ms"] = float(out["ms"] or 0)
    return out


class AuditLog:
    def __init__(
        self, client: aredis.Redis, prefix: str, retention_days: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.key = f"{prefix}:jp:audit"
        self.retention_s = retention_days * 86_400
        self.clock = clock

    async def append(self, entry: dict[str, Any]) -> str:
        """Append one entry (the keys of FIELDS); returns its stream id."""
        fields: dict[str, str | int | float] = {}
        for name in FIELDS:
            value = entry.get(name)
            if name == "ok":
                fields[name] = 1 if value else 0
            elif value is None:
                fields[name] = ""
            else:
                fields[name] = value if isinstance(value, int | float) else str(value)[:4000]
        min_id = int((self.clock() - self.retention_s) * 1000)
        entry_id = await self.client.xadd(self.key, fields, minid=max(min_id, 0), approximate=True)  # type: ignore[arg-type]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def page(self, filters: Filters, before: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` entries matching `filters`, newest first, older than `before` (an entry id).

        Returns the entries and the id to pass as `before` for the next page (None: no more).
        """
        upper = f"({before}" if before else "+"
        if filters.until is not None:
            until_id = f"{int(filters.until * 1000)}-18446744073709551615"
            upper = until_id if upper == "+" or (before and _id_key(until_id) < _id_key(before)) else upper
        lower = f"{int(filters.since * 1000)}-0" if filters.since is not None else "-"
        found: list[dict[str, Any]] = []
        scanned = 0
        while len(found) < limit and scanned < SCAN_MAX:
            batch = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await self.client.xrevrange(self.key, upper, lower, count=SCAN_BATCH),
            )
            if not batch:
                return found, None
            for entry_id, fields in batch:
                scanned += 1
                entry = _decode(entry_id, fields)
                if filters.match(entry):
                    found.append(entry)
                    if len(found) == limit:
                        return found, entry["id"]
            upper = f"({_text(batch[-1][0])}"
            if len(batch) < SCAN_BATCH:
                return found, None
        # Scanned the cap without filling the page: hand back where to continue.
        return found, upper[1:]

    async def count(self) -> int:
        return int(await self.client.xlen(self.key))


class LiveFeed:
    """Audit entries to every jobpulse process's `activity` widget, over `P:jp:audit-live`.

    The process that ran a command folds its entry at once (`note`), then publishes it; every process
    folds the entries the others published. An entry lost while a subscription is down is still in the
    stream, which the audit page reads.
    """

    def __init__(self, client: aredis.Redis, prefix: str, origin: str, fold: Callable[[AuditNoted], None]) -> None:
        self.client = client
        self.channel = f"{prefix}:jp:audit-live"
        self.origin = origin
        self.fold = fold
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(tuple[str, AuditNoted])
        self.dropped = 0

    async def note(self, entry: AuditNoted) -> None:
        self.fold(entry)
        try:
            await self.client.publish(self.channel, self._encoder.encode((self.origin, entry)))
        except (aredis.RedisError, OSError) as exc:
            log.warning("could not publish audit entry %s to other processes: %s", entry.id, exc)

    async def run(self) -> None:
        """Fold the other processes' entries until cancelled; resubscribe after a Redis error."""
        await follow(self.client, self.channel, self._received, what="audit feed")

    def _received(self, data: bytes) -> None:
        try:
            origin, entry = self._decoder.decode(data)
        except msgspec.DecodeError:
            self.dropped += 1
            return
        if origin != self.origin:
            self.fold(entry)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# What a spreadsheet may read as the start of a formula (OWASP, CSV injection): = + - @, tab and CR, and LF too.
FORMULA_STARTS = frozenset("=+-@\t\r\n")


def neutral_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that could start a formula gets a leading apostrophe.

    Spreadsheets skip leading blanks before a formula and some fold full-width and small forms (`＝`, `﹢`) to
    ASCII, so the first non-blank character is compared after NFKC normalisation as well as the first one.
    """
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    visible = value.lstrip()[:1]
    if first in FORMULA_STARTS or unicodedata.normalize("NFKC", visible)[:1] in FORMULA_STARTS:
        return f"'{value}"
    return value


def to_csv(entries: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", *FIELDS])
    for entry in entries:
        writer.writerow([neutral_cell(v) for v in (entry["id"], *(entry[name] for name in FIELDS))])
    return out.getvalue()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
