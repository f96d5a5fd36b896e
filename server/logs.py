"""Process logging: plain lines for a terminal, or one JSON object per line for a log pipeline.

Shell layer. `JOBPULSE_LOG_FORMAT=json` makes every record (jobpulse's and
uvicorn's) a single JSON line with a fixed set of keys: `ts` (RFC 3339, UTC),
`level`, `logger`, `msg`, `pid`, and `exc` when there is a traceback, plus any
`extra={...}` fields a call passes, so Loki, Elasticsearch or `jq` can filter
without parsing prose. Set up once per process, whether jobpulse runs under
`jobpulse serve` or under a bare `uvicorn` (the Procfile).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import msgspec

from server.redact import redact

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# The attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_encoder = msgspec.json.Encoder()


class RedactingFormatter(logging.Formatter):
    """Tracebacks too: an exception's message may quote the URL it was given."""

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class JsonFormatter(RedactingFormatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in body:
                body[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(body).decode()


class NoUpgradeLines(logging.Filter):
    """Drops uvicorn's line per websocket upgrade ('"WebSocket /ws" [accepted]', or 403), the websocket half of
    its access log, which `access_log=False` leaves on. A wall of pages reconnecting at once writes one per page:
    at the info level they took a fifth of the server's CPU in a 1,000-client storm (docs/reliability.md 4)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'))


_NO_UPGRADE_LINES = NoUpgradeLines()
_plain_records = logging.getLogRecordFactory()


def _redacting_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every record, jobpulse's, uvicorn's or a driver's, leaves without a URL's password (server/redact.py)."""
    record = _plain_records(*args, **kwargs)
    message = record.getMessage()
    clean = redact(message)
    if clean != message:  # rare: leave the others as they are, so filters that read `msg` still see the template
        record.msg, record.args = clean, None
    return record


def setup(level: str, fmt: str, access_log: bool = False) -> None:
    """Send jobpulse's records to stderr at `level`, as `fmt` ("text" or "json"), with uvicorn's line per websocket
    upgrade only when `access_log`; idempotent."""
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT, datefmt="%H:%M:%S")
    )
    logging.setLogRecordFactory(_redacting_record)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_jobpulse", False)]
    handler = ours[0] if ours else logging.StreamHandler()
    handler.setFormatter(formatter)
    if not ours:
        handler._jobpulse = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # httpx logs every request at info: one line per alert delivery, which jobpulse.notify already says better.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uvicorn_error = logging.getLogger("uvicorn.error")
    if access_log:
        uvicorn_error.removeFilter(_NO_UPGRADE_LINES)
    else:
        uvicorn_error.addFilter(_NO_UPGRADE_LINES)
    if fmt == "json":
        # uvicorn logs through its own handlers; give them the same shape so a pipeline sees one format.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            for h in logging.getLogger(name).handlers:
                h.setFormatter(formatter)
