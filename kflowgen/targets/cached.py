"""render(model), byte for byte, from the result cache where it can: each unit is a function of the spec files
unit_sources names and of kflowgen's code, so a unit comes from the cache when those are unchanged; the rest are
rendered, many on forked processes."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kflowgen import cache, parallel
from kflowgen.options import Options
from kflowgen.specs.loader import SpecFile
from kflowgen.specs.model import Model
from kflowgen.targets import unit, unit_sources, units


@dataclass(frozen=True)
class Rendered:
    """The generated files, {path: bytes}; for each folder whose files all come from one cached unit, the sha256 of
    that unit's files (its cache entry, checked when read): an overlay's build is keyed on it without hashing the
    overlay's files again; and, for files of plain directories of manifests rendered in this run (not read from the
    cache), the object each file holds, so that they need not be parsed."""

    files: dict[str, bytes]
    origin: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict] = field(default_factory=dict)


def render_cached(model: Model, opts: Options) -> Rendered:
    keys = {u: _unit_key(*u, unit_sources(model, *u)) for u in units(model)}
    stage = opts.stage(len(keys), "rendering")
    cached = dict(zip(keys, opts.store.read_many("render", keys.values())))  # read here: no copy between processes
    todo = [u for u, found in cached.items() if found is None]
    if stage:
        stage(len(keys) - len(todo))
    made = dict(zip(todo, parallel.fan_out(_render_units, todo, opts.jobs, stage, state=(model, opts.store, keys))))
    files: dict[str, bytes] = {}
    origin: dict[str, str | None] = {}
    objects: dict = {}
    for u, k in keys.items():
        if cached[u] is not None:
            unit_files, digest = unpack(cached[u][0]), cached[u][1]
        else:
            unit_files, digest, unit_objects = made[u]
            objects.update(unit_objects)
        files.update(unit_files)
        if k:
            opts.store.count(cached[u] is not None)
        for path in unit_files:
            folder = path.rsplit("/", 1)[0]
            origin[folder] = digest if origin.get(folder, digest) == digest else None
    return Rendered(dict(sorted(files.items())), {folder: k for folder, k in origin.items() if k}, objects)


def _render_units(state: tuple, batch: list[tuple[str, str]]) -> list[tuple[dict[str, bytes], str | None, dict]]:
    """Files of render units not in the cache, rendered (and cached when the unit has a key), each with the sha256
    of its cache entry and the objects of its files in plain directories of manifests."""
    model, store, keys = state
    out = []
    for u in batch:
        made, digest = unit(model, *u), None
        if keys[u]:
            body = pack(made.files)
            store.put("render", keys[u], body)
            digest = hashlib.sha256(body).hexdigest()
        out.append((made.files, digest, made.objects))
    return out


def _unit_key(env: str, team: str, sources: list[SpecFile]) -> str | None:
    if not all(s.digest for s in sources):  # a spec not read from a file (e.g. made in a test): not cached
        return None
    return cache.key("render", "packed", cache.code_digest(), env, team, *(f"{s.path}:{s.digest}" for s in sources))


def pack(files: dict[str, bytes]) -> bytes:
    """Files as one cache entry: per file a line "<path length> <data length>", then the path and the data."""
    out = []
    for path, data in files.items():
        name = path.encode("utf-8")
        out += [b"%d %d\n" % (len(name), len(data)), name, data]
    return b"".join(out)


def unpack(body: bytes) -> dict[str, bytes]:
    """pack's files again (the entry's checksum was checked when it was read)."""
    files, at = {}, 0
    while at < len(body):
        end = body.index(b"\n", at)
        n, size = map(int, body[at:end].split())
        files[body[end + 1:end + 1 + n].decode("utf-8")] = body[end + 1 + n:end + 1 + n + size]
        at = end + 1 + n + size
    return files
