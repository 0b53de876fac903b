"""render(model), byte for byte, from the result cache where it can: each unit is a function of the spec files
unit_sources names and of kflowgen's code, so a unit comes from the cache when those are unchanged; the rest are
rendered, many on forked processes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import accumulate, chain
from operator import attrgetter

from kflowgen import cache, parallel
from kflowgen.options import Options
from kflowgen.specs.model import Model
from kflowgen.targets import jupyterhub, unit, unit_sources, units


@dataclass(frozen=True)
class Rendered:
    """The generated files, {path: bytes}, in path order; for each folder whose files all come from one cached unit,
    the sha256 of that unit's files (its cache entry, checked when read): an overlay's build is keyed on it without
    hashing the overlay's files again; for files of plain directories of manifests rendered in this run (not read from
    the cache), the object each file holds, so that they need not be parsed; and each file's git blob id, computed
    from the bytes when the unit was rendered and kept in its cache entry with them (under the entry's checksum), so
    that the drift check compares blob ids with git's without hashing every file again."""

    files: dict[str, bytes]
    origin: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


def render_cached(model: Model, opts: Options) -> Rendered:
    keys = _unit_keys(model, units(model))
    stage = opts.stage(len(keys), "rendering")
    # read here (no copy between processes), one entry at a time, each unpacked before the next is read (the next is
    # read into the memory this one's body leaves); an entry whose index does not add up is rendered again, never
    # trusted
    cached = {u: _unpacked(opts.store, k) for u, k in keys.items()}
    todo = [u for u, found in cached.items() if found is None]
    if stage:
        stage(len(keys) - len(todo))
    state = (model, opts.store, keys)
    # an environment's shared unit names every team: rendered here, each team's part of the hub values from the
    # cache where it is there (one changed team: one part made), and the parts made here kept for the next run
    shared = [u for u in todo if not u[1]]
    known = _recall_parts(model, opts.store) if shared else set()
    made = dict(zip(shared, _render_units(state, shared)))
    if shared:
        _keep_parts(model, opts.store, known)
        if stage:
            stage(len(shared))
    rest = [u for u in todo if u[1]]
    made.update(zip(rest, parallel.fan_out(_render_units, rest, opts.jobs, stage, state=state)))
    paths: list[str] = []
    data: list[bytes] = []
    ids: list[str] = []
    origin: dict[str, str | None] = {}
    objects: dict = {}
    for u in keys:
        if cached[u] is not None:
            unit_paths, unit_data, unit_ids, folders, digest = cached[u]
        else:
            unit_paths, unit_data, unit_ids, folders, digest, unit_objects = made[u]
            objects.update(unit_objects)
        paths += unit_paths
        data += unit_data
        ids += unit_ids
        for folder in folders:
            origin[folder] = digest if origin.get(folder, digest) == digest else None
    opts.store.count(True, len(keys) - len(todo))  # a unit found was keyed; of those rendered, the keyed ones
    opts.store.count(False, sum(1 for u in todo if keys[u]))
    # in path order; of two units writing one path, the later wins (its bytes, at the path's place in that order)
    files = dict.fromkeys(sorted(paths))
    files.update(zip(paths, data))
    return Rendered(files, {folder: k for folder, k in origin.items() if k}, objects, dict(zip(paths, ids)))


def _render_units(state: tuple, batch: list[tuple[str, str]]
                  ) -> list[tuple[list[str], list[bytes], list[str], list[str], str | None, dict]]:
    """Render units not in the cache (cached when the unit has a key), each as its paths, their bytes and blob ids,
    its folders, the sha256 of its cache entry, and the objects of its files in plain directories of manifests."""
    model, store, keys = state
    out = []
    for u in batch:
        kept = keys[u] and u[1] and len(model.members(u[1], u[0])[1]) >= PARTS_FROM
        known = _recall_workloads(model, store, u) if kept else None
        made, digest = unit(model, *u, known), None
        paths = sorted(made.files)
        data = [made.files[p] for p in paths]
        ids = [cache.blob_id(d) for d in data]  # once, from the bytes just rendered: kept in the entry with them
        folders = _folders(paths)
        if keys[u]:
            body = _pack(paths, data, ids, folders)
            store.put("render", keys[u], body)
            digest = hashlib.sha256(body).hexdigest()
            if kept and made.parts:
                _keep_workloads(model, store, u, made.parts, keys[u], dict(zip(paths, zip(data, ids))))
        out.append((paths, data, ids, folders, digest, made.objects))
    return out


def _parts_key(model: Model) -> str:
    p = model.platform.source
    return cache.key("hub-parts", cache.code_digest(), p.path, p.digest)


def _recall_parts(model: Model, store: cache.Cache) -> set:
    """jupyterhub.PARTS of this platform file from the cache (a list of [platform, team, yaml, json]); the keys
    known, so that _keep_parts writes only when a part was made."""
    body = store.lookup("render", _parts_key(model)) if model.platform.source.digest else None
    try:
        found = {(a, b): (y, j) for a, b, y, j in json.loads(body)} if body else {}
        if not all(isinstance(x, str) for k, v in found.items() for x in (*k, *v)):
            found = {}
    except (ValueError, TypeError):  # an intact entry of another shape: not used
        found = {}
    jupyterhub.PARTS.update(found)
    return set(found)


def _keep_parts(model: Model, store: cache.Cache, known: set) -> None:
    """The parts of this model's teams, when one was not in the cache."""
    keys = [k for k in dict.fromkeys(jupyterhub.part_key(model.platform, t) for t in model.teams)
            if k in jupyterhub.PARTS]
    if model.platform.source.digest and not set(keys) <= known:
        store.put("render", _parts_key(model), json.dumps([[*k, *jupyterhub.PARTS[k]] for k in keys]).encode("utf-8"))


# A team unit of at least this many experiments keeps which of its files each experiment made (by path and blob id,
# beside its render entry, which holds their bytes), so that a change to one experiment renders that one: below it,
# rendering the team again costs less than keeping the list (a team of 5,000 one-trial experiments renders in about
# 0.5 s, and 50 in 5 ms).
PARTS_FROM = 100


def _workloads_key(model: Model, env: str, name: str) -> str | None:
    """The key of a team's experiments' files in an environment: what they are a function of besides each
    experiment's own spec file (team.workloads_overlay)."""
    p, t = model.platform.source, model.team(env, name).source
    return cache.key("workload-parts", cache.code_digest(), env, name, p.path, p.digest, t.path, t.digest) \
        if p.digest and t.digest else None


def _recall_workloads(model: Model, store: cache.Cache, u: tuple[str, str]) -> dict | None:
    """{(spec path, sha256): {path: bytes}} of the team's experiments as last kept (_keep_workloads): each
    experiment's files from the render entry the list names, when every one of them is there with the blob id the
    list gives (a file a later experiment wrote over is not: that experiment is rendered again); None when there is
    no list, it is of another shape, or its render entry is gone or damaged."""
    k = _workloads_key(model, *u)
    body = store.lookup("render", k) if k else None
    try:
        unit_key, kept = json.loads(body) if body else (None, None)
        found = _unpacked(store, unit_key) if isinstance(unit_key, str) else None
        if found is None:
            return None
        at = {rel: (d, i) for rel, d, i in zip(*found[:3])}
        out = {}
        for path, digest, rels, ids in kept:
            files = {rel: at[rel][0] for rel, i in zip(rels, ids, strict=True) if at.get(rel, (0, None))[1] == i}
            if len(files) == len(rels) and isinstance(path, str) and isinstance(digest, str):
                out[path, digest] = files
        return out
    except (ValueError, TypeError):  # an intact entry of another shape: not used
        return None


def _keep_workloads(model: Model, store: cache.Cache, u: tuple[str, str], parts: dict, unit_key: str,
                    ids: dict[str, tuple[bytes, str]]) -> None:
    """Which files each of the team's experiments made (Unit.parts), by path and blob id, and the key of the render
    entry that holds them (ids: each path's bytes and blob id in it), for the next render of the team."""
    k = _workloads_key(model, *u)
    if k:
        kept = [[path, digest, list(files), [ids[rel][1] if ids[rel][0] is d else cache.blob_id(d)
                                             for rel, d in files.items()]]
                for (path, digest), files in parts.items()]
        store.put("render", k, json.dumps([unit_key, kept]).encode("utf-8"))


_NAMED, _DIGEST = attrgetter("path", "digest"), attrgetter("digest")


def _unit_keys(model: Model, pieces: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """Each unit's key: kflowgen's code, the unit, and the path and sha256 of each spec file unit_sources names, in
    one NUL-separated part (neither holds a NUL); None for a unit with a spec not read from a file (e.g. made in a
    test): not cached."""
    keyed = cache.keyed("render", "packed-folders", cache.code_digest())
    out = {}
    for u in pieces:
        sources = unit_sources(model, *u)
        out[u] = keyed(*u, "\0".join(chain.from_iterable(map(_NAMED, sources)))) if all(map(_DIGEST, sources)) else None
    return out


def pack(files: dict[str, bytes]) -> bytes:
    """Files as one cache entry, in path order: a line "<files> <index length>", the index (each file's path, size
    and git blob id, then the folders of the files, NUL-separated), then the files' bytes one after another."""
    paths = sorted(files)
    return _pack(paths, [files[p] for p in paths], [cache.blob_id(files[p]) for p in paths], _folders(paths))


def _pack(paths: list[str], data: list[bytes], ids: list[str], folders: list[str]) -> bytes:
    index = "\0".join([*(f"{p}\0{len(d)}\0{i}" for p, d, i in zip(paths, data, ids)), *folders]).encode("utf-8")
    return b"".join([b"%d %d\n" % (len(paths), len(index)), index, *data])


def _folders(paths: list[str]) -> list[str]:
    """The folders files of these paths are in (where Rendered.origin says which unit wrote a folder)."""
    return sorted({p.rsplit("/", 1)[0] for p in paths})


def unpack(body: bytes, folders: bool = False) -> tuple | None:
    """pack's files again, as (paths, bytes, blob ids) in path order, and with folders their folders; None when the
    index does not add up to the body (the count, the sizes, a folder for files): then the unit is rendered again.
    The entry's checksum was checked when it was read, so the ids and folders are those pack computed from these
    files."""
    try:
        end = body.index(b"\n")
        count, size = map(int, body[:end].split(b" "))
        start = end + 1 + size
        fields = body[end + 1:start].decode("utf-8").split("\0") if size else []
        bounds = list(accumulate(map(int, fields[1:3 * count:3]), initial=start))
    except ValueError:
        return None
    extra = len(fields) - 3 * count  # the folders: at least one when there are files, at most one per file
    if count < 0 or not (0 < extra <= count or extra == count == 0) or bounds[-1] != len(body):
        return None
    data = list(map(body.__getitem__, map(slice, bounds, bounds[1:])))
    found = fields[0:3 * count:3], data, fields[2:3 * count:3]
    return (*found, fields[3 * count:]) if folders else found


def _unpacked(store: cache.Cache, k: str | None) -> tuple | None:
    """A unit's entry as unpack(folders=True) gives it, and the sha256 of the entry; None when it is missing, damaged
    or does not add up."""
    found = store.read("render", k) if k else None
    files = found and unpack(found[0], folders=True)
    return files and (*files, found[1])
