"""histoclick.background: low-priority jobs in a worker process (a real spawned process)."""

from __future__ import annotations

import os
import sys
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from histoclick.background import NICE, BackgroundWorker


def counter_setup(start: int) -> dict:
    return {"count": start}


def add(state: dict, amount: int, values: np.ndarray) -> tuple[int, float, int, int, int]:
    """Changes the kept state; reports the worker's pid, priority and torch threads."""
    import torch

    state["count"] += amount
    return state["count"], float(values.sum()), os.getpid(), os.getpriority(os.PRIO_PROCESS, 0), torch.get_num_threads()


def fail(state: dict) -> None:
    raise ValueError("the job's own error")


def die(state: dict) -> None:
    os._exit(3)


@pytest.mark.skipif(sys.platform == "win32", reason="priorities are POSIX nice values")
def test_jobs_run_in_order_in_one_low_priority_process_that_keeps_its_state():
    values = np.arange(4.0)
    with BackgroundWorker(counter_setup, 10, threads=1) as worker:
        first, second = worker.submit(add, 1, values), worker.submit(add, 2, values)
        count, total, pid, nice, threads = second.result(timeout=300)
        assert first.result()[0] == 11 and count == 13 and total == 6.0  # in order, state kept
        assert pid != os.getpid() and nice == min(19, os.nice(0) + NICE) and threads == 1
        with pytest.raises(ValueError, match="the job's own error"):
            worker.submit(fail).result()
        assert worker.submit(add, 0, values).result()[0] == 13  # a failed job leaves the worker usable


def test_a_dead_worker_fails_its_futures_instead_of_hanging():
    with BackgroundWorker(counter_setup, 0) as worker:
        with pytest.raises(BrokenProcessPool):
            worker.submit(die).result(timeout=300)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        BackgroundWorker(threads=0)


def spin(state: dict, seconds: float) -> float:
    """Busy for ``seconds`` of wall time; returns the CPU seconds it got meanwhile."""
    import time

    started, cpu = time.monotonic(), time.process_time()
    while time.monotonic() - started < seconds:
        pass
    return time.process_time() - cpu


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (Linux /proc): "T" when stopped."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process state in /proc")
def test_paused_stops_the_worker_while_the_block_runs_and_lets_it_go_on():
    import time

    with BackgroundWorker(counter_setup, 0) as worker:
        pid = worker.submit(add, 0, np.zeros(1)).result(timeout=300)[2]
        busy = worker.submit(spin, 3.0)
        time.sleep(0.5)
        with worker.paused():
            assert process_state(pid) == "T"  # stopped: the block has the cores
            time.sleep(1.5)
        assert process_state(pid) != "T"
        cpu = busy.result(timeout=60)
        assert cpu < 2.0  # 3 s of wall time, 1.5 s of them stopped
    with worker.paused():  # after close: nothing to stop, no error
        pass
