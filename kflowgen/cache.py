"""The result cache: kustomize builds and clean validations, content-addressed by every input and tool version.

Entries live under $KFLOWGEN_CACHE (default $XDG_CACHE_HOME/kflowgen, else ~/.cache/kflowgen), in
<kind>/<key[:2]>/<key>; each starts with a line holding the sha256 of the rest, so a truncated or edited entry
is ignored (and rebuilt), never trusted. The cache lives outside the repository on purpose: a pull request
could commit files under the repository, and a planted "this passed" entry must never reach the gate.
Keys are content hashes, so repositories may share it. Safe to delete at any time. The converted schema folders
under schemas/ (kflowgen.checks.schemas) carry a manifest of their files and are made again when they differ from it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Callable

VERSION = "kflowgen-cache-2"  # bump when what is cached, or how it is computed, changes


def default_folder() -> Path:
    if os.environ.get("KFLOWGEN_CACHE"):
        return Path(os.environ["KFLOWGEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kflowgen"


_DIGESTS: dict[str, str] = {}  # text -> sha256 of its UTF-8 bytes, for texts read from the cache or hashed once


def text_digest(text: str, remember: bool = True) -> str:
    """sha256 of a (large) text, computed once per run however many keys include it (and not at all for a text
    read from the cache, whose checksum line is that sha256); remember=False: not kept (nor the text with it)."""
    digest = _DIGESTS.get(text)
    if digest is None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if remember:
            _remember(text, digest)
    return digest


def _remember(text: str, digest: str) -> None:
    if len(_DIGESTS) >= 1 << 17:  # a long-lived process (the tests) does not keep every text it ever saw
        _DIGESTS.clear()
    _DIGESTS[text] = digest


def key(*parts) -> str:
    return _fed(hashlib.sha256(VERSION.encode()), parts).hexdigest()


def keyed(*prefix):
    """key with these first parts, for many keys that share them: keyed(a, b)(c) == key(a, b, c), the shared parts
    hashed once (a run computes thousands of keys that differ only in their last parts)."""
    h = _fed(hashlib.sha256(VERSION.encode()), prefix)
    return lambda *parts: _fed(h.copy(), parts).hexdigest()


def _fed(h, parts):
    """h, updated with each part, length first (so that no two lists of parts give the same bytes); in one update (a
    key of thousands of parts is hashed in one call)."""
    out: list[bytes] = []
    add = out.append
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        add(_LENGTHS[len(data)] if len(data) < 4096 else len(data).to_bytes(8, "big"))
        add(data)
    h.update(b"".join(out))
    return h


_LENGTHS = [n.to_bytes(8, "big") for n in range(4096)]


class Lost(Exception):
    """The cache vouched for a result (an index named it) that it no longer holds, and making it again did not give
    the same: the run stops rather than check something unvouched (build.BuildLost, targets.cached.RenderLost)."""


class Cache:
    def __init__(self, folder: Path | None):
        self.folder = folder  # None: caching off
        self._top = str(folder) if folder is not None else ""
        self.hits = self.misses = 0

    def _path(self, kind: str, k: str) -> Path:
        assert self.folder is not None
        return self.folder / kind / k[:2] / k

    def get(self, kind: str, k: str) -> bytes | None:
        body = self.lookup(kind, k)
        if self.folder is not None:
            self.count(body is not None)
        return body

    def count(self, hit: bool, times: int = 1) -> None:
        if hit:
            self.hits += times
        else:
            self.misses += times

    def text(self, kind: str, k: str) -> str | None:
        """An entry's body as text; its sha256, checked on reading, is remembered for text_digest."""
        found = self.read(kind, k)
        if found is None:
            return None
        text = found[0].decode("utf-8")
        _remember(text, found[1])
        return text

    def read_many(self, kind: str, keys, text: bool = False) -> list:
        """read (or text) of many entries, None for a key that is None. One thread: reading more at once on threads
        measured slower (each entry costs more Python work than waiting)."""
        one = self.text if text else self.read
        return [one(kind, k) if k else None for k in keys]

    def lookup(self, kind: str, k: str) -> bytes | None:
        """An entry's body, or None when it is missing or damaged (without counting: see get)."""
        found = self.read(kind, k)
        return None if found is None else found[0]

    def read(self, kind: str, k: str) -> tuple[bytes, str] | None:
        """(body, its sha256) of an intact entry."""
        if self.folder is None:
            return None
        try:  # the checksum line apart from the body: the body is not copied out of the file's bytes
            with open(os.path.join(self._top, kind, k[:2], k), "rb", buffering=0) as f:
                check, body = f.read(65), f.readall()
        except OSError:
            return None
        digest = hashlib.sha256(body).hexdigest()
        return (body, digest) if check == digest.encode() + b"\n" else None

    def pieces(self, kind: str, k: str, spans: list[tuple[int, int]]) -> list[bytes] | None:
        """Byte ranges (start, length) of an entry's body, NOT checked against its checksum (which would read all of
        it): only for a caller that checks each piece itself, as the bytes of a file against the blob id an intact
        entry gave. None when the entry is missing or a range is past its end."""
        if self.folder is None:
            return None
        out = []
        try:
            with open(os.path.join(self._top, kind, k[:2], k), "rb") as f:
                for start, length in spans:
                    f.seek(65 + start)
                    out.append(f.read(length))
        except OSError:
            return None
        return out if all(len(piece) == length for piece, (_, length) in zip(out, spans)) else None

    def put(self, kind: str, k: str, body: bytes, digest: str | None = None) -> bool:
        """Keep body under k (digest: its sha256, when the caller has just computed it from these very bytes); whether
        the entry now holds it."""
        if self.folder is None:
            return False
        path = self._path(kind, k)
        check = (digest or hashlib.sha256(body).hexdigest()).encode() + b"\n"
        if _holds(path, check, body):  # this very entry, byte for byte (content-keyed data a run makes again, say)
            return True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(check)
                f.write(body)
            os.replace(tmp, path)
        except OSError:  # a read-only or full disk only costs speed
            return False
        return True


def _holds(path: Path, check: bytes, body: bytes) -> bool:
    """Whether the entry at path is exactly check + body: then put writes nothing, since writing a file costs more
    than reading it (a first gate at 1,000 teams made again about 10 MB it had: some 0.13 s of writing on this
    machine's disk, a few ms of reading). Anything else (missing, damaged, other bytes) is written anew."""
    try:
        with open(path, "rb", buffering=0) as f:
            return (os.fstat(f.fileno()).st_size == len(check) + len(body) and f.read(len(check)) == check
                    and f.readall() == body)
    except OSError:
        return False


class Memo:
    """Facts about content keys, {key: a word}, kept in one entry per context: a run reads one file instead of one
    per overlay. A key is the same content key an entry of its own would have; the entry's checksum is checked on
    reading, as every entry's. A key learned with no word (a pass) is held as its 32 bytes until saved, not as 64 hex
    digits in a dict: with an empty cache, the schema check and the policies each learn 560,000 at 10,000 teams."""

    def __init__(self, store: Cache, kind: str, *context, tag: str = "memo"):
        self.store, self.kind, self.k = store, kind, key(kind, tag, *context)
        body = store.lookup(kind, self.k)
        lines = body.decode("ascii").split("\n") if body else []
        if body and b" " not in body:  # keys only (Passes)
            self.known: dict[str, str] = dict.fromkeys(lines, "")
        else:
            self.known = {k: value for k, _, value in (line.partition(" ") for line in lines)}
        self.used: set[str] = set()
        self.new: dict[str, str] = {}
        self.bare = bytearray()  # keys learned now with no word, 32 bytes each (a key as key() gives it)

    def get(self, k: str) -> str | None:
        value = self.known.get(k)
        if value is not None:
            self.used.add(k)
        return value

    def put(self, k: str, value: str = "") -> None:
        if self.known.get(k) == value:
            self.used.add(k)
        elif value or not _BARE.fullmatch(k):
            self.new[k] = value
        else:  # (the last word put for a key is kept, as in one dict)
            self.new.pop(k, None)
            self.bare += bytes.fromhex(k)

    def save(self) -> None:
        """Keep what was known and what was learned now; when that grows past four times what this run used, keep
        only this run's (the entry stays the size of one repository's facts)."""
        if not self.new and not self.bare:
            return
        learned = {**dict.fromkeys([self.bare[i:i + 32].hex() for i in range(0, len(self.bare), 32)], ""), **self.new}
        keep = {**self.known, **learned}
        if len(keep) > 4 * len(self.used | learned.keys()):
            keep = {k: keep[k] for k in self.used | learned.keys()}
        self.store.put(self.kind, self.k, "\n".join(f"{k} {v}" if v else k for k, v in sorted(keep.items()))
                       .encode("ascii"))


_BARE = re.compile("[0-9a-f]{64}")  # a key as key() gives it, held as its 32 bytes (Memo.bare)


class Passes:
    """Keys of checks that passed (kubeconform, policy) in one context, kept by group of overlays. The overlays fall
    into GROUPS groups by path; a group's keys (its overlays' whole passes and their files') are one Memo entry, and
    one more holds the key of each group whose every overlay passed whole, over each one's path and digest (the sha256
    of its built text; of a plain directory one render unit wrote, of its files' paths and blob ids). A run that
    changed one team's overlays reads that entry and the entries of the few groups they are in, not a key for each of
    thousands of overlays (nor all the keys of every group)."""

    def __init__(self, store: Cache, kind: str, *context):
        self.store, self.kind, self.context = store, kind, context
        self.groups = Memo(store, kind, *context, "groups", tag="passes")
        self.memos: dict[int, Memo] = {}
        self.open: dict[int, tuple[str, set[str]]] = {}  # group looked into -> (its key, overlays not passed whole)
        self.listings: dict[str, dict[str, str]] = {}  # plain directory passed whole now -> its listing (to keep)

    def unchanged(self, overlay: str, listing: dict[str, str] | None) -> set[str]:
        """The files of a plain directory (listing: {path: blob id}) that passed already, as the directory's whole
        listing was kept when it last passed whole (for LISTED_FROM files or more): those still here with the same
        blob id. Each file passes or not by its own blob id alone, so one Job changed among a team's thousands is
        the one file looked up, not every file's key."""
        if not listing or len(listing) < LISTED_FROM:
            return set()
        body = self.store.lookup(self.kind, self._listing_key(overlay))
        try:
            items = body.decode("utf-8").split("\0") if body else []
            before = dict(zip(items[1::2], items[0::2])) if len(items) % 2 == 0 else {}
        except UnicodeDecodeError:  # an intact entry of another shape: not used
            before = {}
        out = {rel for rel, oid in listing.items() if before.get(rel) == oid}
        if self.store.folder is not None:
            self.store.count(True, len(out))  # (as many hits as files, as looked up one by one)
        return out

    def _listing_key(self, overlay: str) -> str:
        return key(self.kind, "listing", *self.context, overlay)

    def unpassed(self, digests: dict[str, str]) -> list[str]:
        """The overlays ({overlay: its digest, Built.digest}) of the groups that did not pass whole, in their order:
        the others passed whole, each with exactly that output."""
        members: dict[int, list[str]] = {}
        for overlay in digests:
            members.setdefault(_group(overlay), []).append(overlay)
        looked: set[str] = set()
        for group, overlays in members.items():
            k = key(self.kind, "group", *self.context, *sorted(f"{o}\0{digests[o]}" for o in overlays))
            if self.groups.get(k) is not None:
                if self.store.folder is not None:
                    self.store.count(True, len(overlays))  # (as many hits as overlays, as looked up one by one)
            else:
                self.open[group] = (k, set(overlays))
                looked.update(overlays)
        return [o for o in digests if o in looked]

    def has(self, k: str, overlay: str, whole: bool = False) -> bool:
        """Whether the check passed under k, for a file of this overlay or (whole) for the overlay."""
        hit = self._memo(overlay).get(k) is not None
        if self.store.folder is not None:
            self.store.count(hit)
        if hit and whole:
            self.open.get(_group(overlay), ("", set()))[1].discard(overlay)
        return hit

    def add(self, k: str, overlay: str, whole: bool = False, listing: dict[str, str] | None = None) -> None:
        """The check passed under k, for a file of this overlay or (whole) for the overlay (listing: a plain
        directory's {path: blob id}, kept for unchanged() when it has LISTED_FROM files or more)."""
        self._memo(overlay).put(k)
        if whole:
            self.open.get(_group(overlay), ("", set()))[1].discard(overlay)
            if listing and len(listing) >= LISTED_FROM:
                self.listings[overlay] = listing

    def save(self) -> None:
        for k, left in self.open.values():
            if not left:  # every overlay of the group passed whole
                self.groups.put(k)
        for memo in [*self.memos.values(), self.groups]:
            memo.save()
        for overlay, listing in self.listings.items():
            self.store.put(self.kind, self._listing_key(overlay),
                           "\0".join(f"{oid}\0{rel}" for rel, oid in listing.items()).encode("utf-8"))

    def _memo(self, overlay: str) -> Memo:
        group = _group(overlay)
        if group not in self.memos:
            self.memos[group] = Memo(self.store, self.kind, *self.context, f"group {group}", tag="passes")
        return self.memos[group]


GROUPS = 64  # the groups of overlays Passes keeps apart
LISTED_FROM = 50  # a plain directory of at least this many files passed whole keeps its listing (Passes.unchanged)


def _group(overlay: str) -> int:
    return zlib.crc32(overlay.encode()) % GROUPS


class PerObject:
    """fn(data) once per bytes object (environments that hold the same teams hold one hub values file, one bytes
    object: hashed once, not once per environment). Keyed by id() and holding the object, so that the id of an object
    freed meanwhile, given to another one, is never taken for it."""

    def __init__(self, fn: Callable[[bytes], str]):
        self.fn, self.seen = fn, {}

    def __call__(self, data: bytes) -> str:
        found = self.seen.get(id(data))
        if found is None or found[0] is not data:
            found = self.seen[id(data)] = (data, self.fn(data))
        return found[1]


def blob_id(data: bytes) -> str:
    """The id git gives a file of these bytes (sha1 of "blob <size>\\0" and the bytes): the working tree's files and
    a commit's, listed by `git ls-tree` without reading them, are named alike."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_ids(folder: Path) -> dict[str, str]:
    """{path below folder: blob id} of every file under a folder (e.g. bases/), links followed."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): blob_id(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def tree_digest(folder: Path) -> str:
    """One digest over every file's path and bytes under a folder (e.g. bases/)."""
    return key(*(f"{path}:{oid}" for path, oid in tree_ids(folder).items()))


# Libraries whose behaviour decides results kflowgen caches (spec parsing and schema checks): module -> distribution.
LIBRARIES = {"yaml": "pyyaml", "jsonschema": "jsonschema", "jsonschema_rs": "jsonschema_rs",
             "referencing": "referencing", "jsonschema_specifications": "jsonschema_specifications"}


@functools.cache
def code_digest() -> str:
    """One digest over kflowgen's own code and spec schemas, and the versions of the libraries that decide its
    results: entries computed by Python code (loaded specs, rendered files) are keyed on it, so a changed kflowgen
    or library never reads what another one wrote."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256(" ".join(f"{m} {dist_version(m)}" for m in LIBRARIES).encode() + b"\0")
    for p in sorted(package.rglob("*.py")) + sorted((package / "schemas").glob("*.json")):
        h.update(p.relative_to(package).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def dist_version(module: str) -> str:
    """An installed library's version, from its install record beside it (importlib.metadata costs 30 ms)."""
    import importlib.util

    dist = LIBRARIES.get(module, module).lower().replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec and spec.origin:
        folder = Path(spec.origin).parent.parent if spec.submodule_search_locations else Path(spec.origin).parent
        named = [e.name.removesuffix(".dist-info").rsplit("-", 1) for e in os.scandir(folder)
                 if e.name.endswith(".dist-info")]  # "name-version.dist-info"
        found = [n[1] for n in named if len(n) == 2 and n[0].lower().replace("-", "_") == dist]
        if found:  # several records (a leftover of an upgrade): all of them, so that any change shows
            return "+".join(sorted(found))
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(LIBRARIES.get(module, module))
    except PackageNotFoundError:
        return "unknown"
