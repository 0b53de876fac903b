"""One side of a diff, without its model: what a diff compares of a git ref's or the working tree's specs and
their built output (quotas, sweeps, built overlays by sha256, plain directories file by file), made from a loaded
side or recalled from the cache, where `kflowgen validate` on main keeps one for every pull request that branches
from it (remember, recall)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from kflowgen import cache, tools
from kflowgen.build import Built, builder_id, directory_files, listing_digest
from kflowgen.build.views import Texts
from kflowgen.diagnostics import Diagnostic
from kflowgen.flow import gitref
from kflowgen.options import Options
from kflowgen.rules.capacity import allocation
from kflowgen.specs import layout
from kflowgen.specs.discover import spec_files
from kflowgen.specs.loader import SpecFile, load_bytes
from kflowgen.specs.model import Model, Quota, specs_of
from kflowgen.targets import pieces
from kflowgen.targets.cached import unpack


@dataclass
class Side:
    """What a diff needs of one side: no model, so that a side computed before can be recalled from the cache
    (`kflowgen validate` on main leaves one for every pull request that branches from it)."""

    envs: list[str] = field(default_factory=list)  # the platform's environments, in order
    quotas: dict[str, tuple[dict, dict, dict]] = field(default_factory=dict)  # env -> capacity, allocation, quotas
    sweeps: set[tuple[str, str]] = field(default_factory=set)  # (team, experiment) of sweeps
    # overlay -> sha256 of its built YAML (of a plain directory one render unit wrote: of its listing, see Built.digest)
    built: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # env -> sha256 of its JupyterHub values file
    texts: dict[str, str] = field(default_factory=dict)  # sha256 -> text, for a side made in this run
    # sha256 -> what its text is, for a side made in this run: the overlay (of output) whose built text it is, read
    # when asked, or a values file's bytes (one name or bytes each, not a function: at 10,000 teams, 60,000 overlays)
    made: dict[str, str | bytes] = field(default_factory=dict)
    # a side made in this run: its build (made, parsed; a plain directory's {path: git blob id}, Built.listing)
    output: Built | None = None
    # sha256 -> its cache entry (kind, key), or ("unit", key, folder) for a plain directory, for a recalled side
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a recalled side's plain directories: folder -> (the key of the render unit that wrote its files, its sha256)
    units: dict[str, tuple[str, str]] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # a side made now: its rendered files
    listed: dict[str, dict[str, str] | None] = field(default_factory=dict)  # (listing's, made once)
    indexes: dict[str, tuple] = field(default_factory=dict)  # folder -> its unit's index, read once (listing's)
    store: cache.Cache | None = None
    parsed: dict[str, str] = field(default_factory=dict)  # sha256 -> the overlay of output whose objects the build
    # gave (made when asked, given(): the build keeps them packed)
    objects: dict[tuple[str, str, str, str], tuple[str | None, dict]] = field(default_factory=dict)
    profiles: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (env, team, profile) -> profile
    specs: dict[str, str | None] = field(default_factory=dict)  # spec path -> git blob id of its bytes
    clusters: dict[str, str] = field(default_factory=dict)  # env -> its cluster (for the commands a change needs)
    read: Callable[[dict[str, str]], dict[str, bytes]] | None = None  # {path: blob id} -> {path: bytes}
    docs: dict[str, list[str]] = field(default_factory=dict)  # sha256 -> documents, of plain directories compared

    def spec_files(self, paths: list[str]) -> dict[str, SpecFile]:
        """These spec files of this side, parsed (those it has and that parse): the diff says why a change happened
        from the spec files that differ, and reads only those."""
        ids = {p: self.specs[p] for p in paths if self.specs.get(p)}
        found = self.read(ids) if ids and self.read else {}
        return {p: spec for p, raw in found.items() if (spec := load_bytes(raw, p)[0]) is not None}

    def listing(self, overlay: str) -> dict[str, str] | None:
        """A plain directory's files, {path: git blob id}: a side made in this run has them from the render; a
        recalled one from the index of the render entry that wrote them, checked against the sha256 of the listing
        it recorded (Gone when it differs). None when the side does not know them file by file."""
        if overlay not in self.listed:
            if overlay in self.units:
                key, digest = self.units[overlay]
                index = unit_index(self.store, key) if self.store else None
                found = folder_ids(index, overlay) if index is not None else None
                if found is None or listing_digest(found) != digest:
                    raise Gone(overlay)
                self.indexes[overlay] = index
            else:
                found = self.output.listing(overlay) if self.output else None
            self.listed[overlay] = found
        return self.listed[overlay]

    def parts(self, overlay: str, paths: list[str]) -> list[str]:
        """The texts of these files of a plain directory whose listing names them (a recalled side's: by the blob
        ids of its checked listing, Gone when the unit does not hold those bytes)."""
        if overlay not in self.units:
            return [self.files[rel].decode("utf-8") for rel in paths]
        listed = self.listing(overlay) or {}
        found = unit_pieces(self.store, self.indexes[overlay], {rel: listed.get(rel, "") for rel in paths}) \
            if self.store else None
        if found is None:
            raise Gone(overlay)
        return [found[rel].decode("utf-8") for rel in paths]

    def documents(self, digest: str) -> list[str]:
        """A plain directory's documents (see documents()) by its digest (Built.digest), split once for both sides'
        turns."""
        if digest not in self.docs:
            self.docs[digest] = documents(self.text(digest))
        return self.docs[digest]

    def text(self, digest: str) -> str:
        """A built overlay or values file by its digest (Built.digest); a recalled side reads it from the cache,
        checked."""
        if digest in self.texts or digest in self.made:
            return self.texts[digest] if digest in self.texts else self._made(digest)
        where = self.where[digest]
        if where[0] == "unit":  # a plain directory's files, from the render entry that holds them, checked
            return "---\n".join(self.parts(where[2], list(self.listing(where[2]) or ())))
        found = self.store.read(*where) if self.store else None  # checksum checked on reading
        if found is None or found[1] != digest:
            raise Gone(digest)
        return found[0].decode("utf-8")

    def data(self, digest: str) -> bytes:
        """text(digest) as UTF-8 bytes, for one use: a text this side made is neither kept nor decoded where it is
        bytes (a validate keeps the Argo CD folders' and the values files' texts in the cache: 34 and 23 MB each at
        10,000 teams)."""
        if digest in self.made and digest not in self.texts:
            return self._made(digest, raw=True)
        return self.text(digest).encode("utf-8")

    def _made(self, digest: str, raw: bool = False) -> str | bytes:
        found = self.made[digest]
        if isinstance(found, bytes):  # a values file's
            return found if raw else found.decode("utf-8")
        overlays = self.output.overlays
        if raw:  # (as bytes: for one use, not kept)
            return overlays.data(found) if isinstance(overlays, Texts) else overlays[found].encode("utf-8")
        return overlays[found]

    def given(self, digest: str) -> list[dict] | None:
        """The objects of a built overlay by its digest, where this run's build gave them (made anew for each
        caller), else None."""
        return self.output.parsed[self.parsed[digest]] if digest in self.parsed else None


class Gone(Exception):
    """A recalled side's text is no longer in the cache (or not what was recorded): the side is made again."""


def side(model: Model, files: dict[str, bytes], built: Built, root: Path | None = None,
         snapshot: dict[str, bytes] | None = None) -> Side:
    """One side of a diff from its model, rendered files and built overlays (the gate hands over the head it
    validated); its spec files are read again, where the diff needs them, from the snapshot or from root."""
    out = Side(envs=list(model.platform.environments), specs=dict(model.inputs), read=_reader(root, snapshot),
               files=files, output=built, sweeps=sweeps_of(model.experiments),
               clusters={env: e.cluster for env, e in model.platform.environments.items()})
    for env in model.platform.environments:
        out.quotas[env] = (dict(model.platform.environments[env].gpu_capacity), allocation(model, env),
                           {t.name: t.quota[env] for t in model.teams_in(env)})
    for overlay in built.overlays:  # by sha256: an overlay's text is read when the other side's differs
        out.built[overlay] = digest = built.digest(overlay)
        out.made[digest] = overlay
        if overlay in built.parsed:
            out.parsed[digest] = overlay
    digest_of = cache.PerObject(lambda data: hashlib.sha256(data).hexdigest())  # (one values file, many environments)
    for env in sorted(out.envs):  # (in path order; the bytes of the values files only, decoded when the other
        # side's differ: at 10,000 teams each is 22 MB)
        path = layout.hub_values(env)
        if path in files:
            data = files[path]
            digest = digest_of(data)
            out.values[env] = digest  # the sha256 of the text (UTF-8)
            out.made.setdefault(digest, data)
    return out


def unit_index(store: cache.Cache, unit: str) -> tuple | None:
    """A cached render unit's index entry (by the unit's key) as targets.cached.unpack gives it; None when it is
    missing, damaged or does not add up."""
    body = store.lookup("render", unit)
    return unpack(body) if body is not None else None


def folder_ids(index: tuple, folder: str) -> dict[str, str]:
    """A plain directory's files as directory_files lists them, {path: git blob id}, from the index (unit_index) of
    the render unit that wrote all its files, none of them read."""
    ids = dict(zip(index[0], index[2]))
    return {rel: ids[rel] for rel in directory_files(ids, folder)}


def unit_pieces(store: cache.Cache, index: tuple, ids: dict[str, str]) -> dict[str, bytes] | None:
    """The bytes of these files ({path: git blob id}) of the render unit whose index (unit_index) names them, each
    sliced from the unit's data entry (of a big team's unit, from the piece that holds it: targets.pieces) and
    checked against its blob id (the entry itself is not read whole: one Job changed among a team's thousands); None
    when the unit does not hold exactly those bytes."""
    if not ids:
        return {}
    at = {rel: n for n, rel in enumerate(index[0]) if rel in ids}
    if len(at) != len(ids):
        return None
    data = pieces.spans(store, index[5], index[1], [at[rel] for rel in ids])
    if data is None or any(cache.blob_id(d) != i for d, i in zip(data, ids.values())):
        return None
    return dict(zip(ids, data))


def sweeps_of(experiments) -> set[tuple[str, str]]:
    """(team, name) of the experiments that are sweeps (as Experiment.grid and .random say), each spec's team and name
    looked up only for those (at 10,000 teams, 100,000 experiments)."""
    return {(s.top("team"), s.top("name")) for s in specs_of(experiments)
            if (sweep := s.top("sweep", None)) and (sweep.get("grid") or "random" in sweep)}



def _reader(root: Path | None, snapshot: dict[str, bytes] | None):
    def read(ids: dict[str, str]) -> dict[str, bytes]:
        if snapshot is not None:
            return {p: snapshot[p] for p in ids if p in snapshot}
        out = {}
        for p in ids:
            try:
                out[p] = (root / p).read_bytes()
            except OSError:  # gone since it was read: the diff says less, not something else
                pass
        return out
    return read if (root is not None or snapshot is not None) else None


def side_key(specs: dict[str, str], bases: dict[str, str], schemas: dict[str, str], builder: str) -> str:
    """A side is a function of its spec files, bases/ and schemas/ (by git blob id), kflowgen's code and the
    kustomize that built it."""
    return cache.key("side", cache.code_digest(), builder, *sorted(f"{p}:{i}" for p, i in specs.items()),
                     "bases", *sorted(f"{p}:{i}" for p, i in bases.items()),
                     "schemas", *sorted(f"{p}:{i}" for p, i in schemas.items()))


def listed_key(ids: dict[str, str], builder: str) -> str:
    """side_key of the side of a git tree, from the listing of its specs/, bases/ and schemas/ ({path: blob id}, see
    gitref.blob_ids): its spec files are those spec_files reads among the paths."""
    wanted = {rel for rel, _ in spec_files(Path("."), {p: b"" for p in ids if p.startswith("specs/")})}
    return side_key({p: i for p, i in ids.items() if p in wanted},
                    {p.removeprefix("bases/"): i for p, i in ids.items() if p.startswith("bases/")},
                    {p.removeprefix("schemas/"): i for p, i in ids.items() if p.startswith("schemas/")}, builder)


def _by_trees(builder: str, trees: dict[str, str]) -> str:
    """The key of the entry that names, by the git tree ids of specs/, bases/ and schemas/ (a tree id stands for every
    path and blob id below it), the key listed_key gives their listing."""
    return cache.key("side-by-trees", cache.code_digest(), builder,
                     *(f"{folder}:{trees.get(folder, '')}" for folder in gitref.FOLDERS))


def named(store: cache.Cache, builder: str, trees: dict[str, str]) -> str | None:
    """The side key these trees' listing gives, as name() kept it: a diff finds its base's side without listing and
    keying its files (at 10,000 teams, 120,000 spec files: 0.3 s). None when it is not kept, or not a key."""
    body = store.lookup("side-named", _by_trees(builder, trees))
    k = body.decode("ascii", "replace") if body else ""
    return k if len(k) == 64 and set(k) <= set("0123456789abcdef") else None


def name(store: cache.Cache, builder: str, trees: dict[str, str], k: str) -> None:
    """Keep k (listed_key of these trees' listing, of the same commit) under the trees' ids (see named)."""
    store.put("side-named", _by_trees(builder, trees), k.encode())


def _name_head(root: Path, store: cache.Cache, builder: str) -> None:
    """Name by its folders' tree ids the side of root's HEAD commit (a pull request branching from it diffs against
    it), when not named yet: two git commands, and the listing of its files only then."""
    commit = gitref.commit_of(root, "HEAD")
    trees = gitref.trees_at(root, commit) if commit else None
    if trees is not None and named(store, builder, trees) is None:
        ids = gitref.ids_at(root, commit)
        if ids is not None:
            name(store, builder, trees, listed_key(ids, builder))


def kustomize_id(root: Path) -> str | None:
    kustomize = tools.find("kustomize", root)
    return None if isinstance(kustomize, Diagnostic) else builder_id(kustomize)


@dataclass(frozen=True)
class Facts:
    """What a gate judging only the teams a change touches (flow.scoped) takes from its base besides the side, which
    only validate finds (a diff's side made from git holds none of it): each overlay's object count, how many files
    were generated, the warnings, the tools that checked, and the sha256 of each served model's spec file (what the
    rules' parts of a team are cached under: rules.checked)."""

    sizes: dict[str, int]
    generated: int
    warnings: list[Diagnostic]
    tools: dict[str, str]
    served: dict[str, str]


def facts(store: cache.Cache, k: str) -> Facts | None:
    """The facts validate kept beside the side of key k; None when no validate kept them."""
    body = store.lookup("side-facts", k)
    if body is None:
        return None
    doc = json.loads(body)
    return Facts(doc["sizes"], doc["generated"], [Diagnostic(*d) for d in doc["warnings"]], doc["tools"],
                 doc["served"])


def remember(opts: Options, model: Model, s: Side, keys: dict[str, str], units: dict[str, str],
             head: bool = True, found: Facts | None = None) -> None:
    """Keep a side that built without errors, for the diffs that take it as their base. Built overlays are found
    again through their build entries, and plain directories through the render entry of the unit that wrote all
    their files (units: Rendered.units); the texts that have neither (values files, a folder several units write)
    are kept too (at 10,000 teams, keeping each team's workloads folder's text took 5 s: 30,000 files). With head
    (a side of the working tree, not of a commit's files extracted elsewhere), HEAD's side is named by its folders'
    tree ids (_name_head): when the working tree is HEAD's, as on main after a merge, that is this side. found: what
    validate found (Facts), kept beside it (also when the side was kept before, by a diff)."""
    store, root = opts.store, opts.root
    builder = kustomize_id(root)
    if store.folder is None or builder is None or None in model.inputs.values():
        return
    k = side_key(model.inputs, cache.tree_ids(root / "bases"), cache.tree_ids(root / "schemas"), builder)
    if store.lookup("side", k) is None:
        _keep(store, s, k, keys, units)
    if found is not None:
        store.put("side-facts", k, json.dumps({"sizes": found.sizes, "generated": found.generated, "tools": found.tools,
                                               "warnings": [list(astuple(d)) for d in found.warnings],
                                               "served": found.served}).encode())
    if head:  # (after keeping the side: what naming lists is not held while its texts are kept)
        _name_head(root, store, builder)


def _keep(store: cache.Cache, s: Side, k: str, keys: dict[str, str], units: dict[str, str]) -> None:
    where = {}
    for overlay, digest in s.built.items():
        if overlay in keys:
            where[overlay] = ("build", keys[overlay])
        elif overlay in units:  # (its sha256 is its listing's: build.listing_digest)
            where[overlay] = ("unit", units[overlay])
        else:
            where[overlay] = ("text", digest)
    for digest in {*(w[1] for w in where.values() if w[0] == "text"), *s.values.values()}:
        kept = store.read("text", digest)  # (kept by an earlier side, intact: not made again, e.g. from every unit)
        if kept is None or kept[1] != digest:
            store.put("text", digest, s.data(digest))
    doc = {"envs": s.envs, "sweeps": sorted(s.sweeps), "specs": s.specs, "clusters": s.clusters,
           "quotas": {env: [cap, alloc, {t: dict(vars(q)) for t, q in quotas.items()}]  # (as asdict: flat)
                      for env, (cap, alloc, quotas) in s.quotas.items()},
           "built": {o: [d, *where[o]] for o, d in s.built.items()}, "values": s.values}
    store.put("side", k, json.dumps(doc, sort_keys=True).encode("utf-8"))


def recall(store: cache.Cache, k: str) -> Side | None:
    body = store.lookup("side", k)
    if body is None:
        return None
    doc = json.loads(body)
    out = Side(envs=doc["envs"], sweeps={tuple(x) for x in doc["sweeps"]}, store=store, values=doc["values"],
               specs=doc["specs"], clusters=doc["clusters"])
    for env, (cap, alloc, quotas) in doc["quotas"].items():
        out.quotas[env] = (cap, alloc, {t: Quota(**q) for t, q in quotas.items()})
    for overlay, (digest, kind, k) in doc["built"].items():
        out.built[overlay] = digest
        out.where[digest] = (kind, k, overlay) if kind == "unit" else (kind, k)
        if kind == "unit":
            out.units[overlay] = (k, digest)
    for digest in out.values.values():
        out.where[digest] = ("text", digest)
    return out


def documents(text: str) -> list[str]:
    """The documents of a plain directory's text (its files' texts joined by "---" lines, as build() joins them).
    A "---" line at the start of a line always starts a new YAML document (YAML forbids it inside a scalar), so a
    document here parses to exactly the objects the same document gives in the whole stream."""
    return ("\n" + text.removesuffix("\n")).split("\n---\n")  # the last one, too, without its line end
