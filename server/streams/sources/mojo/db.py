"""Reads django-mojo's Postgres: new job events by id, job rows by id, and the rows worth showing at connect.

Shell layer (psycopg 3, async). Read-only: every statement is a SELECT on
jobs_jobevent or jobs_job by primary key or by an indexed column (docs/mojo.md
section 5); nothing scans a table on a timer. Times become epoch seconds and
the details' ISO times too, so the pure translator never parses a date.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from server.streams.sources.mojo.events import EventRow, JobRow
from server.streams.sources.times import epoch

log = logging.getLogger("jobpulse.mojo")

NO_PSYCOPG = "the psycopg package is not installed: pip install 'jobpulse[mojo]'"

_EVENT_COLUMNS = "id, job_id, channel, event, at, runner_id, attempt, details"
_JOB_COLUMNS = (
    "id, channel, func, status, attempt, max_retries, runner_id, last_error, stack_trace, run_at, started_at, "
    "finished_at, created, payload::text, metadata->>'cid'"
)


def _event(row: Sequence[Any]) -> EventRow:
    event_id, job, channel, name, at, runner, attempt, details = row
    details = details if isinstance(details, dict) else {}
    return EventRow(
        id=int(event_id), job=str(job), channel=str(channel), event=str(name), at=epoch(at) or 0.0,
        runner=runner or None, attempt=int(attempt or 0), details=details,
        run_at=epoch(details.get("run_at")) or epoch(details.get("next_run_at")),
    )  # fmt: skip


def _job(row: Sequence[Any]) -> JobRow:
    (job_id, channel, func, status, attempt, max_retries, runner, error, trace, run_at, started_at, finished_at,
     created, payload, cid) = row  # fmt: skip
    return JobRow(
        id=str(job_id), channel=str(channel), func=str(func or ""), status=str(status), attempt=int(attempt or 0),
        max_retries=int(max_retries or 0), runner=runner or None, error=error or "", traceback=trace or "",
        run_at=epoch(run_at), started_at=epoch(started_at), finished_at=epoch(finished_at),
        created=epoch(created) or 0.0, payload=(payload or "").encode(), cid=str(cid)[:200] if cid else None,
    )  # fmt: skip


class Stalled(TimeoutError):
    """A query got no answer within the deadline: the database or the network to it hangs."""


class MojoDatabase:
    """One autocommit connection to django-mojo's database; `connect()` again after an error.

    Every query has a deadline (`timeout_s`). Past it the query is abandoned, not awaited: psycopg answers a
    cancellation by asking the server to cancel the query and waiting up to ten seconds for that, which on a stalled
    network would keep the reader, and the "source down" it must report, waiting too.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.conn: Any = None
        self._abandoned: set[asyncio.Future[Any]] = set()

    async def connect(self) -> None:
        import psycopg

        await self.close()
        # A statement that hangs (a lock, a stalled network) must not hold the reader: the server ends it.
        options = f"-c statement_timeout={int(self.timeout_s * 10_000)} -c default_transaction_read_only=on"
        self.conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)), options=options,
            application_name="jobpulse",
        )  # fmt: skip

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

    async def _rows(self, sql: str, params: Sequence[Any] = (), slow: bool = False) -> list[tuple[Any, ...]]:
        """The rows of one query; `slow` ones (the large reads at connect) get ten times the deadline."""
        if self.conn is None:
            raise ConnectionError("not connected")
        deadline = self.timeout_s * (10 if slow else 1)
        query = asyncio.ensure_future(self._query(self.conn, sql, params))
        done, _ = await asyncio.wait({query}, timeout=deadline)
        if not done:
            query.cancel()
            self._abandoned.add(query)
            query.add_done_callback(self._forget)
            await self.close()  # ends the abandoned query's wait sooner
            raise Stalled(f"no answer within {deadline:g}s")
        return query.result()

    def _forget(self, query: asyncio.Future[Any]) -> None:
        self._abandoned.discard(query)
        if not query.cancelled() and query.exception() is not None:
            log.debug("an abandoned query ended: %s", query.exception())

    @staticmethod
    async def _query(conn: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with conn.cursor() as cur:
            await cur.execute(sql, params)
            rows: list[tuple[Any, ...]] = await cur.fetchall()
            return rows

    async def top_event(self) -> int:
        rows = await self._rows("SELECT coalesce(max(id), 0) FROM jobs_jobevent")
        return int(rows[0][0])

    async def events_after(self, after: int, limit: int) -> list[EventRow]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM jobs_jobevent WHERE id > %s ORDER BY id LIMIT %s"
        return [_event(row) for row in await self._rows(sql, (after, limit))]

    async def events_by_id(self, ids: Sequence[int]) -> list[EventRow]:
        if not ids:
            return []
        sql = f"SELECT {_EVENT_COLUMNS} FROM jobs_jobevent WHERE id = ANY(%s)"
        return [_event(row) for row in await self._rows(sql, (list(ids),))]

    async def jobs(self, ids: Sequence[str]) -> dict[str, JobRow]:
        if not ids:
            return {}
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs_job WHERE id = ANY(%s)"
        return {job.id: job for job in map(_job, await self._rows(sql, (list(ids),)))}

    async def open_jobs(self, limit: int) -> list[JobRow]:
        """Jobs waiting or running now, newest first (status is indexed)."""
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs_job WHERE status IN ('pending', 'running') ORDER BY created DESC LIMIT %s"
        )
        return [_job(row) for row in await self._rows(sql, (limit,), slow=True)]

    async def recent_jobs(self, seconds: float, limit: int) -> list[JobRow]:
        """Jobs that finished lately (created is indexed), newest first: the history a page opens on."""
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs_job WHERE created > now() - make_interval(secs => %s) "
            "AND status NOT IN ('pending', 'running') ORDER BY created DESC LIMIT %s"
        )
        return [_job(row) for row in await self._rows(sql, (seconds, limit), slow=True)]
