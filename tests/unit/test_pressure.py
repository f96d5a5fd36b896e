"""LoopPressure: the share of time the calling thread ran or waited for a CPU, sampled against the wall clock."""

from __future__ import annotations

import time

from server.streams.pressure import LoopPressure


def _spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def test_a_spinning_thread_reads_as_busy_and_a_sleeping_one_as_idle():
    """Running and runnable-but-queued both count, so a thread that wants the CPU all along reads ~1 even on a
    machine whose cores other processes share; sleeping counts as neither."""
    pressure = LoopPressure()
    try:
        pressure.sample()
        _spin(0.2)
        busy = pressure.sample()
        time.sleep(0.2)
        idle = pressure.sample()
    finally:
        pressure.close()
    # Not 1: on a VM the host may take the vCPU away, time the guest sees as neither running nor queued (a CI run
    # read 0.89); far above the idle reading all the same.
    assert busy > 0.75, busy
    assert idle < 0.2, idle


def test_without_schedstat_it_falls_back_to_the_threads_cpu_time(monkeypatch):
    """Where /proc/thread-self/schedstat cannot be opened, the thread's own CPU time is the measure."""
    monkeypatch.setattr("server.streams.pressure.SCHEDSTAT", "/nonexistent/schedstat")
    pressure = LoopPressure()
    assert pressure._fd is None
    pressure.sample()
    wall, cpu = time.monotonic(), time.thread_time()
    _spin(0.1)
    busy = pressure.sample()
    share = (time.thread_time() - cpu) / (time.monotonic() - wall)  # what the thread got, however loaded the machine
    time.sleep(0.1)
    idle = pressure.sample()
    pressure.close()
    # CPU time only: a shared core can take some of it, so the reading is held to the share measured beside it,
    # not to a bare figure that depends on the machine's load.
    assert busy > 0 and abs(busy - share) < 0.1, (busy, share)
    assert idle < 0.2, idle
