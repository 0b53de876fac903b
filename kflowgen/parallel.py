"""Work spread over forked processes: the one helper the pipeline and the writer share."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PARALLEL_FROM = 200  # below this many items, starting processes costs more than it saves


def fan_out(fn, items: list, jobs: int, step=None, weigh=None) -> list:
    """fn(batch) -> results for a batch, over all items, in order: on `jobs` forked processes when there are many
    items (the children see this process's memory as it is now), else here. step(n) after each n items done (or n
    units of work: the sum of weigh(item) over the batch)."""
    done = step or (lambda n: None)
    step = (lambda batch: done(sum(map(weigh, batch)))) if weigh else (lambda batch: done(len(batch)))
    if jobs < 2 or len(items) < PARALLEL_FROM:
        out = fn(items)
        step(items)
        return out
    size = -(-len(items) // min(len(items), jobs * 16))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    out = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                             initializer=_end_with, initargs=(os.getpid(),)) as pool:
        for batch, results in zip(batches, pool.map(fn, batches)):
            out.extend(results)
            step(batch)
    return out




def _end_with(parent: int) -> None:
    """A worker is killed when the process that forked it ends. Without this, a run killed with SIGKILL (a CI
    timeout, the OOM killer) leaves its workers waiting forever: each holds the write end of its own task pipe.
    (Linux sends the signal when the forking thread ends; that thread waits in fan_out until the workers are done.)"""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)
