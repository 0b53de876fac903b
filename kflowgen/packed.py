"""Objects handed from the render and the build to the checks, kept packed (marshal's bytes: of this process or of a
render worker of the same interpreter, never kept in the result cache) and unpacked each time they are asked for,
not held: the schema check and the policies read each once. Held as objects from the render and the build to the
checks, they made a validate without the cache peak at 616 MB at 1,000 teams and 5.7 GB at 10,000; packed, 417 MB
and 3.7 GB, for 2 % more time at 1,000 teams (the objects are unpacked twice, where they were received once). A run
of many units sets them aside in a temporary file of its own (Spill) as they arrive: a validate with an empty cache
at 10,000 teams peaked at 1.26 GB instead of 1.61 GB."""
from __future__ import annotations

import marshal
import os
import tempfile
import threading
from collections.abc import Callable, MutableMapping
from functools import partial
from typing import NamedTuple

pack = marshal.dumps  # a JSON-like value (dicts, lists, strings, numbers, booleans, None) as bytes


class Spill:
    """Packed bytes set aside in a temporary file of this process, read back each time they are asked for: a run of
    many units (the first, or the first after upgrading) does not hold every object the render and the build hand
    to the checks. The file is deleted as it is made (no other process opens it, and nothing is left behind when the
    run ends, however it ends), and it holds only what this process wrote: its bytes are marshal's of this very
    interpreter, as a render worker's are."""

    def __init__(self):
        try:
            self._file = tempfile.TemporaryFile(prefix="kflowgen-spill-")
        except OSError:  # no folder to write it in: the bytes are held, as before
            self._file = None
        self._end = 0
        self._lock = threading.Lock()  # (the checks read from threads; pread and pwrite take no shared offset)

    def put(self, data: bytes | None) -> bytes | At | None:
        """Where these bytes now are (None stays None: a file that holds no object); the bytes themselves, held,
        when the file cannot take them (a full disk)."""
        if data is None or self._file is None:
            return data
        with self._lock:
            start = at = self._end
            try:
                while at < start + len(data):
                    at += os.pwrite(self._file.fileno(), memoryview(data)[at - start:], at)
            except OSError:
                return data  # (what was written of it is never read: _end stays)
            self._end = at
        return At(self, start, len(data))

    def pack(self, objects: list | dict) -> bytes | At:
        """pack(objects), set aside."""
        return self.put(pack(objects))

    def span(self, data: bytes) -> bytes | Span:
        """These bytes set aside, to be read a slice at a time (the bytes themselves when the file cannot take them)."""
        at = self.put(data)
        return at if type(at) is bytes else Span(at)

    def read(self, start: int, size: int) -> bytes:
        data = os.pread(self._file.fileno(), size, start)
        if len(data) != size:
            raise OSError(f"kflowgen's temporary file lost {size - len(data)} bytes")
        return data


class At(NamedTuple):
    """Packed bytes set aside in a Spill."""

    spill: Spill
    start: int
    size: int


class Span:
    """Bytes set aside in a Spill (Spill.span), read a slice at a time: span[a:b] is what the bytes' [a:b] was."""

    __slots__ = ("at",)

    def __init__(self, at: At):
        self.at = at

    def __getitem__(self, part: slice) -> bytes:
        start, stop, step = part.indices(self.at.size)
        if step != 1:
            raise ValueError("a span is read in slices of one step")
        return self.at.spill.read(self.at.start + start, max(0, stop - start))

    def __len__(self) -> int:
        return self.at.size


def _bytes(data: bytes | At) -> bytes:
    return data if type(data) is bytes else data.spill.read(data.start, data.size)


def loads(data: bytes | At) -> list | dict:
    """What pack() gave these bytes (or the bytes set aside in a Spill)."""
    return marshal.loads(_bytes(data))


def unpacked(data: bytes | At | None) -> list:
    """The one object a packed file holds, as a list (none when the file holds none: None)."""
    return [] if data is None else [loads(data)]


def unpacked_all(packed: list[bytes | At | None]) -> list:
    """The objects of these packed files, in order (a file that holds none adds none)."""
    return [loads(data) for data in packed if data is not None]


class Packed(MutableMapping):
    """{overlay: its objects}: those set as they are held as they are (objects parsed here); those given packed
    (put: pack's bytes) or as the objects of packed files (of_files) are made anew each time they are asked for, and
    never held."""

    def __init__(self, items: dict | None = None):
        self._items: dict[str, list | Callable[[], list]] = dict(items or {})

    def put(self, key: str, data: bytes | At) -> None:
        """The key's objects, as pack() gave them (one list; or set aside in a Spill)."""
        self._items[key] = partial(loads, data)

    def of_files(self, key: str, files: list[bytes | At | None]) -> None:
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
