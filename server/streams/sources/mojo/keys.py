"""django-mojo's Redis key and channel names, for one deployment's prefix (docs/mojo.md sections 3 and 4).

Pure layer: string building only. django-mojo 1.39.10 builds the same names in
`mojo/apps/jobs/keys.py`; the broadcast and reply channels ignore the key prefix
(on purpose, upstream) and take only the pub/sub prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

METRICS = "{mets:global}:mets:global::"  # django-mojo's metrics account `global`: no jobs prefix


@dataclass(frozen=True)
class MojoKeys:
    prefix: str  # JOBS_REDIS_PREFIX
    pubsub_prefix: str = ""  # REDIS_PUBSUB_PREFIX

    def _channel(self, name: str) -> str:
        return f"{self.pubsub_prefix}:{name}" if self.pubsub_prefix else name

    def queue(self, channel: str) -> str:
        return f"{self.prefix}:{{jobs}}:queue:{channel}"

    def processing(self, channel: str) -> str:
        return f"{self.prefix}:processing:{channel}"

    def sched(self, channel: str) -> str:
        return f"{self.prefix}:sched:{channel}"

    def sched_broadcast(self, channel: str) -> str:
        return f"{self.prefix}:sched_broadcast:{channel}"

    @property
    def sched_registry(self) -> str:
        return f"{self.prefix}:sched_registry"

    def paused(self, channel: str) -> str:
        return f"{self.prefix}:channel:{channel}:paused"

    def runner_hb(self, runner: str) -> str:
        return f"{self.prefix}:runner:{runner}:hb"

    def runner_registry(self, channel: str) -> str:
        return f"{self.prefix}:runner_registry:{channel}"

    @property
    def scheduler_lock(self) -> str:
        return f"{self.prefix}:lock:scheduler"

    @property
    def scheduler_progress(self) -> str:
        return f"{self.prefix}:scheduler:progress"

    # Patterns for the occasional discovery SCAN (channels nobody beats for yet).
    @property
    def queue_pattern(self) -> str:
        return f"{self.prefix}:{{jobs}}:queue:*"

    @property
    def registry_pattern(self) -> str:
        return f"{self.prefix}:runner_registry:*"

    def runner_control(self, runner: str) -> str:
        return self._channel(f"{self.prefix}:runner:{runner}:ctl")

    @property
    def broadcast(self) -> str:
        return self._channel("mojo:jobs:runners:broadcast")

    def reply(self, token: str) -> str:
        return self._channel(f"mojo:jobs:replies:{token}")

    def ping_reply(self, token: str) -> str:
        return self._channel(f"mojo:jobs:ping:{token}")

    @staticmethod
    def metric(slug: str, bucket: str) -> str:
        """One hour counter: `slug` with ':' as '|', `bucket` like 'hr:2026-11-29T00'."""
        return f"{METRICS}{slug.replace(':', '|')}:{bucket}"
