"""Realistic job errors: one-line messages and multi-line Python tracebacks, per kind of failure.

Each error kind names the exception a real job would raise (SMTP, HTTP, database,
storage, payments, media tools), the job's own line that called into the library,
and the library frames below it. Rendering draws only from the random generator
it is given, so a seeded attempt always fails the same way.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Frame = tuple[str, int, str, str]
"""file, line, function, source line"""

PY = "/usr/local/lib/python3.11"
SITE = f"{PY}/site-packages"


@dataclass(frozen=True)
class ErrorKind:
    """One way a job fails: the exception, how its message reads, and where it was raised."""

    exc: str
    message: str
    call: str
    frames: tuple[Frame, ...]
    cause: ErrorKind | None = None
    retryable: bool = True
    """False for errors another attempt cannot fix (bad input, a declined card): the job fails at once."""


def _kind(
    exc: str, message: str, call: str, *frames: Frame, cause: ErrorKind | None = None, retryable: bool = True
) -> ErrorKind:
    return ErrorKind(exc, message, call, frames, cause, retryable)


def _http_status(code: int, reason: str, retryable: bool = True) -> ErrorKind:
    """requests' HTTPError for an answer with an error status, as raise_for_status raises it."""
    side = "Client" if code < 500 else "Server"
    return _kind(
        "requests.exceptions.HTTPError",
        f"{code} {side} Error: {reason} for url: {{url}}",
        "response.raise_for_status()",
        (f"{SITE}/requests/models.py", 1024, "raise_for_status", "raise HTTPError(http_error_msg, response=self)"),
        retryable=retryable,
    )


_URLLIB3_READ = _kind(
    "urllib3.exceptions.ReadTimeoutError",
    "HTTPSConnectionPool(host='{host}', port=443): Read timed out. (read timeout={timeout})",
    "",
    (f"{SITE}/urllib3/connectionpool.py", 536, "_make_request", "response = conn.getresponse()"),
    (f"{SITE}/urllib3/connection.py", 461, "getresponse", "httplib_response = super().getresponse()"),
    (f"{PY}/socket.py", 706, "readinto", "return self._sock.recv_into(b)"),
)

_REQUESTS_SEND: tuple[Frame, ...] = (
    (f"{SITE}/requests/api.py", 115, "post", 'return request("post", url, data=data, json=json, **kwargs)'),
    (f"{SITE}/requests/sessions.py", 589, "request", "resp = self.send(prep, **send_kwargs)"),
    (f"{SITE}/requests/sessions.py", 703, "send", "r = adapter.send(request, **kwargs)"),
)

ERRORS: dict[str, ErrorKind] = {
    "smtp_disconnected": _kind(
        "smtplib.SMTPServerDisconnected",
        "Connection unexpectedly closed",
        "smtp.send_message(message)",
        (
            f"{PY}/smtplib.py",
            986,
            "send_message",
            "return self.sendmail(from_addr, to_addrs, flatten_msg, mail_options,",
        ),
        (f"{PY}/smtplib.py", 887, "sendmail", "(code, resp) = self.mail(from_addr, esmtp_opts)"),
        (f"{PY}/smtplib.py", 405, "getreply", 'raise SMTPServerDisconnected("Connection unexpectedly closed")'),
    ),
    "smtp_refused": _kind(
        "smtplib.SMTPRecipientsRefused",
        "{{'{email}': (550, b'5.1.1 <{email}>: Recipient address rejected: User unknown')}}",
        "smtp.send_message(message)",
        (
            f"{PY}/smtplib.py",
            986,
            "send_message",
            "return self.sendmail(from_addr, to_addrs, flatten_msg, mail_options,",
        ),
        (f"{PY}/smtplib.py", 901, "sendmail", "raise SMTPRecipientsRefused(senderrs)"),
        retryable=False,
    ),
    "smtp_timeout": _kind(
        "TimeoutError",
        "timed out",
        "smtp = smtplib.SMTP(settings.EMAIL_HOST, 587, timeout=10)",
        (f"{PY}/smtplib.py", 255, "__init__", "(code, msg) = self.connect(host, port)"),
        (f"{PY}/smtplib.py", 341, "connect", "self.sock = self._get_socket(host, port, self.timeout)"),
        (f"{PY}/socket.py", 836, "create_connection", "sock.connect(sa)"),
    ),
    "http_timeout": _kind(
        "requests.exceptions.ReadTimeout",
        "HTTPSConnectionPool(host='{host}', port=443): Read timed out. (read timeout={timeout})",
        "response = requests.post(url, json=body, headers=headers, timeout={timeout})",
        *_REQUESTS_SEND,
        (f"{SITE}/requests/adapters.py", 713, "send", "raise ReadTimeout(e, request=request)"),
        cause=_URLLIB3_READ,
    ),
    "http_502": _http_status(502, "Bad Gateway"),
    "http_503": _http_status(503, "Service Unavailable"),
    "http_401": _http_status(401, "Unauthorized", retryable=False),
    "conn_refused": _kind(
        "requests.exceptions.ConnectionError",
        "HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded with url: /{path} "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f{hex6}>: "
        "Failed to establish a new connection: [Errno 111] Connection refused'))",
        "response = requests.post(url, json=body, headers=headers, timeout={timeout})",
        *_REQUESTS_SEND,
        (f"{SITE}/requests/adapters.py", 700, "send", "raise ConnectionError(e, request=request)"),
    ),
    "db_timeout": _kind(
        "django.db.utils.OperationalError",
        "canceling statement due to statement timeout",
        "rows = list(queryset.iterator(chunk_size=2000))",
        (f"{SITE}/django/db/models/query.py", 516, "_iterator", "yield from iterable"),
        (f"{SITE}/django/db/models/sql/compiler.py", 1562, "execute_sql", "cursor.execute(sql, params)"),
        (f"{SITE}/django/db/backends/utils.py", 105, "_execute", "return self.cursor.execute(sql, params)"),
        (f"{SITE}/psycopg/cursor.py", 732, "execute", "raise ex.with_traceback(None)"),
    ),
    "db_deadlock": _kind(
        "django.db.utils.OperationalError",
        "deadlock detected\n"
        "DETAIL:  Process {pid} waits for ShareLock on transaction {txn}; blocked by process {pid2}.",
        "Event.objects.bulk_create(batch, ignore_conflicts=True)",
        (f"{SITE}/django/db/models/query.py", 786, "bulk_create", "returned_columns = self._batched_insert("),
        (f"{SITE}/django/db/backends/utils.py", 105, "_execute", "return self.cursor.execute(sql, params)"),
        (f"{SITE}/psycopg/cursor.py", 732, "execute", "raise ex.with_traceback(None)"),
    ),
    "key_error": _kind("KeyError", "'{field}'", "account_id = payload['{field}']", retryable=False),
    "value_error": _kind(
        "ValueError",
        "invalid literal for int() with base 10: 'N/A'",
        "total = sum(int(row['amount']) for row in rows)",
        retryable=False,
    ),
    "weasyprint_fetch": _kind(
        "weasyprint.urls.URLFetchingError",
        "HTTPError: HTTP Error 404: Not Found (https://cdn.{company}.example/reports/{hex6}/logo.png)",
        "HTML(string=html, base_url=base_url).write_pdf(target)",
        (f"{SITE}/weasyprint/__init__.py", 253, "write_pdf", "self.render(font_config, counter_style, **options)"),
        (f"{SITE}/weasyprint/urls.py", 316, "fetch", "raise URLFetchingError(f'{type(exc).__name__}: {exc}')"),
    ),
    "memory": _kind(
        "MemoryError",
        "",
        "frame = pandas.DataFrame.from_records(rows)",
        (f"{SITE}/pandas/core/frame.py", 2443, "from_records", "arrays, arr_columns = to_arrays(data, columns)"),
        (f"{SITE}/pandas/core/internals/construction.py", 845, "to_arrays", "arr = _list_to_arrays(data)"),
    ),
    "s3_slowdown": _kind(
        "botocore.exceptions.ClientError",
        "An error occurred (SlowDown) when calling the PutObject operation (reached max retries: 4): "
        "Please reduce your request rate.",
        "s3.upload_fileobj(buffer, bucket, key)",
        (f"{SITE}/boto3/s3/inject.py", 642, "upload_fileobj", "return future.result()"),
        (f"{SITE}/s3transfer/futures.py", 103, "result", "return self._coordinator.result()"),
        (f"{SITE}/botocore/client.py", 1023, "_make_api_call", "raise error_class(parsed_response, operation_name)"),
    ),
    "ffmpeg_exit": _kind(
        "subprocess.CalledProcessError",
        "Command '['ffmpeg', '-y', '-i', '/tmp/{hex6}.mov', '-c:v', 'libx264', '-preset', 'veryfast', "
        "'/tmp/{hex6}.mp4']' returned non-zero exit status 1.",
        "subprocess.run(command, check=True, capture_output=True, timeout=900)",
        (f"{PY}/subprocess.py", 571, "run", "raise CalledProcessError(retcode, process.args,"),
    ),
    "pil_unidentified": _kind(
        "PIL.UnidentifiedImageError",
        "cannot identify image file <_io.BytesIO object at 0x7f{hex6}>",
        "image = Image.open(io.BytesIO(blob))",
        (f"{SITE}/PIL/Image.py", 3498, "open", "raise UnidentifiedImageError(msg)"),
        retryable=False,
    ),
    "card_declined": _kind(
        "stripe._error.CardError",
        "Request req_{hex12}: Your card was declined.",
        "stripe.PaymentIntent.confirm(intent_id, payment_method=method)",
        (
            f"{SITE}/stripe/_api_requestor.py",
            197,
            "request",
            "resp = requestor._interpret_response(rbody, rcode, rheaders)",
        ),
        (
            f"{SITE}/stripe/_api_requestor.py",
            844,
            "_interpret_response",
            "self.handle_error_response(rbody, rcode, resp.data, rheaders)",
        ),
        retryable=False,
    ),
    "stripe_rate_limit": _kind(
        "stripe._error.RateLimitError",
        "Request req_{hex12}: Too many requests hit the API too quickly.",
        "stripe.Customer.modify(customer_id, **changes)",
        (
            f"{SITE}/stripe/_api_requestor.py",
            844,
            "_interpret_response",
            "self.handle_error_response(rbody, rcode, resp.data, rheaders)",
        ),
    ),
    "apns_bad_token": _kind(
        "aioapns.exceptions.ConnectionError",
        "APNs returned 410 Unregistered for device token {hex12}…",
        "result = await apns.send_notification(request)",
        (f"{SITE}/aioapns/client.py", 87, "send_notification", "raise ConnectionError(response.description)"),
        retryable=False,
    ),
    "twilio_error": _kind(
        "twilio.base.exceptions.TwilioRestException",
        "HTTP 400 error: Unable to create record: The 'To' number {phone} is not a valid phone number.",
        "client.messages.create(to=to, from_=settings.TWILIO_FROM, body=body)",
        (f"{SITE}/twilio/rest/api/v2010/account/message/__init__.py", 755, "create", "payload = self._version.create("),
        (f"{SITE}/twilio/base/version.py", 465, "create", "return self._parse_create(method, uri, response)"),
        retryable=False,
    ),
    "es_timeout": _kind(
        "elasticsearch.ConnectionTimeout",
        "Connection timed out",
        "es.index(index=index, id=doc_id, document=document)",
        (f"{SITE}/elasticsearch/_sync/client/__init__.py", 2441, "index", 'return self.perform_request("PUT", path,'),
        (f"{SITE}/elastic_transport/_transport.py", 342, "perform_request", "raise e.with_traceback(None)"),
    ),
    "lock_timeout": _kind(
        "jobs.errors.LockTimeout",
        "could not acquire lock '{fn_short}:{n}' within 30s",
        "with redis_lock(f'{fn_short}:{{key}}', timeout=30):",
        (
            "/srv/app/jobs/locks.py",
            41,
            "__enter__",
            "raise LockTimeout(f'could not acquire lock {self.name!r} within {self.timeout}s')",
        ),
    ),
}


def _module_file(fn: str) -> str:
    parts = fn.split(".")
    package = "/".join(parts[:-1]) or "jobs"
    return f"/srv/app/{package}/tasks.py"


def _line(text: str, low: int, high: int) -> int:
    """A line number that is stable for the same text (zlib.crc32, unlike hash(), is not salted)."""
    return low + zlib.crc32(text.encode()) % (high - low)


def _context(rng: random.Random, fn: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    companies = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
    company = rng.choice(companies)
    url = payload.get("url") if isinstance(payload.get("url"), str) else None
    host = f"hooks.{company}.example"
    path = "webhooks/jobs"
    if url and "://" in url:
        host, _, path = url.split("://", 1)[1].partition("/")
    pid = rng.randint(1000, 60000)
    return {
        "host": host,
        "path": path,
        "url": url or f"https://{host}/{path}",
        "timeout": rng.choice((5, 10, 15, 30)),
        "email": payload.get("email", f"user{rng.randint(100, 99999)}@example.org"),
        "company": company,
        "hex6": f"{rng.getrandbits(24):06x}",
        "hex12": f"{rng.getrandbits(48):012x}",
        "pid": pid,
        "pid2": pid + rng.randint(1, 400),
        "txn": rng.randint(10_000_000, 99_999_999),
        "field": rng.choice(("account_id", "customer_id", "locale", "owner")),
        "phone": f"+1555{rng.randint(1000000, 9999999)}",
        "fn_short": fn.rsplit(".", 1)[-1],
        "n": rng.randint(1, 99999),
    }


def _render_frames(frames: tuple[Frame, ...]) -> list[str]:
    out: list[str] = []
    for path, line, func, code in frames:
        out.append(f'  File "{path}", line {line}, in {func}')
        out.append(f"    {code}")
    return out


def render(kind: ErrorKind, fn: str, payload: Mapping[str, Any], rng: random.Random) -> tuple[str, str]:
    """The one-line error and the traceback of one failure of `fn` by `kind`."""
    ctx = _context(rng, fn, payload)
    message = kind.message.format(**ctx)
    short = kind.exc.rsplit(".", 1)[-1]
    error = f"{short}: {message.splitlines()[0]}" if message else short
    func = fn.rsplit(".", 1)[-1]
    job_frames: tuple[Frame, ...] = (
        ("/srv/app/jobs/runner.py", 214, "execute", "result = func(job)"),
        (_module_file(fn), _line(fn, 40, 400), func, kind.call.format(**ctx) if kind.call else "..."),
    )
    lines: list[str] = []
    if kind.cause is not None:
        cause = kind.cause
        lines.append("Traceback (most recent call last):")
        lines.extend(_render_frames(cause.frames))
        lines.append(f"{cause.exc}: {cause.message.format(**ctx)}")
        lines.append("")
        lines.append("The above exception was the direct cause of the following exception:")
        lines.append("")
    lines.append("Traceback (most recent call last):")
    lines.extend(_render_frames(job_frames + kind.frames))
    lines.append(f"{kind.exc}: {message}" if message else kind.exc)
    return error, "\n".join(lines)
