"""Each team's part of the hub values (its profile list entries: jupyterhub.PARTS), kept in the result cache
between runs, so that one team's change renders each environment's hub values again from the other teams' kept
parts (targets.cached)."""
from __future__ import annotations

import json
import zlib

from kflowgen import cache
from kflowgen.specs.model import Model
from kflowgen.targets import jupyterhub

# The teams' parts of the hub values are kept in this many entries, each team's by its spec file's path: a change to
# one team writes its bucket again (70 KB at 1,000 teams), not every team's part (4.4 MB, 0.06 s of writing).
PART_BUCKETS = 64


def key(model: Model, bucket: int) -> str:
    p = model.platform.source
    return cache.key("hub-parts", cache.code_digest(), p.path, p.digest, bucket)


def bucket_of(k: tuple[str, str]) -> int:
    """The bucket of a part by its team's spec file's path (jupyterhub.part_key: "path:sha256")."""
    return zlib.crc32(k[1].rpartition(":")[0].encode()) % PART_BUCKETS


def recall(model: Model, store: cache.Cache) -> set:
    """jupyterhub.PARTS of this platform file from the cache (each bucket a list of [platform, team, yaml, json]);
    the keys known, so that keep writes only the buckets where a part was made. A bucket damaged or of another
    shape gives no part (its teams' parts are made again)."""
    found: dict = {}
    for bucket in range(PART_BUCKETS) if model.platform.source.digest else ():
        body = store.lookup("render", key(model, bucket))
        try:
            these = {(a, b): (y, j) for a, b, y, j in json.loads(body)} if body else {}
            if all(isinstance(x, str) for k, v in these.items() for x in (*k, *v)):
                found.update(these)
        except (ValueError, TypeError):  # an intact entry of another shape: not used
            pass
    jupyterhub.PARTS.update(found)
    return set(found)


def keep(model: Model, store: cache.Cache, known: set) -> None:
    """The parts of this model's teams, bucket by bucket, where one was not in the cache."""
    if not model.platform.source.digest:
        return
    buckets: dict[int, list] = {}
    for k in dict.fromkeys(jupyterhub.part_key(model.platform, t) for t in model.teams):
        if k in jupyterhub.PARTS:
            buckets.setdefault(bucket_of(k), []).append(k)
    for bucket, keys in buckets.items():
        if not set(keys) <= known:
            store.put("render", key(model, bucket),
                      json.dumps([[*k, *jupyterhub.PARTS[k]] for k in keys]).encode("utf-8"))
