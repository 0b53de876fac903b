"""render(model), byte for byte, from the result cache where it can: each unit is a function of the spec files
unit_sources names and of kflowgen's code, so a unit comes from the cache when those are unchanged; the rest are
rendered, many on forked processes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import accumulate

from kflowgen import cache, parallel
from kflowgen.options import Options
from kflowgen.specs.loader import SpecFile
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
    keys = {u: _unit_key(*u, unit_sources(model, *u)) for u in units(model)}
    stage = opts.stage(len(keys), "rendering")
    # read here: no copy between processes; an entry whose index does not add up is rendered again, never trusted
    cached = {u: found and _with_digest(unpack(found[0]), found[1])
              for u, found in zip(keys, opts.store.read_many("render", keys.values()))}
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
    for u, k in keys.items():
        if cached[u] is not None:
            unit_paths, unit_data, unit_ids, digest = cached[u]
        else:
            unit_paths, unit_data, unit_ids, digest, unit_objects = made[u]
            objects.update(unit_objects)
        paths += unit_paths
        data += unit_data
        ids += unit_ids
        if k:
            opts.store.count(cached[u] is not None)
        for folder in {path.rsplit("/", 1)[0] for path in unit_paths}:
            origin[folder] = digest if origin.get(folder, digest) == digest else None
    order = sorted(range(len(paths)), key=paths.__getitem__)  # stable: of two units writing one path, the later wins
    files = dict(zip(map(paths.__getitem__, order), map(data.__getitem__, order)))
    return Rendered(files, {folder: k for folder, k in origin.items() if k}, objects, dict(zip(paths, ids)))


def _render_units(state: tuple, batch: list[tuple[str, str]]
                  ) -> list[tuple[list[str], list[bytes], list[str], str | None, dict]]:
    """Render units not in the cache (cached when the unit has a key), each as its paths, their bytes and blob ids,
    the sha256 of its cache entry, and the objects of its files in plain directories of manifests."""
    model, store, keys = state
    out = []
    for u in batch:
        made, digest = unit(model, *u), None
        paths = sorted(made.files)
        data = [made.files[p] for p in paths]
        ids = [cache.blob_id(d) for d in data]  # once, from the bytes just rendered: kept in the entry with them
        if keys[u]:
            body = _pack(paths, data, ids)
            store.put("render", keys[u], body)
            digest = hashlib.sha256(body).hexdigest()
        out.append((paths, data, ids, digest, made.objects))
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
    p = model.platform.source
    keys = [(f"{p.path}:{p.digest}", f"{t.source.path}:{t.source.digest}") for t in model.teams]
    keys = [k for k in dict.fromkeys(keys) if k in jupyterhub.PARTS]
    if p.digest and not set(keys) <= known:
        store.put("render", _parts_key(model), json.dumps([[*k, *jupyterhub.PARTS[k]] for k in keys]).encode("utf-8"))


def _unit_key(env: str, team: str, sources: list[SpecFile]) -> str | None:
    if not all(s.digest for s in sources):  # a spec not read from a file (e.g. made in a test): not cached
        return None
    return cache.key("render", "packed-ids", cache.code_digest(), env, team,
                     *(f"{s.path}:{s.digest}" for s in sources))


def pack(files: dict[str, bytes]) -> bytes:
    """Files as one cache entry, in path order: a line "<files> <index length>", the index (each file's path, size
    and git blob id, NUL-separated), then the files' bytes one after another."""
    paths = sorted(files)
    return _pack(paths, [files[p] for p in paths], [cache.blob_id(files[p]) for p in paths])


def _pack(paths: list[str], data: list[bytes], ids: list[str]) -> bytes:
    index = "\0".join(f"{p}\0{len(d)}\0{i}" for p, d, i in zip(paths, data, ids)).encode("utf-8")
    return b"".join([b"%d %d\n" % (len(paths), len(index)), index, *data])


def unpack(body: bytes) -> tuple[list[str], list[bytes], list[str]] | None:
    """pack's files again, as (paths, bytes, blob ids) in path order; None when the index does not add up to the body
    (the count, the sizes): then the unit is rendered again. The entry's checksum was checked when it was read, so
    the ids are those pack computed from these bytes."""
    try:
        end = body.index(b"\n")
        count, size = map(int, body[:end].split(b" "))
        start = end + 1 + size
        fields = body[end + 1:start].decode("utf-8").split("\0") if count else []
        bounds = list(accumulate(map(int, fields[1::3]), initial=start))
    except ValueError:
        return None
    if len(fields) != 3 * count or bounds[-1] != len(body):
        return None
    return fields[0::3], [body[a:b] for a, b in zip(bounds, bounds[1:])], fields[2::3]


def _with_digest(found: tuple | None, digest: str) -> tuple | None:
    return None if found is None else (*found, digest)
