"""What every stage of a run is given: the repository, how many processes it may use, the result cache, how to
report progress, and where to note how long each stage took. One frozen value, made once by the command line (or a
test) and passed down."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kflowgen import cache

Progress = Callable[[int, str], Callable[[int], None]]  # (total, what) -> step(n done)


@dataclass(eq=False)  # compared and hashed as itself, so that Options stay hashable
class Timings:
    """How long each stage took, in seconds, in the order the stages started (`--timings`). A stage run inside
    another is named after both ("base/build": the diff's base side being built); a stage run twice adds up."""

    seconds: dict[str, float] = field(default_factory=dict)
    within: list[str] = field(default_factory=list)  # the stages running now, outermost first

    def lines(self) -> list[str]:
        return [f"timings: {stage} {s * 1000:.0f} ms" for stage, s in self.seconds.items()]


def since_start() -> dict[str, float]:
    """{"start": seconds from this process's start until now} (Python's start and the imports before the command
    ran; to 10 ms, from /proc on Linux), or {} where the process's start cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # the fields after the command name, from the 3rd
        return {"start": time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")}
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, no CLOCK_BOOTTIME: not Linux
        return {}


@dataclass(frozen=True)
class Options:
    root: Path
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    store: cache.Cache = field(default_factory=lambda: cache.Cache(None))
    progress: Progress | None = None
    timings: Timings | None = None  # None: stages are not timed
    # listings started before the stages were imported (kflowgen.ahead.early), each taken by the first stage
    # that asks for the same one
    early: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def at(cls, root: Path, jobs: int | None = None, use_cache: bool = False, progress: Progress | None = None,
           timed: bool = False, early: dict | None = None) -> Options:
        """Options for a run in root: jobs None means every core; with use_cache, the cache in $KFLOWGEN_CACHE;
        with timed, each stage's time noted in timings, after the time the process took to start."""
        return cls(Path(root), jobs or os.cpu_count() or 1, cache.Cache(cache.default_folder() if use_cache else None),
                   progress, Timings(since_start()) if timed else None, early if early is not None else {})

    def stage(self, total: int, what: str) -> Callable[[int], None] | None:
        """The step callback of a stage of `total` units, or None without progress reporting."""
        return self.progress(total, what) if self.progress else None

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Note how long the block takes as `stage` (nothing without timings). From the main thread only."""
        t = self.timings
        if t is None:
            yield
            return
        name = "/".join([*t.within, stage])
        t.seconds.setdefault(name, 0.0)  # listed when it starts: an outer stage before the stages inside it
        t.within.append(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            t.within.pop()
            t.seconds[name] += time.perf_counter() - start
