"""Objects handed from the render and the build to the checks, kept packed (marshal's bytes: of this process or of a
render worker of the same interpreter, never stored) and unpacked each time they are asked for, not held: the schema
check and the policies read each once. Held as objects from the render and the build to the checks, they made a
validate without the cache peak at 616 MB at 1,000 teams and 5.7 GB at 10,000; packed, 417 MB and 3.7 GB, for 2 %
more time at 1,000 teams (the objects are unpacked twice, where they were received once)."""
from __future__ import annotations

import marshal
from collections.abc import Callable, MutableMapping
from functools import partial

pack = marshal.dumps  # a JSON-like value (dicts, lists, strings, numbers, booleans, None) as bytes


def unpacked(data: bytes | None) -> list:
    """The one object a packed file holds, as a list (none when the file holds none: None)."""
    return [] if data is None else [marshal.loads(data)]


def unpacked_all(packed: list[bytes | None]) -> list:
    """The objects of these packed files, in order (a file that holds none adds none)."""
    return [marshal.loads(data) for data in packed if data is not None]


class Packed(MutableMapping):
    """{overlay: its objects}: those set as they are held as they are (objects parsed here); those given packed
    (put: pack's bytes) or as the objects of packed files (of_files) are made anew each time they are asked for, and
    never held."""

    def __init__(self, items: dict | None = None):
        self._items: dict[str, list | Callable[[], list]] = dict(items or {})

    def put(self, key: str, data: bytes) -> None:
        """The key's objects, as pack() gave them (one list)."""
        self._items[key] = partial(marshal.loads, data)

    def of_files(self, key: str, files: list[bytes | None]) -> None:
        """The key's objects: those of these packed files (unpacked_all)."""
        self._items[key] = partial(unpacked_all, files)

    def __getitem__(self, key: str) -> list:
        found = self._items[key]
        return found() if callable(found) else found

    def __setitem__(self, key: str, objects: list) -> None:
        self._items[key] = objects

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __contains__(self, key) -> bool:
        return key in self._items

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
