"""render(model), byte for byte, from the result cache where it can: each unit is a function of the spec files
unit_sources names and of kflowgen's code, so a unit comes from the cache when those are unchanged (its index at
once, its files' bytes when asked for); the rest are rendered, many on forked processes."""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from itertools import accumulate, chain, repeat
from operator import attrgetter

from kflowgen import cache, parallel, packed
from kflowgen.options import Options
from kflowgen.specs.model import Model
from kflowgen.targets import hub_parts, jupyterhub, pieces, unit, unit_sources, units
from kflowgen.targets.files import Files, Released, RenderLost
from kflowgen.targets.pieces import key as data_key, pieced


@dataclass(frozen=True)
class Rendered:
    """The generated files, {path: bytes}, in path order; for each folder whose files all come from one cached unit,
    the sha256 of that unit's index entry (checked when read; it names the sha256 of the unit's files): an overlay's
    build is keyed on it without hashing the overlay's files again; for files of plain directories of manifests
    rendered in this run (not read from the cache), the object each file holds, packed (kflowgen.packed: None when it
    holds none), so that they need not be parsed;
    each file's git blob id, computed from the bytes when the unit was rendered and kept in its cache entry with them
    (under the entry's checksum), so that the drift check compares blob ids with git's without reading or hashing
    every file; and the folders that hold a file naming bases/ (None: read the files to know)."""

    files: Mapping[str, bytes]
    origin: dict[str, str] = field(default_factory=dict)
    objects: dict[str, bytes | None] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    based: set[str] | None = None
    units: dict[str, str] = field(default_factory=dict)  # folder -> the key of the one cached unit that wrote it all
    pieced: dict[str, str] = field(default_factory=dict)  # of those, a unit's in pieces: folder -> its data's digest

    @cached_property
    def folders(self) -> dict[str, list[str]]:
        """{folder: the paths of its files, in the files' order}, made once (the build and the overlays listing each
        used to go over the tens of thousands of paths)."""
        out: dict[str, list[str]] = {}
        for rel in self.files:
            out.setdefault(rel.rsplit("/", 1)[0], []).append(rel)
        return out


def render_cached(model: Model, opts: Options, only: list[tuple[str, str]] | None = None) -> Rendered:
    """(only: only these units, of those units() gives, e.g. the units of the teams a change touches)"""
    keys = _unit_keys(model, units(model) if only is None else only)
    stage = opts.stage(len(keys), "rendering")
    # the units' indexes, read here (no copy between processes), a bucket's or a unit's entry at a time, each unpacked
    # before the next is read (into the memory this one's body leaves); an index that does not add up is rendered
    # again, never trusted; the files' bytes are read when asked for (Files)
    found, missed = _recalled(opts.store, keys)
    cached = {u: found.get(u) for u in keys}
    todo = [u for u, index in cached.items() if index is None]
    # a render of many units (the first run, or the first after upgrading kflowgen) leaves each unit's bytes in the
    # cache once they are there, to be read back when asked for (Files), instead of holding every file's to the end
    many = len(todo) >= parallel.PARALLEL_FROM
    state = (model, opts.store, keys, opts.store.folder is not None and many)
    # an environment's shared unit names every team: rendered here, each team's part of the hub values from the
    # cache where it is there (one changed team: one part made), and the parts made here kept for the next run
    shared, rest = [u for u in todo if not u[1]], [u for u in todo if u[1]]
    # and sets aside the objects it hands to the checks (packed.Spill), as each batch of units arrives
    keep = partial(_spilled, packed.Spill()) if many else _held
    known = hub_parts.recall(model, opts.store) if shared else set()
    made = dict(zip(shared, keep(_render_units(state, shared))))
    if shared:
        hub_parts.keep(model, opts.store, known)
        jupyterhub.forget()
    if stage:  # the units recalled, and the shared ones rendered
        stage(len(keys) - len(rest))
    made.update(zip(rest, parallel.fan_out(_render_units, rest, opts.jobs, stage, state=state, keep=keep)))
    for bucket, read in missed:
        _keep_bucket(opts.store, bucket, keys, read)
    paths: list[str] = []
    ids: list[str] = []
    origin: dict[str, str | None] = {}
    wrote: dict[str, str | None] = {}  # (Rendered.units)
    data_of: dict[str, str] = {}  # (Rendered.pieced)
    objects: dict = {}
    based: set[str] = set()
    for u in keys:
        if cached[u] is not None:
            unit_paths, _, unit_ids, folders, unit_based, _, digest = cached[u]
        else:
            unit_paths, _, unit_ids, folders, unit_based, digest, unit_objects, left = made[u]
            objects.update(unit_objects)
            if left is not None:  # its bytes left in the cache: read as a cached unit's
                cached[u] = left
        paths += unit_paths
        ids += unit_ids
        based.update(unit_based)
        in_pieces = cached[u][5] if cached[u] is not None and pieced(cached[u][5]) else None  # (once a unit)
        for folder in folders:
            origin[folder] = digest if origin.get(folder, digest) == digest else None
            wrote[folder] = keys[u] if wrote.get(folder, keys[u]) == keys[u] else None
            if in_pieces:
                data_of[folder] = in_pieces
    opts.store.count(True, len(keys) - len(todo))  # a unit found was keyed; of those rendered, the keyed ones
    opts.store.count(False, sum(1 for u in todo if keys[u]))
    # in path order; of two units writing one path, the later wins (its bytes, at the path's place in that order);
    # a cached unit's bytes are read when first asked for (Files), of a unit in pieces a piece's at a time
    at: dict[str, bytes | int] = dict.fromkeys(sorted(paths))
    order: list[tuple] = []  # (unit, its piece or None, the piece's first file and end)
    for u in keys:
        if cached[u] is None:
            at.update(zip(made[u][0], made[u][1]))
            continue
        whole = not pieced(cached[u][5])
        edges = [0, len(cached[u][0])] if whole else pieces.bounds(cached[u][0])
        for p, (a, b) in enumerate(zip(edges, edges[1:])):
            at.update(zip(cached[u][0][a:b], repeat(len(order))))
            order.append((u, None if whole else p, a, b))
    again: dict = {}  # (_data_of)
    files = Files(at, partial(_data_of, model, opts.store, order, cached, again),
                  partial(_data_of, None, opts.store, order, cached, again))
    return Rendered(files, {folder: k for folder, k in origin.items() if k}, objects, dict(zip(paths, ids)), based,
                    {folder: k for folder, k in wrote.items() if k},
                    {folder: d for folder, d in data_of.items() if wrote[folder]})


def _held(results: list[tuple]) -> list[tuple]:
    return results


def _spilled(spill: packed.Spill, results: list[tuple]) -> list[tuple]:
    """_render_units' results with their objects set aside in the spill (their places kept instead of the bytes)."""
    return [(*result[:6], {p: spill.put(o) for p, o in result[6].items()}, result[7]) for result in results]


def _data_of(model: Model | None, store: cache.Cache, order: list, cached: dict, again: dict, n: int
             ) -> dict[str, bytes]:
    """The files of the n-th unit (or piece of a unit) of order, whose index came from the cache (or whose bytes the
    render left there): from its data entry (or piece), else rendered again (not without the model: Files.release);
    either way the bytes its index names (sizes and blob ids), or RenderLost. A unit in pieces rendered again is held
    (again), so that its other pieces are not rendered again each when the cache cannot keep them."""
    u, p, a, b = order[n]
    paths, sizes, ids, _, _, data_digest, _ = cached[u]
    data = again[u][a:b] if u in again else pieces.read(store, data_digest, sizes[a:b], p)
    if data is None and model is None:
        raise Released(f"the rendered files of {u[1] or 'the shared files'} in {u[0]} are not in the cache any more")
    if data is None:
        made = unit(model, *u).files
        data = [made.get(path, b"") for path in paths]
        if len(made) != len(paths) or [cache.blob_id(d) for d in data] != ids:
            raise RenderLost(f"the rendered files of {u[1] or 'the shared files'} in {u[0]} are not in the cache any "
                             f"more and did not render to the same files again: delete the result cache "
                             f"({store.folder}) and run again")
        if pieced(data_digest):
            pieces.put(store, paths, data, ids, {})
            again[u] = data
        else:
            store.put("render", data_key(data_digest), b"".join(data))
        data = data[a:b]
    return dict(zip(paths[a:b], data))


def _render_units(state: tuple, batch: list[tuple[str, str]]) -> list[tuple]:
    """Render units not in the cache (cached when the unit has a key), each as its paths, their bytes and blob ids,
    its folders, those that hold a file naming bases/, the sha256 of its index entry, the objects of its files in
    plain directories of manifests, packed, and None; or, when state says to leave the bytes in the cache (or the
    unit is a team of PARTS_FROM experiments or more, kept in pieces) and they are there, None for the bytes and,
    last, the unit's index as _recalled gives a cached unit's (not sent back from a worker process, nor held)."""
    model, store, keys, leave = state
    out = []
    blob_of = cache.PerObject(cache.blob_id)  # (environments that hold the same teams hold one hub values file)
    for u in batch:
        kept = keys[u] and u[1] and len(model.members(u[1], u[0])[1]) >= PARTS_FROM
        known, prior = _recall_workloads(model, store, u) if kept else (None, {})
        while True:
            made, digest, left = unit(model, *u, known), None, None
            paths = sorted(made.files)
            data = [made.files[p] for p in paths]
            # once, from the bytes just rendered (or kept with the files rendered before): kept in the entry with them
            ids = [d.id if type(d) is pieces.Kept else blob_of(d) for d in data]
            put = pieces.put(store, paths, data, ids, prior) if kept else None
            if not known or (put and put[2]):
                break
            known, prior = None, {}  # a file rendered before is not in the cache (any more): the unit rendered whole
        folders = _folders(paths)
        if keys[u]:
            if put:
                data_digest, based, stored = put
            else:
                body, based = b"".join(data), _based(paths, data)
                data_digest = hashlib.sha256(body).hexdigest()
                stored = store.put("render", data_key(data_digest), body, data_digest)
            index = _index(paths, list(map(len, data)), ids, folders, based, data_digest)
            store.put("render", keys[u], index)
            digest = hashlib.sha256(index).hexdigest()
            if (leave or any(type(d) is pieces.Kept for d in data)) and stored:
                left = (paths, list(map(len, data)), ids, folders, based, data_digest, digest)
            if kept and made.parts:
                _keep_workloads(model, store, u, made.parts, keys[u], dict(zip(paths, zip(data, ids))))
        else:
            based = _based(paths, data)
        out.append((paths, None if left else data, ids, folders, based, digest,
                    {p: o if o is None else packed.pack(o) for p, o in made.objects.items()}, left))
    return out


# A team unit of at least this many experiments keeps which of its files each experiment made (by path and blob id,
# beside its render entry, which holds their bytes), so that a change to one experiment renders that one: below it,
# rendering the team again costs about what writing the list does (a team of 5,000 one-trial experiments renders in
# about 0.5 s, one of 50 in 5 ms). The rules keep their parts from the same size on (kflowgen.rules.PARTS_FROM).
PARTS_FROM = 50


def _workloads_key(model: Model, env: str, name: str) -> str | None:
    """The key of a team's experiments' files in an environment: what they are a function of besides each
    experiment's own spec file (team.workloads_overlay)."""
    p, t = model.platform.source, model.team(env, name).source
    return cache.key("workload-parts", cache.code_digest(), env, name, p.path, p.digest, t.path, t.digest) \
        if p.digest and t.digest else None


def _recall_workloads(model: Model, store: cache.Cache, u: tuple[str, str]) -> tuple[dict | None, dict]:
    """{(spec path, sha256): {path: pieces.Kept}} of the team's experiments as last kept (_keep_workloads): each
    experiment's files in the render entry the list names, when every one of them is there with the blob id the
    list gives (a file a later experiment wrote over is not: that experiment is rendered again); None when there is
    no list, it is of another shape, or its render entry is gone, damaged or not in pieces. And that entry's pieces
    (pieces.recall). No file's bytes are read."""
    k = _workloads_key(model, *u)
    body = store.lookup("render", k) if k else None
    try:
        unit_key, kept = json.loads(body) if body else (None, None)
        found = _unpacked(store.read("render", unit_key)) if isinstance(unit_key, str) else None
        recalled = pieces.recall(store, found) if found is not None else None
        if recalled is None:
            return None, {}
        prior, at = recalled
        out = {}
        for path, digest, rels, ids in kept:
            files = {rel: at[rel] for rel, i in zip(rels, ids, strict=True) if rel in at and at[rel].id == i}
            if len(files) == len(rels) and isinstance(path, str) and isinstance(digest, str):
                out[path, digest] = files
        return out, prior
    except (ValueError, TypeError):  # an intact entry of another shape: not used
        return None, {}


def _keep_workloads(model: Model, store: cache.Cache, u: tuple[str, str], parts: dict, unit_key: str,
                    ids: dict[str, tuple]) -> None:
    """Which files each of the team's experiments made (Unit.parts), by path and blob id, and the key of the render
    entry that holds them (ids: each path's bytes, or pieces.Kept, and blob id in it), for the next render of the
    team: of a file a later experiment wrote over, the blob id of what this one made (not the entry's)."""
    k = _workloads_key(model, *u)
    if k:
        kept = [[path, digest, list(files), [ids[rel][1] if ids[rel][0] is d else d.id if type(d) is pieces.Kept
                                             else cache.blob_id(d) for rel, d in files.items()]]
                for (path, digest), files in parts.items()]
        store.put("render", k, json.dumps([unit_key, kept]).encode("utf-8"))


_NAMED, _DIGEST = attrgetter("path", "digest"), attrgetter("digest")


def _unit_keys(model: Model, only: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """Each unit's key: kflowgen's code, the unit, and the path and sha256 of each spec file unit_sources names, in
    one NUL-separated part (neither holds a NUL); None for a unit with a spec not read from a file (e.g. made in a
    test): not cached."""
    keyed = cache.keyed("render", "index-and-data", cache.code_digest())
    out = {}
    for u in only:
        sources = unit_sources(model, *u)
        out[u] = keyed(*u, "\0".join(chain.from_iterable(map(_NAMED, sources)))) if all(map(_DIGEST, sources)) else None
    return out


def pack(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """Files as a unit's two cache entries, in path order: its index, a line "<files> <folders> <index length>
    <sha256 of the data>", then each file's path, size and git blob id, the folders of the files, and those of the
    folders that hold a file naming bases/, NUL-separated; and its data, the files' bytes one after another."""
    paths = sorted(files)
    return _pack(paths, [files[p] for p in paths], [cache.blob_id(files[p]) for p in paths], _folders(paths))


def _pack(paths: list[str], data: list[bytes], ids: list[str], folders: list[str]) -> tuple[bytes, bytes]:
    body = b"".join(data)
    return _index(paths, list(map(len, data)), ids, folders, _based(paths, data), hashlib.sha256(body).hexdigest()), \
        body


def _index(paths: list[str], sizes: list[int], ids: list[str], folders: list[str], based: list[str],
           data_digest: str) -> bytes:
    """A unit's index entry (see pack), its data's digest given (the sha256 of its data, or "p" and that of its map
    of pieces: kflowgen.targets.pieces)."""
    index = "\0".join([*(f"{p}\0{n}\0{i}" for p, n, i in zip(paths, sizes, ids)), *folders, *based]).encode()
    return b"%d %d %d %s\n" % (len(paths), len(folders), len(index), data_digest.encode()) + index


def _folders(paths: list[str]) -> list[str]:
    """The folders files of these paths are in (where Rendered.origin says which unit wrote a folder)."""
    return sorted({p.rsplit("/", 1)[0] for p in paths})


def _based(paths: list[str], data: list[bytes]) -> list[str]:
    """The folders of these files that hold one naming bases/ (an overlay's build is then keyed on bases/ too)."""
    return sorted({p.rsplit("/", 1)[0] for p, d in zip(paths, data) if b"bases/" in d})


def unpack(index: bytes) -> tuple | None:
    """A unit's index entry (pack) again, as (paths, sizes, blob ids, folders, folders naming bases/, sha256 of the
    data); None when it does not add up (the count, the lengths, a folder for files): then the unit is rendered
    again. The entry's checksum was checked when it was read, so the ids and folders are those pack computed from
    the files."""
    try:
        end = index.index(b"\n")
        count, nfolders, size, digest = index[:end].split(b" ")
        count, nfolders, size = int(count), int(nfolders), int(size)
        fields = index[end + 1:].decode("utf-8").split("\0") if size else []
        sizes = list(map(int, fields[1:3 * count:3]))
    except ValueError:
        return None
    if (count < 0 or not (0 < nfolders <= count or nfolders == count == 0) or len(fields) < 3 * count + nfolders
            or len(index) != end + 1 + size or len(digest) != 64 + (digest[:1] == b"p")
            or min(sizes, default=0) < 0):
        return None
    return (fields[0:3 * count:3], sizes, fields[2:3 * count:3], fields[3 * count:3 * count + nfolders],
            fields[3 * count + nfolders:], digest.decode())


BUCKETS = 64  # the units fall into this many buckets by name, each bucket's indexes kept together too


def _recalled(store: cache.Cache, keys: dict) -> tuple[dict, list[list]]:
    """Each cached unit's index (_unpacked), and the buckets whose entry was missing. The indexes of a bucket's units
    are also kept in one entry (_keep_bucket), keyed by their keys: a run that changes one team reads BUCKETS entries
    and that team's bucket's units one by one, not an entry for each of the thousands of units."""
    buckets: dict[int, list] = {}
    for u in keys:
        buckets.setdefault(zlib.crc32(f"{u[0]}/{u[1]}".encode()) % BUCKETS, []).append(u)
    out: dict = {}
    missed = []
    for bucket in buckets.values():
        read = {}
        if len(bucket) > 1 and all(keys[u] for u in bucket):
            found = _bucket(store, bucket, keys)
            if found is not None:
                out.update(zip(bucket, found))
                continue
            missed.append((bucket, read))
        for u in bucket:
            read[u] = store.read("render", keys[u]) if keys[u] else None
            out[u] = _unpacked(read[u])
    return out, missed


def _bucket_key(bucket: list, keys: dict) -> str:
    return cache.key("render-bucket", *(keys[u] for u in bucket))


def _bucket(store: cache.Cache, bucket: list, keys: dict) -> list | None:
    """The indexes of a bucket's units, as _unpacked gives them, from the bucket's entry (a line of each index's
    length and sha256, then the indexes one after another); None when it is missing or does not add up."""
    body = store.lookup("render", _bucket_key(bucket, keys))
    if body is None:
        return None
    head, _, rest = body.partition(b"\n")
    fields = head.split(b" ")
    try:
        bounds = list(accumulate(map(int, fields[0::2]), initial=0))
    except ValueError:
        return None
    if len(fields) != 2 * len(bucket) or bounds[-1] != len(rest) or {len(d) for d in fields[1::2]} != {64}:
        return None
    found = [unpack(rest[a:b]) for a, b in zip(bounds, bounds[1:])]
    return None if None in found else [(*index, d.decode()) for index, d in zip(found, fields[1::2])]


def _keep_bucket(store: cache.Cache, bucket: list, keys: dict, read: dict) -> None:
    """A bucket's indexes in one entry (see _bucket), from its units' own entries (read: those read in this run),
    when they are all there."""
    found = [read.get(u) or store.read("render", keys[u]) for u in bucket]
    if all(found):
        store.put("render", _bucket_key(bucket, keys), b" ".join(b"%d %s" % (len(body), digest.encode())
                                                                 for body, digest in found) + b"\n"
                  + b"".join(body for body, _ in found))


def _unpacked(found: tuple[bytes, str] | None) -> tuple | None:
    """A unit's index entry (found: as Cache.read gives it) as unpack gives it, and the sha256 of the entry; None when
    it is missing, damaged or does not add up."""
    files = found and unpack(found[0])
    return files and (*files, found[1])
