"""A render unit's data entry (its files' bytes one after another, in path order), whole or in pieces.

A team of many experiments (targets.cached PARTS_FROM) keeps its data in pieces: a file whose path's crc32 is a
multiple of EVERY starts a piece, so a change to one experiment changes the pieces its files are in, and no other.
Each piece is a data entry of its own, keyed by its sha256; the unit's data entry is then a map, a JSON list of each
piece's sha256, length, the folders of its files that name bases/ and the objects its .yaml files hold in each
folder (documents.file_count; -1: not counted apart), and the index names it by "p" and the map's sha256. A pull
request that changes one experiment among 5,000 reads and writes that experiment's pieces, and neither reads nor
hashes nor writes the other megabytes (the index and the pieces' paths and blob ids say which are
unchanged). Every piece is checked against its sha256 when read, as every entry is, so the chain from the unit's
index to each file's bytes is as sure as one entry's checksum."""
from __future__ import annotations

import hashlib
import json
import zlib
from bisect import bisect_right
from itertools import accumulate

from kflowgen import cache
from kflowgen.documents import file_count

EVERY = 64  # a piece holds this many files on average


class Kept:
    """A file rendered before, not read: its size and git blob id, and where its bytes are (the sha256 of the piece
    that holds them, and their offset there). Stands in for the bytes in a unit being rendered (len() is the size)."""

    __slots__ = ("size", "id", "piece", "at")

    def __init__(self, size: int, blob: str, piece: str, at: int):
        self.size, self.id, self.piece, self.at = size, blob, piece, at

    def __len__(self) -> int:
        return self.size


def pieced(digest: str) -> bool:
    """Whether an index's data digest names a map of pieces rather than one data entry."""
    return len(digest) == 65 and digest[0] == "p"


def key(digest: str) -> str:
    """The key of a unit's data entry (or map, or piece) by the digest its index (or map) gives."""
    return cache.key("render-data", digest)


def sliced(body: bytes, sizes: list[int]) -> list[bytes] | None:
    bounds = list(accumulate(sizes, initial=0))
    return list(map(body.__getitem__, map(slice, bounds, bounds[1:]))) if bounds[-1] == len(body) else None


def read(store: cache.Cache, digest: str, sizes: list[int], p: int | None = None) -> list[bytes] | None:
    """A unit's files' bytes (sizes: as its index gives them), from its data entry or its pieces (p: of its p-th
    piece only, sizes being that piece's files'); None when one is missing or damaged, or they do not add up."""
    if not pieced(digest):
        found = store.read("render", key(digest))
        return sliced(found[0], sizes) if found is not None and found[1] == digest else None
    found = _map(store, digest)
    if found is None or (p is not None and not 0 <= p < len(found)):
        return None
    bodies = [_piece(store, d, length) for d, length, *_ in (found if p is None else [found[p]])]
    return None if None in bodies else sliced(b"".join(bodies), sizes)


def spans(store: cache.Cache, digest: str, sizes: list[int], positions: list[int]) -> list[bytes] | None:
    """The bytes of the files at these positions of a unit's index, NOT checked (Cache.pieces): the caller checks
    each against its blob id. Of a unit in pieces, each from its piece, without reading the others."""
    starts = list(accumulate(sizes, initial=0))
    if not pieced(digest):
        return store.pieces("render", key(digest), [(starts[n], sizes[n]) for n in positions])
    found = _map(store, digest)
    if found is None:
        return None
    edges = list(accumulate((length for _, length, *_ in found), initial=0))
    out = []
    for n in positions:
        if not sizes[n]:
            out.append(b"")
            continue
        p = bisect_right(edges, starts[n]) - 1
        if not 0 <= p < len(found):  # (a file that runs past its piece: Cache.pieces gives None)
            return None
        got = store.pieces("render", key(found[p][0]), [(starts[n] - edges[p], sizes[n])])
        if got is None:
            return None
        out += got
    return out


def count(store: cache.Cache, digest: str | None, folder: str) -> int | None:
    """The objects the .yaml files of a folder hold (documents.count_files of them), of a unit in pieces (digest: as
    its index names its data) that wrote all of them, from its map; None when not known so."""
    found = _map(store, digest) if digest and pieced(digest) else None
    counts = [n for *_, counted in found if folder in counted for n in [counted[folder]]] if found else [-1]
    return sum(counts) if counts and min(counts) >= 0 else None


def recall(store: cache.Cache, index: tuple) -> tuple[dict[str, tuple], dict[str, Kept]] | None:
    """Of a unit in pieces (index: as targets.cached.unpack gives it): its pieces by what they hold, {the paths and
    blob ids of their files: (sha256, length, folders naming bases/, objects by folder)}, and each file as Kept; None
    when its data is not in pieces, or its map is missing, damaged or does not add up with the index."""
    paths, sizes, ids, digest = index[0], index[1], index[2], index[5]
    found = _map(store, digest) if pieced(digest) else None
    edges = bounds(paths)
    if found is None or len(found) != len(edges) - 1:
        return None
    prior, kept = {}, {}
    for piece, a, b in zip(found, edges, edges[1:]):
        d, length = piece[:2]
        at = list(accumulate(sizes[a:b], initial=0))
        if at[-1] != length:
            return None
        prior[_held(paths[a:b], ids[a:b])] = piece
        kept.update((rel, Kept(size, i, d, start)) for rel, size, i, start in zip(paths[a:b], sizes[a:b], ids[a:b], at))
    return prior, kept


def put(store: cache.Cache, paths: list[str], data: list, ids: list[str], prior: dict[str, tuple]
        ) -> tuple[str, list[str], bool] | None:
    """Keep a unit's files in pieces: a piece that holds the very files (paths and blob ids) of one in prior
    (recall) is that one, neither read nor written (but for its entry's last byte: one gone is made again); the
    others are made of the files' bytes (a Kept file's read from its piece, and checked against its blob id). Gives
    the digest the unit's index names its data by, the folders of its files that name bases/, and whether every
    entry is in the cache; None when a Kept file's bytes are not there."""
    edges, out, stored = bounds(paths), [], True
    for a, b in zip(edges, edges[1:]):
        same = prior.get(_held(paths[a:b], ids[a:b]))
        last = [(max(same[1] - 1, 0), min(same[1], 1))] if same is not None else []
        if same is not None and store.pieces("render", key(same[0]), last) is None:
            same = None  # not in the cache (any more): made again, or None when its files' bytes are gone with it
        if same is None:
            piece = _bytes(store, data[a:b], ids[a:b])
            if piece is None:
                return None
            body = b"".join(piece)
            digest = hashlib.sha256(body).hexdigest()
            stored = store.put("render", key(digest), body, digest) and stored
            based = sorted({p.rsplit("/", 1)[0] for p, d in zip(paths[a:b], piece) if b"bases/" in d})
            counted: dict[str, int] = {}
            for p, d in zip(paths[a:b], piece):
                if p.endswith(".yaml"):
                    folder, n = p.rsplit("/", 1)[0], file_count(d)
                    counted[folder] = -1 if n is None or counted.get(folder, 0) < 0 else counted.get(folder, 0) + n
            same = (digest, len(body), based, counted)
        out.append(same)
    body = json.dumps([list(p) for p in out]).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    stored = store.put("render", key("p" + digest), body, digest) and stored
    return "p" + digest, sorted({f for _, _, based, _ in out for f in based}), stored


def bounds(paths: list[str]) -> list[int]:
    """Where the pieces of files of these paths (in path order) start, and their end."""
    return [0, *(n for n, p in enumerate(paths) if n and zlib.crc32(p.encode()) % EVERY == 0), len(paths)] \
        if paths else [0]


def _held(paths: list[str], ids: list[str]) -> str:
    return "\0".join(paths + ids)


def _bytes(store: cache.Cache, data: list, ids: list[str]) -> list[bytes] | None:
    """The files' bytes, a Kept file's from its piece (each piece read once), checked against its blob id."""
    read: dict[str, bytes | None] = {}
    out = []
    for d, i in zip(data, ids):
        if type(d) is Kept:
            if d.piece not in read:
                found = store.read("render", key(d.piece))
                read[d.piece] = found[0] if found is not None and found[1] == d.piece else None
            body, size = read[d.piece], d.size
            d = body[d.at:d.at + size] if body is not None else b""
            if body is None or len(d) != size or cache.blob_id(d) != i:
                return None
        out.append(d)
    return out


def _piece(store: cache.Cache, digest: str, length: int) -> bytes | None:
    found = store.read("render", key(digest))
    return found[0] if found is not None and found[1] == digest and len(found[0]) == length else None


def _map(store: cache.Cache, digest: str) -> list[tuple[str, int, list[str], dict[str, int]]] | None:
    """A unit's map of pieces: (sha256, length, folders naming bases/, objects by folder) of each; None when missing,
    damaged or of another shape."""
    found = store.read("render", key(digest))
    if found is None or found[1] != digest[1:]:
        return None
    try:
        out = [(d, n, based, counted) for d, n, based, counted in json.loads(found[0])]
    except (ValueError, TypeError):
        return None
    ok = all(type(d) is str and len(d) == 64 and type(n) is int and n >= 0 and type(b) is list and type(c) is dict
             and all(type(f) is str for f in b) and all(type(v) is int for v in c.values()) for d, n, b, c in out)
    return out if ok else None
