"""Counting the objects of a YAML stream as text (a build's output, a plain directory's files) without parsing it:
the documents that hold something, not only comments."""
from __future__ import annotations

import re


def count_files(data: list[bytes]) -> int:
    """count_objects of the files' texts joined as Parts.text joins them, file by file, without joining them (nor
    decoding the ASCII ones): the same count when every file ends with a line end (a "---" line then parts them) and
    none starts or ends with a "---" line (count_objects takes a second one in a row for a document's content)."""
    counts = list(map(file_count, data))
    return sum(counts) if None not in counts else count_objects("---\n".join(d.decode("utf-8") for d in data))


def file_count(data: bytes) -> int | None:
    """One file's part of count_files: its count_objects, or None when it is not a file count_files can count apart
    (see there)."""
    if data.endswith(b"\n") and not data.startswith(b"---\n") and not data.endswith(b"\n---\n"):
        return count_objects(data if data.isascii() else data.decode("utf-8"))
    return None


_VISIBLE = re.compile(r"^[ \t]*[^\s#]", re.M)  # a line that is neither blank nor a comment
_VISIBLE_ASCII = re.compile(rb"^[ \t]*[^ \t\n\r\f\v\x1c-\x1f#]", re.M)  # the same, of ASCII bytes


def count_objects(text: str | bytes) -> int:
    """Documents of a YAML stream (as text, or as ASCII bytes) that hold something, not only comments (without
    splitting the text into a copy per document)."""
    bytes_ = isinstance(text, bytes)
    visible, text, n, at = (_VISIBLE_ASCII, b"\n" + text, 0, 0) if bytes_ else (_VISIBLE, "\n" + text, 0, 0)
    while True:
        end = text.find(b"\n---\n" if bytes_ else "\n---\n", at)
        if visible.search(text, at, len(text) if end < 0 else end):
            n += 1
        if end < 0:
            return n
        at = end + 5
