"""bench.compare's reading of the benchmarks' JSON and its table (the runs themselves are the benchmarks')."""

from __future__ import annotations

from bench.compare import fanout_figures, ingest_figures, summarize


def test_ingest_figures_are_each_ceiling_and_the_cpu_of_every_passing_step():
    report = {
        "results": [
            {"variant": "jobpulse", "batch": 1, "best": {"rate": 80_000},
             "steps": [{"rate": 40_000, "ok": True, "consumer_us_per_event": 16.5},
                       {"rate": 80_000, "ok": True, "consumer_us_per_event": 13.25},
                       {"rate": 120_000, "ok": False, "consumer_us_per_event": 14.0}]},
            {"variant": "baseline", "batch": 1, "best": None, "steps": []},
        ]
    }  # fmt: skip
    assert ingest_figures(report) == {
        "jobpulse batch=1: max ev/s": 80_000.0,
        "jobpulse batch=1: µs/event @ 40,000": 16.5,
        "jobpulse batch=1: µs/event @ 80,000": 13.25,
    }


def test_fanout_figures_skip_a_server_that_failed():
    report = {"results": {"jobpulse": {"p50_ms": 20.0, "p99_ms": 40.0, "server_us_per_delivery": 11.5},
                          "bare": {"server": "bare", "error": "boom"}}}  # fmt: skip
    assert fanout_figures(report) == {"jobpulse: p50 ms": 20.0, "jobpulse: p99 ms": 40.0, "jobpulse: µs/delivery": 11.5}


def test_the_table_gives_medians_spreads_and_the_ratio_of_the_medians():
    ref = [{"x": 10.0}, {"x": 12.0}, {"x": 11.0, "only ref": 1.0}]
    now = [{"x": 5.0}, {"x": 6.0}, {"x": 5.5}]
    table = summarize(now, ref).splitlines()
    assert table[2] == "| only ref | 1.00 [1.00-1.00] (1) | - | - |"
    assert table[3] == "| x | 11.00 [10.00-12.00] (3) | 5.50 [5.00-6.00] (3) | 0.50x |"
