"""Failure fingerprints: which failures share a cause, as an error tracker groups them.

Pure layer: standard library only. A failure's fingerprint is a hash of three
things a person reads to tell causes apart: the exception's type, its message
with the parts that vary from one occurrence to the next normalised (numbers,
ids, hex, quoted values, addresses), and the innermost frame of the job's own
code (its file and function, not the line: a deploy moves lines). Library
frames (site-packages, the standard library, the job system's own) are skipped
when choosing that frame, so a timeout raised deep in a driver groups by the
job's line that called it. Works from a Python traceback when there is one,
else from the one-line error (Celery's repr form `ValueError('boom')` too).
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

MESSAGE_CAP = 300  # characters of the normalised message kept (and hashed)

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>\S+)\s*$')
# "Type: message", the type dotted or not, its last part capitalised (KeyError, jobs.errors.LockTimeout).
_EXC_LINE = re.compile(r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*)(?::\s?(?P<msg>.*))?$")
_REPR = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)\((?P<msg>.*)\)$", re.S)
# Frames that are not the job's own: installed packages, the interpreter's library, job systems' machinery.
_LIBRARY = re.compile(
    r"(site-packages|dist-packages|/lib/python\d|<frozen |<string>|/(celery|kombu|billiard|rq|dramatiq|huey)/)"
)

# Applied in order: each turns a kind of varying part into a placeholder.
_NORMALISE = (
    (re.compile(r"'[^']*'"), "'<str>'"),
    (re.compile(r'"[^"]*"'), '"<str>"'),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\bhttps?://\S+"), "<url>"),
    (re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b"), "<ip>"),
    # Numbers and hex ids share one placeholder: an id of all digits must not group apart from one with letters.
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<n>"),
    (re.compile(r"\b[A-Za-z]{2,8}_[A-Za-z0-9]{8,}\b"), "<id>"),  # req_87a0f592389e, cus_NffrFeUfNV2Hib
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}\b"), "<n>"),
    (re.compile(r"(?<![A-Za-z])\d+(\.\d+)?([eE][+-]?\d+)?"), "<n>"),  # cus_0 too, not utf8
    (re.compile(r"\s+"), " "),
)


class Cause(NamedTuple):
    """What a failure's fingerprint is made of, and the fingerprint."""

    fingerprint: str
    type: str  # the exception's type as written (dotted where the traceback says so)
    message: str  # normalised
    frame: str  # "package/file.py in function", the job's own innermost frame ("" when none is known)


def normalise(message: str) -> str:
    """The message with what varies between occurrences of one cause replaced by placeholders."""
    text = message.strip()[: MESSAGE_CAP * 4]
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    return text.strip()[:MESSAGE_CAP]


def _short_path(path: str) -> str:
    """The last two parts of a path: stable across checkouts and release folders."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def _exception(lines: list[str]) -> tuple[str, str] | None:
    """The final exception of a traceback: its type and message.

    It is the first unindented line after the last frame (its code line is indented); a message may run on
    over more lines (psycopg's DETAIL:, say), which are not the type. Without frames, the last line that reads
    like "Type: message".
    """
    last_frame = max((k for k, line in enumerate(lines) if _FRAME.match(line)), default=None)
    if last_frame is not None:
        for line in lines[last_frame + 1 :]:
            if not line.strip() or line.startswith((" ", "\t")):
                continue
            match = _EXC_LINE.match(line.rstrip())
            return (match.group("type"), match.group("msg") or "") if match else None
        return None
    for line in reversed(lines):
        match = _EXC_LINE.match(line.rstrip())
        if match and not line.startswith((" ", "\t")):
            return match.group("type"), match.group("msg") or ""
    return None


def _own_frame(lines: list[str]) -> str:
    """The innermost frame of the job's own code in the last traceback of `lines`, else the innermost one."""
    frames: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("Traceback "):
            frames = []  # a chained traceback: the last one is the failure's own
            continue
        match = _FRAME.match(line)
        if match:
            frames.append((match.group("path"), match.group("func")))
    for path, func in reversed(frames):
        if not _LIBRARY.search(path):
            return f"{_short_path(path)} in {func}"
    if frames:
        path, func = frames[-1]
        return f"{_short_path(path)} in {func}"
    return ""


def cause(error: str | None, traceback: str | None) -> Cause:
    """The fingerprint of a failure from its one-line error and its traceback (either may be missing)."""
    exc_type, message, frame = "", "", ""
    if traceback:
        lines = traceback.splitlines()
        found = _exception(lines)
        if found is not None:
            exc_type, message = found
        frame = _own_frame(lines)
    if not exc_type and error:
        text = error.strip().splitlines()[0] if error.strip() else ""
        match = _REPR.match(text)
        if match:
            exc_type, message = match.group("type"), match.group("msg")
            quoted = re.fullmatch(r"'(.*)',?|\"(.*)\",?", message, re.S)
            # The repr of one string argument: its text is the message (a KeyError's message is the key's repr,
            # quotes and all, as its traceback line shows it).
            if quoted and not exc_type.endswith("KeyError"):
                message = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
        else:
            head, sep, rest = text.partition(":")
            if sep and re.fullmatch(r"[A-Za-z_][\w.]*", head):
                exc_type, message = head, rest.strip()
            else:
                message = text
    norm = normalise(message)
    exc_type = exc_type[:200] or "Error"
    digest = hashlib.sha1(f"{exc_type}\n{norm}\n{frame}".encode(), usedforsecurity=False).hexdigest()[:16]
    return Cause(digest, exc_type, norm, frame)
