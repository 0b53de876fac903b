"""Work spread over forked processes: the one helper the pipeline and the writer share."""
from __future__ import annotations

import os
import pickle
import signal
import sys

PARALLEL_FROM = 200  # below this many items, starting processes costs more than it saves


def fan_out(fn, items: list, jobs: int, step=None, weigh=None, state=None, keep=None) -> list:
    """fn(state, batch) -> results for a batch, over all items, in order: on `jobs` forked processes when there are
    many items, else here. The workers see `state` (any object, never pickled: they are forked while it is set) and
    this process's memory as it is now. step(n) after each n items done (or n units of work: the sum of weigh(item)
    over the batch). keep(results) -> what is kept of a batch's results, as each batch's arrive."""
    global _STATE
    done = step or (lambda n: None)
    step = (lambda batch: done(sum(map(weigh, batch)))) if weigh else (lambda batch: done(len(batch)))
    keep = keep or (lambda results: results)
    if jobs < 2 or len(items) < PARALLEL_FROM:
        out = keep(fn(state, items))
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
                out.extend(keep(results))
                step(batch)
    finally:
        _STATE = None
    return out


class Beside:
    """fn(*args) made by a forked child while this process goes on, on the other core: result() gives it, made here
    instead when the child could not (no fork, it failed or was killed, its answer was cut short). fn's result is
    pickled down a pipe, and must not be None. Forked only where no other thread runs (a forked child would hold any
    lock another thread held), and never back into the caller's code: the child ends when fn returns or raises, and
    with this process where Linux can say so (as fan_out's workers: die_with_parent)."""

    def __init__(self, fn, *args, fork: bool = True):
        self.fn, self.args, self.pid, self.pipe = fn, args, 0, -1
        if not fork or not alone():
            return
        try:
            read, write = os.pipe()
        except OSError:
            return
        parent = os.getpid()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return
        if self.pid == 0:  # the child: its answer, pickled, down the pipe
            code = 1
            try:
                _worker_start(parent)
                os.close(read)
                with os.fdopen(write, "wb") as out:
                    pickle.dump(fn(*args), out, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.pipe = read

    def result(self):
        """The child's answer, else fn(*args) made here."""
        answer = self.answer()
        return answer if answer is not None else self.fn(*self.args)

    def cancel(self, sig: int = signal.SIGKILL) -> None:
        """The answer is not wanted (this process is being interrupted): the child, if any, is killed (sig: asked to
        stop, for a child that handles it) and reaped; an answer it wrote already is read and dropped, not unpickled
        (the listing of 120,000 spec files made ahead: 0.16 to 0.21 s on a busy machine; dropped: 14 to 22 ms)."""
        if self.pipe >= 0:
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass
            self.answer(wanted=False)

    def answer(self, wanted: bool = True):
        """The child's answer, once (None when there is none: no child, it failed, or it was taken; or not wanted)."""
        fd, self.pipe, status = self.pipe, -1, 1
        if fd < 0:
            return None
        try:
            with os.fdopen(fd, "rb") as pipe:
                data = pipe.read()
        finally:
            try:
                status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:  # reaped already (SIGCHLD ignored by whatever started kflowgen): a whole
                status = 0  # answer is one that unpickles (a cut-short pickle does not)
        try:
            return pickle.loads(data) if status == 0 and wanted else None
        except Exception:  # cut short: made here instead
            return None


def alone() -> bool:
    """No other thread runs in this process (threading never imported, or only the main thread)."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


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
