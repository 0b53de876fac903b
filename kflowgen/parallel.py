"""Work spread over forked processes: the one helper the pipeline and the writer share."""
from __future__ import annotations

import os
import signal
import sys

PARALLEL_FROM = 200  # below this many items, starting processes costs more than it saves


def fan_out(fn, items: list, jobs: int, step=None, weigh=None, state=None) -> list:
    """fn(state, batch) -> results for a batch, over all items, in order: on `jobs` forked processes when there are
    many items, else here. The workers see `state` (any object, never pickled: they are forked while it is set) and
    this process's memory as it is now. step(n) after each n items done (or n units of work: the sum of weigh(item)
    over the batch)."""
    global _STATE
    done = step or (lambda n: None)
    step = (lambda batch: done(sum(map(weigh, batch)))) if weigh else (lambda batch: done(len(batch)))
    if jobs < 2 or len(items) < PARALLEL_FROM:
        out = fn(state, items)
        step(items)
        return out
    import multiprocessing  # (imported only here: a run whose work is in the cache forks no worker)
    from concurrent.futures import ProcessPoolExecutor

    prepare()
    size = -(-len(items) // min(len(items), jobs * 16))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    out = []
    _STATE = state
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_worker_start, initargs=(os.getpid(),)) as pool:
            for batch, results in zip(batches, pool.map(_call, [fn] * len(batches), batches)):
                out.extend(results)
                step(batch)
    finally:
        _STATE = None
    return out


_STATE = None  # fan_out's state while its workers run: they are forked with it, and _call hands it to fn


def _call(fn, batch: list) -> list:
    return fn(_STATE, batch)


_PRCTL: list = []  # Linux's prctl, once prepare() found it (None where there is none)


def prepare() -> None:
    """Find prctl (Linux: a process can ask for SIGKILL when the thread that forked it ends, even when that one is
    SIGKILLed) for die_with_parent, here, before this process forks: a forked child must not import."""
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None)
        except (OSError, AttributeError):
            _PRCTL.append(None)

# file descriptors a worker must not keep open: a lock held by the run (see writer.locked) must end with the run
NOT_INHERITED: set[int] = set()


def die_with_parent(parent: int) -> None:
    """Run first in a forked child (a fan_out worker, a control-plane process): it is killed when the process that
    forked it ends. Without this, a run killed with SIGKILL (a CI timeout, the OOM killer) leaves its workers waiting
    forever, each holding the write end of its own task pipe. (Linux sends the signal when the forking thread ends;
    fan_out's caller waits in it until the workers are done.) Elsewhere the child only checks once."""
    if _PRCTL and _PRCTL[0] is not None:  # (found by prepare(), before the fork)
        _PRCTL[0](1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)


def _worker_start(parent: int) -> None:
    die_with_parent(parent)
    for fd in NOT_INHERITED:
        try:
            os.close(fd)
        except OSError:
            pass
