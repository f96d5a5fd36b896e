"""Shared plumbing of the benchmarks: Redis, child processes, deadlines, percentiles, tables, machine facts.

Nothing here measures anything. The benchmark scripts (`bench/ingest.py`,
`bench/fanout.py`) run their roles as child processes of themselves
(`python -m bench.<script> --role ...`); `Children` starts them with the repo as
working directory, keeps them in a list, and terminates every one of them on
the way out (SIGTERM, then SIGKILL). Every child also gets an absolute
`--deadline` and a parent pid to watch (`watch_parent`), so a child outlives
neither its time budget nor an orchestrator that was killed outright.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent


# -- Redis ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_for_bench(url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (redis url, where it came from): `url`, else REDIS_URL, else a private redis-server started here."""
    url = url or os.environ.get("REDIS_URL")
    if url:
        yield url, "given"
        return
    from server.redis_server import RedisServer

    with RedisServer() as private:
        yield private.url, f"private redis-server ({private.binary})"


def unique_prefix(kind: str) -> str:
    return f"jpbench-{kind}-{uuid.uuid4().hex[:8]}"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix:` (the benchmark's own keys); return how many."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    except redis.RedisError:  # Redis went first (Ctrl-C reaches the whole process group); nothing to clean
        return 0
    finally:
        client.close()


def redis_facts(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
        return {"redis_version": info.get("redis_version"), "redis_pid": info.get("process_id")}
    finally:
        client.close()


def redis_cpu(url: str) -> float:
    """CPU seconds (user + sys) the Redis server has used so far, from INFO cpu (works for any Redis)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


# -- processes --------------------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def watch_parent(deadline: float) -> None:
    """In a child: exit when the parent goes away or the absolute `deadline` (time.time()) passes."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent or time.time() > deadline:
                os._exit(3)
            time.sleep(0.25)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class Children:
    """Child processes of one benchmark; `stop_all()` (also on exit of the `with`) ends every one of them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(
        self, args: Sequence[str], env: dict[str, str] | None = None, stdin: bool = False, stdout: bool = True
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            list(args),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=None,  # children's tracebacks go to our stderr
            text=True,
            bufsize=1,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in list(self.procs):
            self.stop(proc, timeout=3.0)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def read_line(stream: IO[str] | None, timeout: float, what: str) -> str:
    """Read one line from a child's stdout within `timeout` seconds (a thread, so a silent child cannot hang us)."""
    assert stream is not None, "the child has no stdout pipe"
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or not result:
        raise TimeoutError(f"{what}: no answer within {timeout:.0f} s")
    if not result[0]:
        raise RuntimeError(f"{what}: the child exited without answering")
    return result[0].rstrip("\n")


def read_json(stream: IO[str] | None, timeout: float, what: str) -> dict[str, Any]:
    """Read lines until one is a JSON object (children print `{...}` lines as answers)."""
    deadline = time.monotonic() + timeout
    while True:
        line = read_line(stream, max(0.1, deadline - time.monotonic()), what)
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value


def tell(proc: subprocess.Popen[str], obj: dict[str, Any]) -> None:
    """Send one JSON command line to a child's stdin."""
    assert proc.stdin is not None, "the child has no stdin pipe"
    proc.stdin.write(json.dumps(obj) + "\n")
    proc.stdin.flush()


def say(obj: dict[str, Any]) -> None:
    """In a child: answer the parent with one JSON line."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def session(args: Any, facts: dict[str, Any], title: str) -> Iterator[tuple[Children, str]]:
    """The frame every benchmark runs in: its hard timeout, its child processes (stopped at the end) and its
    Redis (`--redis-url`, else a private one). Sets `args.redis_url` and `args.deadline` (no child outlives
    the run), adds the Redis facts to `facts`, prints `title` and the facts; yields the children and where
    the Redis came from."""
    with hard_timeout(args.timeout), Children() as children, redis_for_bench(args.redis_url) as (url, origin):
        args.redis_url = url
        args.deadline = time.time() + args.timeout + 30
        facts.update(redis_facts(url))
        print(title)
        print_facts(facts)
        yield children, origin


class HardTimeout(Exception):
    """The whole benchmark ran past its hard timeout."""


@contextlib.contextmanager
def hard_timeout(seconds: float) -> Iterator[None]:
    """Raise HardTimeout in the main thread after `seconds` (SIGALRM), so `finally` blocks still clean up."""

    def on_alarm(signum: int, frame: object) -> None:
        raise HardTimeout(f"hard timeout of {seconds:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit in an orchestrator, so its `finally` blocks run."""

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)


# -- statistics and output --------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers], *[[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("redis", "hiredis", "msgspec", "orjson", "websockets", "uvicorn", "starlette", "uvloop", "httptools"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        head = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = "?"
    return {
        "git": head,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
        "versions": versions,
    }


def print_facts(facts: dict[str, Any]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
    print(
        f"date {facts['date']}; jobpulse at {facts['git']}; {facts['cpus']} cpus ({facts['cpu_model']}); "
        f"Python {facts['python']}"
    )
    print(f"load average at start {facts['load_avg'][0]:.2f}; {versions}")
