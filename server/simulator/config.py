"""Configuration of a simulated fleet, and the `jobpulse simulate` arguments that build it.

No Redis, no asyncio. `time_scale` compresses modelled job time (durations,
backoffs, how far ahead jobs are scheduled, a restart's pause); the rate, the
heartbeat interval, `silent_after`, the story's `cycle` and command arguments
stay in real seconds.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from server.simulator.scenario import REFERENCE_CYCLE, SCENARIOS
from server.simulator.workload import CHANNELS

DEFAULT_REGIONS = ("us-east", "eu-west", "ap-south")


@dataclass(frozen=True)
class FleetConfig:
    """Everything that shapes one simulated fleet.

    Args:
        redis_url: the Redis the fleet speaks the protocol on.
        prefix: key and channel prefix `P`.
        runners: how many runners (worker processes).
        channels: how many consumed channels, taken in order from a realistic list
            (email, default, reports, webhooks, media, billing, ...). The fleet always adds
            `webhooks-legacy`, which gets jobs but has no runner.
        rate: jobs published per second, across channels.
        seed: same seed, same sequence of jobs, durations and failures; None picks one (and logs it).
        regions: regions the hosts are spread over.
        heartbeat_interval: seconds between heartbeats.
        silent_after: one runner goes silent (stops beating and processing, holding its jobs)
            this many seconds after the start, for good; None means never. The steady scenario only.
        stream: also append every published object to `P:stream`.
        time_scale: factor on every modelled duration and delay (tests use 0.05).
        scenario: "steady" (trouble from the start: reports backs up for good, webhooks-legacy has jobs and no
            runner, `silent_after`) or "story" (a healthy fleet and a cycle of incidents that come and go:
            scenario.TIMELINE).
        cycle: seconds of one story cycle (its phases are stretched or compressed to fit).
    """

    redis_url: str
    prefix: str = "jobpulse"
    runners: int = 12
    channels: int = 6
    rate: float = 20.0
    seed: int | None = None
    regions: tuple[str, ...] = DEFAULT_REGIONS
    heartbeat_interval: float = 2.0
    silent_after: float | None = 90.0
    stream: bool = True
    time_scale: float = 1.0
    scenario: str = "steady"
    cycle: float = REFERENCE_CYCLE

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("prefix: must not be empty")
        if self.runners < 1:
            raise ValueError("runners: must be at least 1")
        if not 1 <= self.channels <= len(CHANNELS):
            raise ValueError(f"channels: must be between 1 and {len(CHANNELS)}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError("rate: must be a number >= 0")
        if not self.regions or any(not region for region in self.regions):
            raise ValueError("regions: must name at least one region, none empty")
        if not (math.isfinite(self.heartbeat_interval) and self.heartbeat_interval > 0):
            raise ValueError("heartbeat_interval: must be > 0")
        if self.silent_after is not None and not (math.isfinite(self.silent_after) and self.silent_after >= 0):
            raise ValueError("silent_after: must be >= 0 or None")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError("time_scale: must be > 0")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario: one of {', '.join(SCENARIOS)}")
        if not (math.isfinite(self.cycle) and self.cycle > 0):
            raise ValueError("cycle: must be > 0")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _silent_after(text: str) -> float | None:
    if text.strip().lower() in {"never", "none", "off"}:
        return None
    return _non_negative(text)


def _regions(text: str) -> tuple[str, ...]:
    regions = tuple(part.strip() for part in text.split(",") if part.strip())
    if not regions:
        raise argparse.ArgumentTypeError("name at least one region")
    return regions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `jobpulse simulate` options to `parser`."""
    parser.add_argument("--runners", type=_positive_int, default=12, help="number of runners (default 12)")
    parser.add_argument(
        "--channels",
        type=_positive_int,
        default=6,
        help=f"number of consumed channels, 1-{len(CHANNELS)} (default 6); webhooks-legacy is always added",
    )
    parser.add_argument("--rate", type=_non_negative, default=20.0, help="jobs published per second (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a repeatable run (default: random)")
    parser.add_argument(
        "--regions",
        type=_regions,
        default=DEFAULT_REGIONS,
        help="comma-separated regions (default us-east,eu-west,ap-south)",
    )
    parser.add_argument(
        "--heartbeat", type=_positive, default=2.0, help="seconds between runner heartbeats (default 2)"
    )
    parser.add_argument(
        "--silent-after",
        type=_silent_after,
        default=90.0,
        metavar="SECONDS|never",
        help="steady scenario: one runner goes silent for good after this many seconds (default 90)",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="steady",
        help="steady: trouble from the start, for good; story: a healthy fleet and a repeating cycle of incidents "
        "that come and go (default steady)",
    )
    parser.add_argument(
        "--cycle",
        type=_positive,
        default=REFERENCE_CYCLE,
        metavar="SECONDS",
        help=f"story scenario: seconds of one cycle of incidents (default {REFERENCE_CYCLE:g})",
    )
    parser.add_argument("--no-stream", action="store_true", help="do not append to the P:stream replay stream")
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="factor on job durations and delays; 0.1 runs ten times faster (default 1)",
    )
    parser.add_argument(
        "--duration", type=_positive, default=None, help="stop after this many seconds (default: until interrupted)"
    )


def config_from_args(args: argparse.Namespace, redis_url: str, prefix: str) -> FleetConfig:
    """Build the fleet configuration from parsed `add_arguments` options (`--duration` is the caller's)."""
    return FleetConfig(
        redis_url=redis_url,
        prefix=prefix,
        runners=args.runners,
        channels=args.channels,
        rate=args.rate,
        seed=args.seed,
        regions=tuple(args.regions),
        heartbeat_interval=args.heartbeat,
        silent_after=args.silent_after,
        stream=not args.no_stream,
        time_scale=args.time_scale,
        scenario=args.scenario,
        cycle=args.cycle,
    )
