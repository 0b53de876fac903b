"""The rendered files as the stages after the render see them: {path: bytes}, where a unit's bytes that the result
cache holds are read from its data entry when one of its files is asked for, and only the units read last are held."""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from kflowgen import cache
from kflowgen.targets import jupyterhub

# The bytes of the units read last that a Files holds (at least the one unit read last): a stage that goes over
# every file reads each unit once, and a run of thousands of units does not hold them all (at 1,000 teams the
# rendered files are about 90 MB, at 10,000 about 0.9 GB, when every stage after the render has read them). A stage
# goes over the files in path order, one environment's teams after another, so a size short of all of them reads a
# team's unit again in the next environment, a larger size less often: with an empty cache at 1,000 teams, 8 MiB
# read units 12,016 times (257 MiB) against 32 MiB's 6,008 (163 MiB), in the same 23 to 26 s, and peaked 23 to
# 33 MiB lower (145 to 148 MiB against 171 to 178).
HOLD = 8 << 20


class RenderLost(cache.Lost):
    """A unit's files are neither in the cache any more nor rendered again to the blob ids its entry gives."""


class Released(RenderLost):
    """A unit's files are not in the cache any more, and the files were released (Files.release): not rendered."""


class Files(Mapping):
    """{path: bytes} of the rendered files, in path order. A unit's files that are in the cache are read from its data
    entry when one of them is first asked for: a gate compares them with git by blob id, and reads the bytes of
    what it builds or checks again, not of every unchanged team; and the bytes of the units read last, up to HOLD,
    are held (a unit whose bytes were let go is read again when asked for again)."""

    def __init__(self, at: dict[str, bytes | int], load: Callable[[int], dict[str, bytes]],
                 released: Callable[[int], dict[str, bytes]] | None = None):
        self._at, self._load = at, load  # path -> its bytes, or the number of the unit (load) that holds them
        self._released = released or load
        self._recent: dict[int, tuple[dict[str, bytes], int]] = {}  # unit -> (its files, their size), oldest first
        self._held = 0
        self._lock = threading.Lock()  # (the schema check's thread and the hub values' check read files at once)

    def release(self) -> None:
        """Read a unit's files from its data entry only, from now on, and Released when it is not there: what renders a
        unit again (the model) is let go, and so is what the hub values' renderer keeps of the last teams it was given
        (a unit rendered again when its files were not in the cache). The gate does so once it has checked the head,
        whose diff reads few files (at 10,000 teams the model is 300 MB of the gate's peak); Released: made again."""
        self._load = self._released
        jupyterhub.forget()

    def __getitem__(self, path: str) -> bytes:
        found = self._at[path]
        if type(found) is not int:
            return found
        with self._lock:
            held = self._recent.pop(found, None)
            if held is None:
                files = self._load(found)
                held = (files, sum(map(len, files.values())))
                self._held += held[1]
                while self._recent and self._held > HOLD:  # the oldest let go (never the one asked for)
                    self._held -= self._recent.pop(next(iter(self._recent)))[1]
            self._recent[found] = held  # (the unit that wrote the path last: its files hold it)
        return held[0][path]

    def __iter__(self):
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, path) -> bool:
        return path in self._at

    def keys(self):
        return self._at.keys()
