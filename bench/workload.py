"""A synthetic fleet that speaks the native protocol (docs/protocol.md section 1), cheap enough to publish fast.

`Stream` yields encoded protocol objects (JSON bytes) for producers, runners
and a broker that behave consistently: jobs go `queued` -> `started` ->
`completed` (every 25th `failed`, with an error and a traceback), each on one
runner; heartbeats list exactly the jobs their runner is running; a broker
reports channel depth; every `src` has its own seq that never skips, so
jobpulse sees no gaps and no duplicates. Jobs flow in blocks of `jobs_per_block`:
block b queues its jobs, starts those of block b - `start_lag` and finishes
those of block b - `finish_lag`, so the queue and the running set stay at a
steady size (the caps of jobpulse's state, 20,000 jobs, are reached and
eviction runs, as in a long-lived process).

The default block (`jobs_per_block` = 32) has 96 job events, 8 heartbeats and 2
depth reports (90.6% / 7.5% / 1.9%), the ingest benchmark's mix; the fan-out
benchmark uses one job per block and many heartbeats (a big, mostly idle fleet).
`payload=True` adds the protocol's example `payload` object to `queued` events.

Objects are rendered from byte templates with `%` formatting (about 1 µs each),
because a generator built from dicts and a JSON encoder costs ~5 µs an object
and would make the publisher, not the consumer, the bottleneck on 2 cores.
`RawPublisher` then writes PUBLISH commands pipelined on a plain socket.
"""

from __future__ import annotations

import socket

from server.streams.sources.subscriber import Endpoint

CHANNELS = (b"email", b"default", b"reports", b"webhooks", b"media", b"billing", b"notifications", b"search",
            b"exports", b"prio")  # fmt: skip
FUNCTIONS = {
    b"email": (b"mail.send_welcome", b"mail.send_receipt", b"mail.digest"),
    b"default": (b"tasks.cleanup", b"tasks.sync_user"),
    b"reports": (b"reports.nightly", b"reports.render_pdf"),
    b"webhooks": (b"hooks.deliver",),
    b"media": (b"media.thumbnail", b"media.transcode"),
    b"billing": (b"billing.charge", b"billing.invoice"),
    b"notifications": (b"push.send",),
    b"search": (b"search.reindex",),
    b"exports": (b"exports.csv",),
    b"prio": (b"tasks.urgent",),
}
TRACEBACK = (
    rb"Traceback (most recent call last):\n"
    rb"  File \"/app/worker.py\", line 212, in run_job\n    result = await fn(**payload)\n"
    rb"  File \"/app/mail.py\", line 88, in send_welcome\n    await smtp.send_message(msg)\n"
    rb"  File \"/usr/lib/python3.12/site-packages/aiosmtplib/smtp.py\", line 401, in send_message\n"
    rb"    raise SMTPServerDisconnected('Connection unexpectedly closed')\n"
    rb"aiosmtplib.errors.SMTPServerDisconnected: Connection unexpectedly closed\n"
)

QUEUED = (
    b'{"v":1,"type":"job","id":"%s:%d:%d","src":"%s","seq":%d,"ts":%s,"event":"queued","job":"j-%s-%d",'
    b'"cid":"order-%d","channel":"%s","fn":"%s","attempt":1,"max_attempts":3,"queued_at":%s%s}'
)
PAYLOAD = b',"payload":{"user_id":%d,"template":"welcome","locale":"en"}'
STARTED = (
    b'{"v":1,"type":"job","id":"%s:%d:%d","src":"%s","seq":%d,"ts":%s,"event":"started","job":"j-%s-%d",'
    b'"channel":"%s","fn":"%s","runner":"%s","attempt":1,"max_attempts":3,"queued_at":%s,"started_at":%s}'
)
COMPLETED = (
    b'{"v":1,"type":"job","id":"%s:%d:%d","src":"%s","seq":%d,"ts":%s,"event":"completed","job":"j-%s-%d",'
    b'"channel":"%s","fn":"%s","runner":"%s","attempt":1,"max_attempts":3,"queued_at":%s,"started_at":%s,'
    b'"duration":%.6f}'
)
FAILED = (
    b'{"v":1,"type":"job","id":"%s:%d:%d","src":"%s","seq":%d,"ts":%s,"event":"failed","job":"j-%s-%d",'
    b'"channel":"%s","fn":"%s","runner":"%s","attempt":1,"max_attempts":3,"queued_at":%s,"started_at":%s,'
    b'"duration":%.6f,"error":"SMTPServerDisconnected: Connection unexpectedly closed","traceback":"%s"}'
)
HEARTBEAT = (
    b'{"v":1,"type":"heartbeat","src":"%s","seq":%d,"ts":%s,"boot":%d,"interval":%s,"host":"host-%d",'
    b'"region":"eu-west","pid":%d,"version":"bench/1","state":"running","channels":["email","default"],'
    b'"concurrency":4,"active":[%s],"processed":%d,"failed":%d}'
)
ACTIVE = b'{"job":"j-%s-%d","channel":"%s","fn":"%s","started":%s}'
DEPTH = b'{"v":1,"type":"depth","src":"%s","seq":%d,"ts":%s,"channels":{%s}}'
CHANNEL_DEPTH = b'"%s":{"queued":%d,"inflight":%d,"scheduled":%d,"oldest":%s,"paused":false}'


def ts_bytes(t: float) -> bytes:
    return b"%.6f" % t


class Stream:
    """The objects one publisher process sends; ids carry `tag`, so several processes never collide."""

    def __init__(
        self,
        tag: str,
        runners: int = 200,
        jobs_per_block: int = 32,
        start_lag: int = 2,
        finish_lag: int = 4,
        heartbeats_per_block: int = 8,
        depth_per_block: int = 2,
        interval: float = 2.0,
        payload: bool = True,
        boot: int = 1_700_000_000,
    ) -> None:
        self.tag = tag.encode()
        self.runners = [b"bench-%s-r%03d" % (self.tag, i) for i in range(runners)]
        self.producers = [b"bench-%s-p%d" % (self.tag, i) for i in range(4)]
        self.broker = b"bench-%s-broker" % self.tag
        self.boot = boot
        self.interval = b"%r" % interval
        self.payload = payload
        self.J = jobs_per_block
        self.start_lag = start_lag
        self.finish_lag = finish_lag
        self.rseq = [0] * runners
        self.pseq = [0] * len(self.producers)
        self.bseq = 0
        self.processed = [0] * runners
        self.failed = [0] * runners
        self.active: dict[int, tuple[int, bytes]] = {}  # runner -> (job number, started ts)
        self.times: dict[int, tuple[bytes, bytes]] = {}  # job number -> (queued_at, started_at)
        self.next_beat = 0
        # (kind, k): 0 queued, 1 started, 2 finished (of the block's k-th job), 3 heartbeat, 4 depth;
        # heartbeats and depth reports spread evenly between the job events.
        jobs = [(i % 3, i // 3) for i in range(3 * jobs_per_block)]
        extras = [(3, 0)] * heartbeats_per_block + [(4, 0)] * depth_per_block
        keyed = [((i + 0.5) / len(jobs), 0, item) for i, item in enumerate(jobs)]
        keyed += [((i + 0.5) / len(extras), 1, item) for i, item in enumerate(extras)]
        plan = [item for _, _, item in sorted(keyed)]
        self.plan = plan
        self.block = 0
        self.pos = 0
        self.counts = [0, 0, 0, 0, 0]

    def take(self, n: int, now: float) -> list[bytes]:
        """The next `n` objects, all stamped `now` (the moment they are sent)."""
        ts = ts_bytes(now)
        out = []
        plan, J = self.plan, self.J
        for _ in range(n):
            kind, k = plan[self.pos]
            self.pos += 1
            if self.pos == len(plan):
                self.pos = 0
                self.block += 1
            self.counts[kind] += 1
            if kind == 0:
                out.append(self._queued(self.block * J + k, ts))
            elif kind == 1:
                b = self.block - self.start_lag
                out.append(self._started(b * J + k, ts) if b >= 0 else self._heartbeat(ts, now))
            elif kind == 2:
                b = self.block - self.finish_lag
                out.append(self._finished(b * J + k, ts, now) if b >= 0 else self._depth(ts, now))
            elif kind == 3:
                out.append(self._heartbeat(ts, now))
            else:
                out.append(self._depth(ts, now))
        return out

    def _job(self, n: int) -> tuple[bytes, bytes]:
        channel = CHANNELS[n % len(CHANNELS)]
        fns = FUNCTIONS[channel]
        return channel, fns[(n // len(CHANNELS)) % len(fns)]

    def _queued(self, n: int, ts: bytes) -> bytes:
        p = n % 4
        self.pseq[p] += 1
        src = self.producers[p]
        seq = self.pseq[p]
        channel, fn = self._job(n)
        self.times[n] = (ts, ts)
        payload = PAYLOAD % n if self.payload else b""
        return QUEUED % (src, self.boot, seq, src, seq, ts, self.tag, n, n, channel, fn, ts, payload)

    def _started(self, n: int, ts: bytes) -> bytes:
        r = n % len(self.runners)
        self.rseq[r] += 1
        src = self.runners[r]
        seq = self.rseq[r]
        channel, fn = self._job(n)
        queued_at = self.times[n][0]
        self.times[n] = (queued_at, ts)
        self.active[r] = (n, ts)
        return STARTED % (src, self.boot, seq, src, seq, ts, self.tag, n, channel, fn, src, queued_at, ts)

    def _finished(self, n: int, ts: bytes, now: float) -> bytes:
        r = n % len(self.runners)
        self.rseq[r] += 1
        src = self.runners[r]
        seq = self.rseq[r]
        channel, fn = self._job(n)
        queued_at, started_at = self.times.pop(n)
        if self.active.get(r, (None,))[0] == n:
            del self.active[r]
        self.processed[r] += 1
        duration = max(0.0, now - float(started_at))
        if n % 25 == 0:
            self.failed[r] += 1
            return FAILED % (
                src, self.boot, seq, src, seq, ts, self.tag, n, channel, fn, src, queued_at, started_at, duration,
                TRACEBACK,
            )  # fmt: skip
        return COMPLETED % (
            src, self.boot, seq, src, seq, ts, self.tag, n, channel, fn, src, queued_at, started_at, duration
        )  # fmt: skip

    def _heartbeat(self, ts: bytes, now: float) -> bytes:
        r = self.next_beat % len(self.runners)
        self.next_beat += 1
        self.rseq[r] += 1
        running = self.active.get(r)
        active = b""
        if running is not None:
            channel, fn = self._job(running[0])
            active = ACTIVE % (self.tag, running[0], channel, fn, running[1])
        return HEARTBEAT % (
            self.runners[r], self.rseq[r], ts, self.boot, self.interval, r // 4, 1000 + r, active,
            self.processed[r], self.failed[r],
        )  # fmt: skip

    def _depth(self, ts: bytes, now: float) -> bytes:
        self.bseq += 1
        s = self.bseq
        oldest = ts_bytes(now - 3.0)
        channels = b",".join(
            CHANNEL_DEPTH % (name, (s * 7 + i * 13) % 500, (s + i) % 40, (s * 3 + i) % 100, oldest)
            for i, name in enumerate(CHANNELS[:: 1 + s % 3])
        )
        return DEPTH % (self.broker, s, ts, channels)


def batch(objects: list[bytes], size: int) -> list[bytes]:
    """Group encoded objects into pub/sub payloads: one object each (size 1), or JSON arrays of `size`."""
    if size <= 1:
        return objects
    return [b"[" + b",".join(objects[i : i + size]) + b"]" for i in range(0, len(objects), size)]


class RawPublisher:
    """PUBLISH over a plain blocking socket, pipelined: `publish_many` sends all, then reads every reply."""

    def __init__(self, url: str, channel: str) -> None:
        endpoint = Endpoint.from_url(url)
        if endpoint.tls:
            raise ValueError("the benchmark publisher speaks plain TCP or a unix socket, not TLS")
        if endpoint.path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(endpoint.path)
        else:
            self.sock = socket.create_connection((endpoint.host, endpoint.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = channel.encode()
        self.head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)
        self.pending = b""
        self.receivers = 0
        if endpoint.password is not None:
            args = [b"AUTH", *([endpoint.username.encode()] if endpoint.username else []), endpoint.password.encode()]
            self.sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
            self._replies(1)

    def publish_many(self, payloads: list[bytes]) -> None:
        head = self.head
        self.sock.sendall(b"".join([head + b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads]))
        self._replies(len(payloads))

    def _replies(self, count: int) -> None:
        buffer = self.pending
        while buffer.count(b"\n") < count:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("Redis closed the publisher's connection")
            buffer += chunk
        lines = buffer.split(b"\r\n")
        replies, rest = lines[:count], lines[count:]
        self.pending = b"\r\n".join(rest)
        for line in replies:
            if line[:1] == b"-":
                raise RuntimeError(f"Redis refused: {line.decode(errors='replace')}")
        last = replies[-1]
        if last[:1] == b":":
            self.receivers = int(last[1:])

    def close(self) -> None:
        self.sock.close()
