"""Progress bars on a terminal for the long stages of a run; rich is imported only when they are drawn."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kflowgen import options


@contextlib.contextmanager
def progress_bars() -> Iterator[options.Progress | None]:
    """Progress bars for the long stages (reading specs, rendering, kustomize builds) on a terminal; nothing in
    CI logs or when output is redirected. Drawn from this thread on each step, never from a refresh thread: spec
    files are read and teams rendered on forked processes, and a process must not fork while threads run."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   transient=True, auto_refresh=False, console=Console(stderr=True))

    def start(total: int, what: str = "kustomize build"):
        task = bar.add_task(what, total=total)
        bar.start()  # without auto_refresh, starting draws once and starts no thread
        bar.refresh()

        def step(n: int = 1):
            bar.advance(task, n)
            bar.refresh()
        return step
    try:
        yield start
    finally:
        bar.stop()
