"""One benchmark on two commits in one sitting: catch a regression (or show a gain) as a ratio, not a memory.

    python -m bench.compare REF [--repeats 3] -- bench.ingest --quick
    python -m bench.compare HEAD~3 -- bench.fanout --quick --clients 500
    python -m bench.compare main -- bench.fold --quick --repeats 1

The benchmark runs in this working tree ("now") and in a detached worktree of
REF ("ref"), alternating ABBA, ABBA... so a drift of the machine's speed
falls on both alike; each run writes its `--json`. The figures each benchmark
is judged by (below, `FIGURES`) are printed as the median and the spread of
the repeats on each side, with now/ref. Shared machines are noisy: read a
ratio against its spread, and repeat before believing a small one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

Figures = dict[str, float]


def ingest_figures(report: dict[str, Any]) -> Figures:
    """B1: each consumer's and batch's ceiling (max ev/s with lag < 1 s) and CPU µs/event at every passing step."""
    out: Figures = {}
    for result in report["results"]:
        name = f"{result['variant']} batch={result['batch']}"
        if result.get("best"):
            out[f"{name}: max ev/s"] = float(result["best"]["rate"])
        for step in result["steps"]:
            if step.get("ok"):
                out[f"{name}: µs/event @ {int(step['rate']):,}"] = float(step["consumer_us_per_event"])
    return out


def fanout_figures(report: dict[str, Any]) -> Figures:
    """B2/B3: each server's latency p50 and p99 and its CPU per delivery."""
    out: Figures = {}
    for kind, result in report["results"].items():
        for field, label in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("server_us_per_delivery", "µs/delivery")):
            if isinstance(result.get(field), int | float):
                out[f"{kind}: {label}"] = float(result[field])
    return out


def fold_figures(report: dict[str, Any]) -> Figures:
    """B1 in process: the CPU per event (jobpulse and the bare decode) and the collector's pauses (medians)."""
    labels = {"jobpulse_us": "jobpulse µs/event", "decode_us": "decode µs/event", "full_gc_ms": "full GC ms",
              "longest_pause_ms": "longest GC pause ms"}  # fmt: skip
    return {label: float(report["summary"][key]["median"]) for key, label in labels.items()}


FIGURES: dict[str, Callable[[dict[str, Any]], Figures]] = {
    "bench.ingest": ingest_figures,
    "bench.fold": fold_figures,
    "bench.fanout": fanout_figures,
}


def run_once(side: str, tree: Path, module: str, args: list[str], out: Path, timeout: float) -> Figures:
    """Run `module` with `args` in `tree` (its own code first on the path); its figures."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", module, *args, "--json", str(out)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tree, env=env, timeout=timeout, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"{module} in {tree} failed (exit {done.returncode}):\n{tail}")
    print(f"  {side}: {time.monotonic() - started:.0f} s", flush=True)
    return FIGURES[module](json.loads(out.read_text()))


def summarize(now: list[Figures], ref: list[Figures]) -> str:
    """Median [min-max] of each figure on both sides, and now/ref of the medians; figures both sides have."""
    names = sorted(set().union(*now, *ref))
    rows = []
    for name in names:
        a = [f[name] for f in ref if name in f]
        b = [f[name] for f in now if name in f]
        if not a or not b:
            rows.append(f"| {name} | {_cell(a)} | {_cell(b)} | - |")
            continue
        ratio = statistics.median(b) / statistics.median(a) if statistics.median(a) else float("nan")
        rows.append(f"| {name} | {_cell(a)} | {_cell(b)} | {ratio:.2f}x |")
    head = "| figure | ref: median [min-max] (n) | now: median [min-max] (n) | now / ref |\n| --- | --- | --- | ---: |"
    return "\n".join([head, *rows])


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.2f} [{min(values):,.2f}-{max(values):,.2f}] ({len(values)})"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        usage="python -m bench.compare REF [--repeats N] [--timeout S] -- bench.<name> [its arguments]",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("ref", help="the commit to compare with (a branch, tag or hash)")
    parser.add_argument("--repeats", type=int, default=3, help="runs on each side (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="hard timeout of one run, s (default 900)")
    cut = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:cut])  # --help answers here
    if cut == len(argv):
        parser.error(f"name the benchmark after --: one of {', '.join(FIGURES)}, with its arguments")
    module, *args = argv[cut + 1 :] or [""]
    if module not in FIGURES:
        print(f"bench.compare knows {', '.join(FIGURES)}; not {module!r}", file=sys.stderr)
        return 2
    ref = git("rev-parse", "--short", options.ref)
    head = git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if git("status", "--porcelain") else ""
    print(f"{module} {' '.join(args)}: now = {head}{dirty}, ref = {ref}; {options.repeats} runs each, ABBA", flush=True)
    with tempfile.TemporaryDirectory(prefix="jobpulse-compare-") as scratch:
        worktree = Path(scratch) / "ref"
        git("worktree", "add", "--detach", str(worktree), ref)
        script = Path(*module.split(".")).with_suffix(".py")
        if not (worktree / script).exists():
            # A benchmark newer than REF: measure REF's code with this tree's benchmark.
            for path in (ROOT / "bench").glob("*.py"):
                if not (worktree / "bench" / path.name).exists():
                    (worktree / "bench" / path.name).write_bytes(path.read_bytes())
            print(f"  {script} is newer than {ref}: its copy from this tree runs there too", flush=True)
        try:
            now: list[Figures] = []
            before: list[Figures] = []
            for i in range(options.repeats):
                order = [("ref", worktree, before), ("now", ROOT, now)]
                for side, tree, into in order if i % 2 == 0 else order[::-1]:
                    out = Path(scratch) / f"{side}-{i}.json"
                    into.append(run_once(side, tree, module, args, out, options.timeout))
        finally:
            git("worktree", "remove", "--force", str(worktree))
    print()
    print(summarize(now, before))
    print(f"\nload average now {os.getloadavg()[0]:.2f}; ratios below 1 are smaller now (faster for times and CPU).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
