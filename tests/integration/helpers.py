"""Helpers for integration tests: a native-protocol publisher and a websocket client that keeps widget state."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis
import websockets
from websockets.asyncio.client import ClientConnection

from server.streams.core import mergepatch


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`jobpulse serve` in a session of its own (its workers are killed with it); its stderr is piped."""
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


class Publisher:
    """Publishes native-protocol messages (docs/protocol.md section 1) the way a job system does."""

    def __init__(self, client: aredis.Redis, prefix: str, src: str = "producer") -> None:
        self.client = client
        self.prefix = prefix
        self.src = src
        self.seqs: dict[str, itertools.count[int]] = {}
        self.ids = itertools.count(1)

    def envelope(self, kind: str, src: str | None = None, seq: int | None = None) -> dict[str, Any]:
        src = src or self.src
        counter = self.seqs.setdefault(src, itertools.count(1))
        return {"v": 1, "type": kind, "src": src, "seq": next(counter) if seq is None else seq, "ts": time.time()}

    def job(self, event: str, job: str, src: str | None = None, **fields: Any) -> dict[str, Any]:
        body = self.envelope("job", src or fields.get("runner"))
        body.update(id=f"{body['src']}:{next(self.ids)}", event=event, job=job, channel=fields.pop("channel", "email"),
                    fn=fields.pop("fn", "mail.send"), attempt=fields.pop("attempt", 1), **fields)  # fmt: skip
        return body

    def beat(self, runner: str, **fields: Any) -> dict[str, Any]:
        body = self.envelope("heartbeat", runner)
        defaults = {"boot": time.time() - 60, "interval": 2.0, "host": "host-1", "region": "eu-west",
                    "concurrency": 4, "channels": ["email"]}  # fmt: skip
        body.update({**defaults, **fields})
        return body

    def depth(self, **channels: tuple[int, int, int]) -> dict[str, Any]:
        body = self.envelope("depth", "broker")
        body["channels"] = {n: {"queued": q, "inflight": i, "scheduled": s} for n, (q, i, s) in channels.items()}
        return body

    async def publish(self, *messages: dict[str, Any] | bytes, stream: bool = False) -> None:
        channel = f"{self.prefix}:events"
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            data = message if isinstance(message, bytes) else json.dumps(message).encode()
            pipe.publish(channel, data)
            if stream:
                pipe.xadd(f"{self.prefix}:stream", {"m": data}, maxlen=10_000, approximate=True)
        await pipe.execute()

    async def stream_only(self, *messages: dict[str, Any]) -> None:
        """Append to the replay stream without publishing (as if the pub/sub message were lost)."""
        for message in messages:
            await self.client.xadd(f"{self.prefix}:stream", {"m": json.dumps(message)})


class LiveClient:
    """A websocket client that holds widget data the way the page does: snapshots, then patches in seq order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.seqs: dict[str, int] = {}
        self.frames: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.pongs: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.gaps = 0
        self._reader: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        url: str,
        widgets: list[str],
        epoch: str | None = None,
        resume: dict[str, int] | None = None,
        previous: LiveClient | None = None,
        headers: dict[str, str] | None = None,
    ) -> LiveClient:
        ws = await websockets.connect(url, max_size=2**22, additional_headers=headers)
        client = cls(ws)
        if previous is not None:
            client.data, client.seqs = dict(previous.data), dict(previous.seqs)
        client.welcome = json.loads(await ws.recv())
        await client.send({"type": "hello", "v": 1, "widgets": widgets, "epoch": epoch, "resume": resume or {}})
        client._reader = asyncio.create_task(client._read())
        return client

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                body = json.loads(message)
                if body["type"] == "batch":
                    for frame in body["frames"]:
                        self._apply(frame)
                elif body["type"] == "error":
                    self.errors.append(body)
                elif body["type"] == "pong":
                    self.pongs.append(body)
                elif body["type"] == "ack":
                    self.acks[body["id"]] = body
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.changed.set()

    async def command(
        self,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        phase: str = "execute",
        confirm: str | None = None,
        cmd_id: str | None = None,
        within: float = 10.0,
    ) -> dict[str, Any]:
        """Send one `cmd` and return its `ack` (docs/protocol.md 4.2)."""
        cmd_id = cmd_id or f"t-{uuid.uuid4().hex[:12]}"
        frame: dict[str, Any] = {"type": "cmd", "id": cmd_id, "action": action, "args": args or {}, "phase": phase}
        if confirm is not None:
            frame["confirm"] = confirm
        self.acks.pop(cmd_id, None)
        await self.send(frame)
        await self.wait_for(lambda c: cmd_id in c.acks, within)
        return self.acks[cmd_id]

    async def confirmed(self, action: str, args: dict[str, Any], within: float = 10.0) -> dict[str, Any]:
        """Preview a two-phase command, then execute it with the confirm token; return the final ack."""
        preview = await self.command(action, args, phase="preview", within=within)
        assert preview["ok"], preview
        return await self.command(action, args, confirm=preview["result"]["confirm"], within=within)

    def _apply(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        name = frame["w"]
        if frame["type"] == "snapshot":
            self.data[name] = frame["data"]
        else:
            if frame["seq"] != self.seqs.get(name, -10) + 1:
                self.gaps += 1
                return
            self.data[name] = mergepatch.apply(self.data[name], frame["data"])
        self.seqs[name] = frame["seq"]

    async def wait_for(self, predicate: Callable[[LiveClient], object], within: float = 5.0) -> None:
        """Wait until predicate(self) holds (checked after every message), at most `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                try:
                    if predicate(self):
                        return
                except (KeyError, TypeError, IndexError):
                    pass
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader
