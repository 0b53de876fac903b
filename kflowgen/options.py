"""What every stage of a run is given: the repository, how many processes it may use, the result cache, and how to
report progress. One frozen value, made once by the command line (or a test) and passed down."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kflowgen import cache

Progress = Callable[[int, str], Callable[[int], None]]  # (total, what) -> step(n done)


@dataclass(frozen=True)
class Options:
    root: Path
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    store: cache.Cache = field(default_factory=lambda: cache.Cache(None))
    progress: Progress | None = None

    @classmethod
    def at(cls, root: Path, jobs: int | None = None, use_cache: bool = False, progress: Progress | None = None
           ) -> Options:
        """Options for a run in root: jobs None means every core; with use_cache, the cache in $KFLOWGEN_CACHE."""
        return cls(Path(root), jobs or os.cpu_count() or 1,
                   cache.Cache(cache.default_folder() if use_cache else None), progress)

    def stage(self, total: int, what: str) -> Callable[[int], None] | None:
        """The step callback of a stage of `total` units, or None without progress reporting."""
        return self.progress(total, what) if self.progress else None
