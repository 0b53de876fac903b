"""Spec files' results as the result cache holds them: one file's (to_json), and a group's as one entry
(kflowgen.specs.read caches a group's, and a bucket's of groups, together): their digests and TOP values read at
once, their values and positions left as bytes until asked for."""
from __future__ import annotations

import dataclasses
import json
from itertools import accumulate, repeat

from kflowgen.diagnostics import Diagnostic
from kflowgen.specs.loader import TOP, SpecFile


def to_json(spec: SpecFile | None, diags: list[Diagnostic]) -> bytes:
    """A loaded spec and its findings for the result cache, in two lines: the JSON of [the spec as [path, data, plain
    scalars as written, digest] or null, the findings], then the JSON of its positions (null without a spec), which
    stays text until a position is asked for (SpecFile.packed). from_json gives them back unchanged; many of them
    are one cache entry with pack_results."""
    if spec is not None:
        spec._unpack()
    head = json.dumps([None if spec is None else [spec.path, spec.data, spec.raw, spec.digest],
                       [dataclasses.astuple(d) for d in diags]], ensure_ascii=False, separators=(",", ":"))
    positions = "null" if spec is None else json.dumps([spec.values, spec.keys], separators=(",", ":"))
    return f"{head}\n{positions}".encode("utf-8")  # JSON text holds no line break of its own


def from_json(data: bytes) -> tuple[SpecFile | None, list[Diagnostic]]:
    """to_json's result again (ValueError when it is not in that shape)."""
    try:
        head, _, positions = data.decode("utf-8").partition("\n")
        spec, found = json.loads(head)
        if (spec is None) != (positions == "null") or not positions:
            raise ValueError("positions do not go with the spec")
        return (None if spec is None else SpecFile(spec[0], spec[1], {}, {}, spec[2], spec[3], positions),
                [Diagnostic(*d) for d in found])
    except (ValueError, TypeError, LookupError) as e:
        raise ValueError(f"not a spec's result as to_json writes it: {e}") from None


def pack_results(results: list[bytes]) -> bytes:
    """Many to_json results as one cache entry, in ASCII: a line holding the JSON of four lists, one item per result
    in each ([digests], [TOP values], [findings], [sizes]: a spec's digest and {key: value} of the keys in TOP it
    has, or null and null without a spec; three sizes for each result, 0 0 0 without a spec), then, for each spec,
    the JSON of [path, data], of raw and of its positions ([pointers], [line, column of the value, line, column of
    the key: 0 0 where there is none, for each pointer]), one after another, each as long as its size says.
    unpack_results reads the first line only: the rest stays bytes until a spec's values are asked for."""
    digests, tops, found, sizes, texts = [], [], [], [], []
    for result in results:
        head, _, positions = result.partition(b"\n")
        spec, diags = json.loads(head)
        found.append(diags)
        if spec is None:
            digests.append(None)
            tops.append(None)
            sizes += (0, 0, 0)
            continue
        path, data, raw, digest = spec
        values, keys = json.loads(positions)
        pointers = [*values, *(k for k in keys if k not in values)]
        numbers = [n for p in pointers for n in (*values.get(p, (0, 0)), *keys.get(p, (0, 0)))]
        parts = [json.dumps([path, data], separators=(",", ":")).encode("ascii"),
                 json.dumps(raw, separators=(",", ":")).encode("ascii"),
                 json.dumps([pointers, numbers], separators=(",", ":")).encode("ascii")]
        digests.append(digest)
        tops.append({k: data[k] for k in TOP if k in data})
        sizes += map(len, parts)
        texts += parts
    return b"\n".join([json.dumps([digests, tops, found, sizes], separators=(",", ":")).encode("ascii"),
                       b"".join(texts)])


def join_results(bodies: list[bytes]) -> bytes:
    """The entry pack_results writes of all these entries' results, one after another."""
    heads = [[], [], [], []]
    for body in bodies:
        for whole, part in zip(heads, json.loads(body[:body.index(b"\n")])):
            whole += part
    return b"\n".join([json.dumps(heads, separators=(",", ":")).encode("ascii"),
                       b"".join(body[body.index(b"\n") + 1:] for body in bodies)])


def unpack_results(body: bytes, paths: list[str]) -> list[tuple[SpecFile | None, list[Diagnostic]]] | None:
    """pack_results' results of the files at these paths again, (spec or None, findings) for each; None when the
    entry does not hold one result for each in that shape (see unpack)."""
    found = unpack(body, paths)
    return None if found is None else list(zip(*found))


def unpack(body: bytes, paths: list[str]) -> tuple[list[SpecFile | None], list[list[Diagnostic]]] | None:
    """pack_results' specs (or None) and findings of the files at these paths again; None when the entry does not
    hold one result in that shape for each (never trusted): lists of one item per file, digests and TOP values where
    there is a spec (its texts then not empty) and only there, sizes that add up to the entry, all of it ASCII. A
    spec's texts are decoded when first asked for (SpecFile.cached)."""
    try:
        end = body.index(b"\n")
        digests, tops, found, sizes = json.loads(body[:end])
        n = len(paths)
        if (not body.isascii() or type(digests) is not list or len(digests) != n or type(tops) is not list
                or len(tops) != n or type(found) is not list or len(found) != n or type(sizes) is not list
                or len(sizes) != 3 * n or {*map(type, sizes)} - {int} or {*map(type, found)} - {list}
                or {*map(type, digests)} - {str, type(None)} or {*map(type, tops)} - {dict, type(None)}):
            return None
        bounds = list(accumulate(sizes, initial=end + 1))
        if bounds[-1] != len(body) or (sizes and min(sizes) < 0):
            return None
        none = [i for i, digest in enumerate(digests) if digest is None] if None in digests else []
        if none != ([i for i, top in enumerate(tops) if top is None] if None in tops else []):
            return None
        if any(sizes[3 * i:3 * i + 3] != [0, 0, 0] for i in none) or sizes.count(0) != 3 * len(none):
            return None  # a spec's texts are never empty
        if any(found):  # (else each file's findings are the empty list decoded for it)
            found = [[Diagnostic(*d) for d in diags] if diags else [] for diags in found]
        if not none:  # most often: every file is a spec
            return list(map(SpecFile.cached, paths, digests, tops, repeat(body), bounds[0:-1:3], bounds[1::3],
                            bounds[2::3], bounds[3::3])), found
        return [None if digests[i] is None else SpecFile.cached(paths[i], digests[i], tops[i], body,
                                                                *bounds[3 * i:3 * i + 4]) for i in range(n)], found
    except (ValueError, TypeError, LookupError):  # not the shape pack_results writes
        return None
