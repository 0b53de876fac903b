"""fan_out, the one way kflowgen spreads work over processes: results in item order, state handed to the workers
without pickling, progress counted per item or per unit of work, and no processes for small inputs."""
from __future__ import annotations

import os
import threading
import time

import pytest

from kflowgen import parallel


def _where(state, batch):
    return [(item, state["tag"], os.getpid()) for item in batch]


@pytest.mark.parametrize("n, jobs", [(0, 2), (1, 2), (parallel.PARALLEL_FROM - 1, 2), (parallel.PARALLEL_FROM, 1),
                                     (parallel.PARALLEL_FROM, 2), (1000, 2), (1001, 3)])
def test_results_come_back_in_item_order_with_the_state(n, jobs):
    lock = threading.Lock()  # a state no pickle could carry: the workers are forked with it
    out = parallel.fan_out(_where, list(range(n)), jobs, state={"tag": "s", "lock": lock})
    assert [item for item, _, _ in out] == list(range(n)) and {tag for _, tag, _ in out} <= {"s"}
    pids = {pid for _, _, pid in out}
    if jobs < 2 or n < parallel.PARALLEL_FROM:
        assert pids <= {os.getpid()}, "small inputs run here"
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= jobs


@pytest.mark.parametrize("n", [10, 500])
def test_progress_counts_items_or_their_weight(n):
    items = list(range(n))
    counted, weighed = [], []
    parallel.fan_out(_where, items, 2, step=counted.append, state={"tag": None})
    parallel.fan_out(_where, items, 2, step=weighed.append, weigh=lambda i: 2, state={"tag": None})
    assert sum(counted) == n and sum(weighed) == 2 * n
    assert len(counted) == (1 if n < parallel.PARALLEL_FROM else len(counted)) and all(counted)


def _boom(state, batch):
    if 7 in batch:
        raise ValueError("item 7")
    return batch


@pytest.mark.parametrize("n", [10, 500])
def test_an_error_in_a_worker_reaches_the_caller_and_leaves_no_state(n):
    with pytest.raises(ValueError, match="item 7"):
        parallel.fan_out(_boom, list(range(n)), 2, state="kept only while the workers run")
    assert parallel._STATE is None


def _pid_of(tag):
    return tag, os.getpid()


def _fails_in_a_child(parent):
    if os.getpid() != parent:
        raise RuntimeError("the child fails")
    return "made here", os.getpid()


def test_beside_gives_what_a_forked_child_made_or_makes_it_here():
    made = parallel.Beside(_pid_of, "t")
    assert made.pid > 0 and made.result() == ("t", made.pid) and made.answer() is None  # taken once
    here = parallel.Beside(_pid_of, "t", fork=False)
    assert here.pid == 0 and here.result() == ("t", os.getpid())
    failed = parallel.Beside(_fails_in_a_child, os.getpid())
    assert failed.pid > 0 and failed.result() == ("made here", os.getpid())
    killed = parallel.Beside(time.sleep, 30)  # (None when it ends: it is killed first)
    os.kill(killed.pid, 9)
    assert killed.answer() is None


def test_beside_forks_no_child_while_another_thread_runs():
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        assert not parallel.alone()
        made = parallel.Beside(_pid_of, "t")
    finally:
        stop.set()
        waiting.join()
    assert parallel.alone() and made.pid == 0 and made.result() == ("t", os.getpid())


UNPICKLED: list = []


def _unpickled():
    UNPICKLED.append(os.getpid())
    return "the answer"


class _Noted:
    """Unpickled, it notes where (in this process: the answer was read)."""

    def __reduce__(self):
        return _unpickled, ()


def _noted():
    return _Noted()


def test_a_cancelled_childs_answer_is_dropped_unread():
    """cancel: the answer is not wanted (a gate in scope drops the listing of specs/ made ahead); one the child wrote
    already is read off the pipe and the child reaped, but it is not unpickled (the listing of 120,000 spec files:
    0.16 to 0.21 s on a busy machine); answer() unpickles it."""
    UNPICKLED.clear()
    done = parallel.Beside(_noted)
    time.sleep(0.5)  # (written and ended by now: the pipe holds the whole answer)
    done.cancel()
    assert UNPICKLED == [] and done.pipe == -1
    with pytest.raises(ChildProcessError):
        os.waitpid(done.pid, os.WNOHANG)  # reaped
    assert parallel.Beside(_noted).answer() == "the answer" and UNPICKLED == [os.getpid()]
