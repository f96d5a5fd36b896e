"""The shape of a simulated fleet: hosts in regions, runners on hosts, channels and concurrency per runner.

Pure planning from the configuration and the seed: no Redis, no asyncio. Hosts
carry 2-3 runners each. `reports` gets its own small pool of "batch" runners:
in the steady scenario sized below its arrival rate, so it backs up; in the
story, above it, so it drains after each incident. The other channels are spread
over the remaining runners so that each is served. `webhooks-legacy` gets no runner.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from server.simulator.config import FleetConfig
from server.simulator.workload import BACKED_UP_CHANNEL, CHANNELS, UNCONSUMED_CHANNEL, Workload

REPORTS_CAPACITY = 0.5
"""The reports pool can run this fraction of the reports that arrive (steady scenario)."""
STORY_REPORTS_CAPACITY = 3.0
"""... and this multiple of them in the story, so the backlog of its incident drains within about a minute."""
MAX_REPORTS_CONCURRENCY = {"steady": 8, "story": 12}


@dataclass(frozen=True)
class RunnerSpec:
    """One runner process: where it runs, what it consumes and how many jobs at once."""

    id: str
    host: str
    region: str
    pid: int
    channels: tuple[str, ...]
    concurrency: int
    strict_order: bool
    """Take from `channels` strictly in order (a dedicated pool) instead of in rotation."""


@dataclass(frozen=True)
class Layout:
    consumed: tuple[str, ...]
    """Channels that have runners."""
    channels: tuple[str, ...]
    """Every channel jobs are published to: the consumed ones plus the unconsumed one."""
    runners: tuple[RunnerSpec, ...]
    silent: str | None
    """The runner that goes silent after `silent_after` (steady) or in the story's silent phase, if any."""


def _host_sizes(count: int, rng: random.Random) -> list[int]:
    sizes: list[int] = []
    left = count
    while left > 0:
        if left <= 3:
            sizes.append(left)
            break
        size = rng.choice((2, 3))
        if left - size == 1:
            size = 5 - size
        sizes.append(size)
        left -= size
    return sizes


def plan(config: FleetConfig, seed: int, workload: Workload) -> Layout:
    """Lay the fleet out; the same configuration and seed give the same layout."""
    rng = random.Random(f"{seed}:layout")
    consumed = CHANNELS[: config.channels]
    channels = (*consumed, UNCONSUMED_CHANNEL)
    dedicated = BACKED_UP_CHANNEL in consumed and config.runners >= 3 and len(consumed) > 1
    n_reports = (2 if config.runners >= 6 else 1) if dedicated else 0
    general = tuple(ch for ch in consumed if not (dedicated and ch == BACKED_UP_CHANNEL))
    n_general = config.runners - n_reports

    # Size the reports pool against demand: arrivals x mean duration is the concurrency it needs.
    needed = config.rate * workload.share(BACKED_UP_CHANNEL) * workload.mean_duration(BACKED_UP_CHANNEL)
    capacity = STORY_REPORTS_CAPACITY if config.scenario == "story" else REPORTS_CAPACITY
    most = MAX_REPORTS_CONCURRENCY[config.scenario]
    reports_concurrency = max(1, min(most, round(capacity * needed / max(1, n_reports))))
    reports_channels = (BACKED_UP_CHANNEL, "default") if "default" in consumed else (BACKED_UP_CHANNEL,)

    specs: list[RunnerSpec] = []
    index = 0
    general_index = 0
    region_counts: dict[tuple[str, str], int] = {}
    for host_number, size in enumerate(_host_sizes(config.runners, rng)):
        region = config.regions[host_number % len(config.regions)]
        role = "batch" if index < n_reports else "web"
        region_counts[(region, role)] = region_counts.get((region, role), 0) + 1
        host = f"{region}-{role}-{region_counts[(region, role)]:02d}"
        for slot in range(1, size + 1):
            runner_id = f"{host}-r{slot}"
            pid = rng.randint(1200, 64000)
            if index < n_reports:
                spec = RunnerSpec(runner_id, host, region, pid, reports_channels, reports_concurrency, True)
            else:
                # Consecutive runners start where the previous one's share ends, so every channel is covered.
                width = max(rng.randint(2, 4), math.ceil(len(general) / n_general))
                width = min(width, len(general))
                start = general_index * len(general) // n_general
                served = tuple(general[(start + k) % len(general)] for k in range(width))
                concurrency = rng.choice((2, 3, 4, 4, 6, 8))
                spec = RunnerSpec(runner_id, host, region, pid, served, concurrency, False)
                general_index += 1
            specs.append(spec)
            index += 1
    silent = None
    if config.silent_after is not None or config.scenario == "story":
        candidates = [spec for spec in specs if not spec.strict_order] or specs
        if config.scenario == "story":
            # Its silence should strand its own jobs, not leave a channel with no runner (another incident).
            candidates = [spec for spec in candidates if _covered_without(spec, specs)] or candidates
        silent = candidates[-1].id
    return Layout(consumed=consumed, channels=channels, runners=tuple(specs), silent=silent)


def _covered_without(spec: RunnerSpec, specs: list[RunnerSpec]) -> bool:
    """Every channel `spec` consumes is consumed by another runner too."""
    return all(any(ch in other.channels for other in specs if other is not spec) for ch in spec.channels)
