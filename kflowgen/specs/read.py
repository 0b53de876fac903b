"""Reading the specs: each file's bytes (from the repository, a git commit's snapshot, or edits about to be written),
parsed strictly and checked against its schema, with results cached by path and content and many files read on
forked processes; then the typed model of those that passed. In a git work tree, a file git vouches for (tracked and
unchanged, kflowgen.survey) is named by its blob id and not read at all when its results are in the cache."""
from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kflowgen import ahead, cache, packed, parallel
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.options import Options
from kflowgen.specs import entry, loader, schema as specschema
from kflowgen.specs.discover import PLATFORM, misplaced, spec_files
from kflowgen.specs.experiment import experiment_from
from kflowgen.specs.loader import SpecFile, load_bytes
from kflowgen.specs.model import Deferred, Model, platform_from, team_from
from kflowgen.specs.served import served_model_from

GROUPS = 64  # a group of more spec files than this (specs/teams) is read and cached in this many groups
BUCKETS = 64  # the groups of files git vouches for are also cached together in this many buckets (see _recall)


@dataclass(frozen=True)
class Specs:
    """What reading the specs gives: the model of those that loaded (None without a platform file), every finding,
    and the spec files the model is made of (the rules' cache key)."""

    model: Model | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: list[SpecFile] = field(default_factory=list)


class Snapshot(dict):
    """{path: bytes} of a git tree's spec files, with the blob id of each (ids: the ids `git cat-file` gave these
    bytes by). Such files are looked up by their ids, as files git vouches for in the work tree are, so that a tree
    read from git shares the entries the work tree made: a diff's base side the cache does not hold reads the few
    files that differ, not every spec file again."""

    def __init__(self, files: dict[str, bytes], ids: dict[str, str]):
        super().__init__(files)
        self.ids = ids


def _inside(root: Path, rel: str, folders: dict[str, bool]) -> bool:
    """The file is reached without a link that leaves the repository or loops. Folders are resolved once each: a
    file that is not itself a link is inside exactly when its folder is."""
    try:
        path = os.path.join(root, rel)
        if os.path.islink(path):
            return (root / rel).resolve().is_relative_to(root.resolve())
        folder = os.path.dirname(path)
        if folder not in folders:
            top = os.path.realpath(root)
            real = os.path.realpath(folder)
            folders[folder] = real == top or real.startswith(top.rstrip(os.sep) + os.sep)
        return folders[folder]
    except (OSError, RuntimeError):  # a link loop (RuntimeError on Python 3.11) is refused like a link outside
        return False


def check_spec(kind: str, rel: str, raw: bytes) -> bytes:
    """Parse and schema-check one spec file's bytes: the JSON of (spec or None, findings), as the cache holds it."""
    spec, found = load_bytes(raw, rel)
    if spec is not None:
        found = specschema.validate(kind, spec)
    return entry.to_json(None if found else spec, found)


def read_specs(opts: Options, wanted: list[tuple[str, str]], snapshot: dict[str, bytes] | None = None,
               edits: dict[str, bytes] | None = None, known: dict[str, str] | None = None
               ) -> dict[str, tuple[SpecFile | None, list[Diagnostic], str | None]]:
    """Load and schema-check spec files ((path, kind) pairs), from root or from a snapshot of their bytes (a git
    commit's): {path: (spec or None, findings, git blob id of the bytes or None when they could not be read)}.
    A file whose path and bytes were checked before by this kflowgen comes from the cache; the rest are checked
    here. The files of a group (a team's experiments and served models, see _groups) are read together, and their
    results cached together as well as one by one; many groups are read on `jobs` processes. known:
    {path: blob id} of the files git vouches for: a group of such files is looked up by their ids, unread, and so is
    a bucket of such groups (see _recall)."""
    cache.code_digest()  # once here, not in every forked reader
    labelled = _groups(wanted)
    groups = [group for _, group in labelled]
    if edits:
        known = {rel: oid for rel, oid in (known or {}).items() if rel not in edits}
    known = known or {}
    step = opts.stage(len(wanted), "reading specs")
    # groups of files git vouches for, recalled here (no file read: forking readers and sending their results back
    # costs more); the rest are read, on `jobs` processes when many
    recalled, bodies, missed = _recall(labelled, opts.store, known)
    todo = [group for group, found in zip(groups, recalled) if found is None]
    if step:
        step(len(wanted) - sum(map(len, todo)))
    # many read now (a first run): their entries' bytes set aside as each batch arrives (a spec's values are read
    # back when asked for: the main process asks for few), not held (at 10,000 teams, about 150 MB)
    many = sum(map(len, todo)) >= parallel.PARALLEL_FROM
    read_now = iter(parallel.fan_out(_read_groups, todo, opts.jobs, step, weigh=len,
                                     state=(opts.root, opts.store, snapshot, edits, known),
                                     keep=partial(_set_aside, packed.Spill()) if many else None))
    out = {}
    for group, found in zip(groups, recalled):
        if found is not None:
            out.update(found)
            opts.store.count(True, len(found))
            continue
        for (rel, _), (spec, found, hit, oid) in zip(group, next(read_now)):
            out[rel] = spec, found, oid
            if hit is not None:
                opts.store.count(hit)
    for bucket in missed:
        _keep(bucket, groups, bodies, opts.store, known)
    return out


def _set_aside(spill: packed.Spill, batch: list[list[tuple]]) -> list[list[tuple]]:
    """Read groups' results (_read_group's) with the bytes of each group's entry, which its specs' values are read
    from when asked for (SpecFile.cached), set aside in the spill (packed.Span), once for each entry."""
    spans: dict[int, tuple[bytes, bytes | packed.Span]] = {}  # id of an entry's bytes -> (them, where they are now)

    def place(entry: bytes) -> bytes | packed.Span:
        if id(entry) not in spans:
            spans[id(entry)] = entry, spill.span(entry)
        return spans[id(entry)][1]

    for group in batch:
        for spec, *_ in group:
            if spec is not None:
                spec.set_aside(place)
    return batch


def _groups(wanted: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The spec files read and cached together, each group with a name: a team's served models and experiments
    (specs/models/<team>/, specs/experiments/<team>/), the team files, the platform file; a group of more than GROUPS
    files (every team's file; a team's thousands of experiments) in GROUPS groups by file name, so that changing one
    file re-reads few."""
    kinds: dict[str, list[tuple[str, str]]] = {}
    teams: dict[str, list[tuple[str, str]]] = {}
    for item in wanted:  # (kinds first: wanted gives the platform and team files before the others)
        rel, kind = item
        if kind == "model" or kind == "experiment":
            team = rel.split("/", 3)[2]
            if team not in teams:
                teams[team] = []
            teams[team].append(item)
        else:
            kinds.setdefault(kind, []).append(item)
    groups = []
    for name, group in [*((f"kind {kind}", group) for kind, group in kinds.items()),
                        *((f"team {team}", group) for team, group in teams.items())]:
        if len(group) <= GROUPS:
            groups.append((name, group))
            continue
        split: dict[int, list[tuple[str, str]]] = {}
        for rel, kind in group:
            split.setdefault(zlib.crc32(rel.rpartition("/")[2].encode()) % GROUPS, []).append((rel, kind))
        groups += [(f"{name} {part}", files) for part, files in split.items()]
    return groups


def _recall(labelled: list[tuple[str, list[tuple[str, str]]]], store: cache.Cache, known: dict[str, str]
            ) -> tuple[list[list[tuple[str, tuple]] | None], dict[int, bytes], list[list[int]]]:
    """_recalled of each group whose every file git vouches for (None for the others, and when its entry is
    missing), with the entry's body by group index; and the buckets (lists of group indices) whose entry was missing.
    Groups fall into BUCKETS buckets by name, and the groups of a bucket whose every file git vouches for are
    cached together too, in the same shape as one group of all their files (kept by _keep): a run that changes
    nothing reads BUCKETS entries, not one for each group; a bucket whose entry is missing recalls its groups."""
    recalled: list[list[tuple[str, tuple]] | None] = [None] * len(labelled)
    bodies: dict[int, bytes] = {}
    missed = []
    if not known:
        return recalled, bodies, missed
    buckets: dict[int, list[int]] = {}
    for i, (name, _) in enumerate(labelled):
        buckets.setdefault(zlib.crc32(name.encode()) % BUCKETS, []).append(i)
    for bucket in buckets.values():
        files = [file for i in bucket for file in labelled[i][1]]
        if len(bucket) > 1 and all(map(known.__contains__, (rel for rel, _ in files))):
            found = _recalled(files, store, known)
            if found is not None:
                at = 0
                for i in bucket:
                    recalled[i], at = found[0][at:at + len(labelled[i][1])], at + len(labelled[i][1])
                continue
            missed.append(bucket)
        for i in bucket:
            found = _recalled(labelled[i][1], store, known)
            if found is not None:
                recalled[i], bodies[i] = found
    return recalled, bodies, missed


def _keep(bucket: list[int], groups: list[list[tuple[str, str]]], bodies: dict[int, bytes], store: cache.Cache,
          known: dict[str, str]) -> None:
    """Cache a bucket's groups together (see _recall), from their entries: those recalled in this run, or written by
    it (a group whose files are not all git's blobs as vouched for is cached under another key: then not yet)."""
    found = [bodies[i] if i in bodies else store.lookup("specs", _group_key(groups[i], known, {})) for i in bucket]
    files = [file for i in bucket for file in groups[i]]
    try:
        if all(body is not None for body in found):
            store.put("specs", _group_key(files, known, {}), entry.join_results(found))
    except ValueError:  # an entry not in pack_results' shape (never trusted when read): the bucket waits
        pass


def _read_groups(state: tuple, batch: list[list[tuple[str, str]]]) -> list[list[tuple]]:
    root, store, snapshot, edits, known = state
    folders: dict[str, bool] = {}
    return [_read_group(root, group, store, snapshot, folders, edits, known) for group in batch]


def _read_group(root: Path, group: list[tuple[str, str]], store: cache.Cache, snapshot: dict[str, bytes] | None,
                folders: dict[str, bool], edits: dict[str, bytes] | None = None,
                known: dict[str, str] | None = None) -> list[tuple]:
    """(spec or None, findings, whether the cache had it: None when not looked up, git blob id) of each file of a
    group. The group's results are one cache entry, keyed on every readable file's path, kind and bytes (the sha256
    of the bytes read; for a file git vouches for, in known, its blob id as git gives it, and the file is read only
    when the entry is missing); when it is missing, each file's own entry is looked up, or the file checked."""
    ids = {rel: known[rel] for rel, _ in group if known and rel in known}
    raws = {rel: (edits[rel], []) if edits and rel in edits else _raw(root, rel, snapshot, folders)
            for rel, _ in group if rel not in ids}
    packed = store.lookup("specs", _group_key(group, ids, raws)) if ids or raws else None
    readable = [(rel, kind) for rel, kind in group if rel in ids or raws[rel][0] is not None]
    results = entry.unpack_results(packed, [rel for rel, _ in readable]) if packed is not None else None
    if results is None and ids:  # to be checked: every file is read, and one that is no longer git's blob is as read
        raws.update((rel, _raw(root, rel, snapshot, folders)) for rel in ids)
        ids = {rel: oid for rel, oid in ids.items() if raws[rel][0] is not None and cache.blob_id(raws[rel][0]) == oid}
        readable = [(rel, kind) for rel, kind in group if rel in ids or raws[rel][0] is not None]
    if results is not None:
        hits = [True] * len(results)
    else:  # not cached (or not one result per file: never trusted)
        checked = [_checked(store, rel, kind, raws[rel][0]) for rel, kind in readable]
        body, hits = entry.pack_results([line for line, _ in checked]), [hit for _, hit in checked]
        if readable:
            store.put("specs", _group_key(group, ids, raws), body)
        # as a recalled group's: each spec's values stay the entry's bytes until asked for (a first run's model is
        # about half the size, and a reader process sends it back at that size)
        results = entry.unpack_results(body, [rel for rel, _ in readable])
        if results is None:  # (never: pack_results writes what unpack reads)
            results = [entry.from_json(line) for line, _ in checked]
    out, at = [], iter(zip(results, hits))
    for rel, _ in group:
        raw, found = raws.get(rel, (None, []))
        if raw is None and rel not in ids:
            out.append((None, found, None, None))
            continue
        (spec, found), hit = next(at)
        out.append((spec, found, hit, ids[rel] if rel in ids else cache.blob_id(raw)))
    return out


def _recalled(group: list[tuple[str, str]], store: cache.Cache, known: dict[str, str]
              ) -> tuple[list[tuple[str, tuple]], bytes] | None:
    """(path, (spec or None, findings, git blob id)) of each file of a group whose every file git vouches for, from
    the group's cache entry, without reading a file, and the entry's body; None when a file is not vouched for or
    the entry is missing."""
    rels = [rel for rel, _ in group]
    if not all(map(known.__contains__, rels)):
        return None
    packed = store.lookup("specs", _group_key(group, known, {}))
    results = entry.unpack(packed, rels) if packed is not None else None
    if results is None:  # missing (or not one result per file: never trusted)
        return None
    return list(zip(rels, zip(*results, map(known.__getitem__, rels)))), packed


def _group_key(group: list[tuple[str, str]], ids: dict[str, str],
               raws: dict[str, tuple[bytes | None, list[Diagnostic]]]) -> str:
    """A group's cache key: each readable file's path, kind, and either its blob id as git gives it ("git <id>": git
    hashed those bytes itself, and refuses the known SHA-1 collision attacks) or the sha256 of the bytes read. Tagged
    with the entry's shape (entry.pack_results'), so that an entry of another shape is never read as this one."""
    return cache.key("specs", "top-apart", cache.code_digest(), "\0".join(  # one part: no path, kind or id holds a NUL
        f"{rel}\0{kind}\0git {ids[rel]}" if rel in ids else f"{rel}\0{kind}\0{hashlib.sha256(raws[rel][0]).hexdigest()}"
        for rel, kind in group if rel in ids or raws[rel][0] is not None))


def _raw(root: Path, rel: str, snapshot: dict[str, bytes] | None,
         folders: dict[str, bool]) -> tuple[bytes | None, list[Diagnostic]]:
    """A spec file's bytes (no more than the size limit and one byte), or the findings that say why there are none."""
    if snapshot is not None:
        return snapshot[rel][:loader.MAX_BYTES + 1], []
    if not _inside(root, rel, folders):
        return None, [error(rel, (1, 1), "KF312", "spec file is a link that leaves the repository or loops",
                            "replace the link with the file itself")]
    return loader.read_file(root, rel)


def _checked(store: cache.Cache, rel: str, kind: str, raw: bytes) -> tuple[bytes, bool]:
    """A spec file's result (check_spec's, entry.to_json's two lines) from its own cache entry or checked now; and
    whether the cache had it."""
    k = cache.key("spec", cache.code_digest(), kind, rel, raw)
    result = store.lookup("spec", k)
    if result is not None:
        return result, True
    result = check_spec(kind, rel, raw)
    store.put("spec", k, result)
    return result, False




def read(opts: Options, snapshot: dict[str, bytes] | None = None, edits: dict[str, bytes] | None = None) -> Specs:
    """Read and check every spec (from the repository; from a snapshot: {path: bytes} of a git commit's spec files;
    edits: {path: bytes} of spec files to read as these bytes instead, as a change about to be written), and make the
    model of those that loaded."""
    git = opts.store.folder is not None  # git vouches for files whose results come from the cache
    started = ahead.taken_or_started(opts.early, opts.root, git) if snapshot is None else None
    if not (PLATFORM in snapshot if snapshot is not None else (opts.root / PLATFORM).is_file()):
        if started is not None:
            started.finish()
        return Specs(None, [error(PLATFORM, (1, 1), "KF101", "platform file not found",
                                  "run kflowgen in the repository root, or create one with `kflowgen init`")])
    if started is not None:
        with opts.timed("listing"):  # (made ahead, since the command started: the wait for it)
            listed, known = started.get()
    else:
        listed, known = None, snapshot.ids if isinstance(snapshot, Snapshot) else {}
    wanted = spec_files(opts.root, snapshot, listed)
    diags = misplaced(wanted)
    wanted = [(rel, kind) for rel, kind in wanted if kind not in ("stray", "outside")]
    loaded = read_specs(opts, wanted, snapshot, edits, known)
    specs: dict[str, list[SpecFile]] = {"platform": [], "team": [], "model": [], "experiment": []}
    unread: list[str] = []  # team files that did not load
    inputs: dict[str, str | None] = {}
    for rel, kind in wanted:
        spec, found, inputs[rel] = loaded[rel]
        if found:
            diags.extend(found)
        if spec is not None:
            specs[kind].append(spec)
        elif kind == "team":
            unread.append(rel)
    if not specs["platform"]:
        return Specs(None, diags)
    platform = platform_from(specs["platform"][0])
    model = Model(platform, sorted((team_from(s, list(platform.environments)) for s in specs["team"]),
                                   key=lambda t: (t.name, t.source.path)),
                  Deferred(specs["model"], served_model_from), Deferred(specs["experiment"], experiment_from),
                  unreadable={Path(rel).stem for rel in unread}, inputs=inputs)
    return Specs(model, diags, [s for group in specs.values() for s in group])
