"""kflowgen diff: the two sides of a change (a git ref's and the working tree's), each loaded, rendered and built by
the same stages as every command, or recalled from the cache when that side was validated before; the built objects
are keyed by (environment, kind, namespace, name) and handed to report.changes, which says what changed. Quotas and
capacity come from the models, notebook images and profiles from the rendered JupyterHub values."""
from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import yaml

from kflowgen import cache, survey, tools
from kflowgen.build import Built, build, builder_id, folder_text, overlays_of, parse
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.flow import gitref
from kflowgen.flow.load import load_then, render_stage
from kflowgen.options import Options
from kflowgen.report.changes import DiffReport, compare
from kflowgen.rules.capacity import allocation
from kflowgen.specs import layout
from kflowgen.specs.discover import spec_files
from kflowgen.specs.layout import LABEL_TEAM, is_directory_source
from kflowgen.specs.loader import SpecFile, load_bytes
from kflowgen.specs.model import Model, Quota, specs_of
from kflowgen.targets.cached import Released


@dataclass
class Side:
    """What a diff needs of one side: no model, so that a side computed before can be recalled from the cache
    (`kflowgen validate` on main leaves one for every pull request that branches from it)."""

    envs: list[str] = field(default_factory=list)  # the platform's environments, in order
    quotas: dict[str, tuple[dict, dict, dict]] = field(default_factory=dict)  # env -> capacity, allocation, quotas
    sweeps: set[tuple[str, str]] = field(default_factory=set)  # (team, experiment) of sweeps
    built: dict[str, str] = field(default_factory=dict)  # overlay -> sha256 of its built YAML
    values: dict[str, str] = field(default_factory=dict)  # env -> sha256 of its JupyterHub values file
    texts: dict[str, str] = field(default_factory=dict)  # sha256 -> text, for a side made in this run
    made: dict[str, Callable[[], str]] = field(default_factory=dict)  # sha256 -> its built text, read when asked
    # sha256 -> its cache entry (kind, key), or ("unit", key, folder) for a plain directory, for a recalled side
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    store: cache.Cache | None = None
    parsed: dict[str, list] = field(default_factory=dict)  # sha256 -> objects, where the build gave them
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

    def documents(self, digest: str) -> list[str]:
        """A plain directory's documents (see documents()) by its text's sha256, split once for both sides' turns."""
        if digest not in self.docs:
            self.docs[digest] = documents(self.text(digest))
        return self.docs[digest]

    def text(self, digest: str) -> str:
        """A built overlay or values file by its sha256; a recalled side reads it from the cache, checked."""
        if digest in self.texts or digest in self.made:
            return self.texts[digest] if digest in self.texts else self.made[digest]()
        where = self.where[digest]
        if where[0] == "unit":  # a plain directory's files, from the render entry that holds them
            text = folder_text(self.store, *where[1:]) if self.store else None
            if text is None or cache.text_digest(text) != digest:
                raise _Gone(digest)
            return text
        found = self.store.read(*where) if self.store else None  # checksum checked on reading
        if found is None or found[1] != digest:
            raise _Gone(digest)
        return found[0].decode("utf-8")


class _Gone(Exception):
    """A recalled side's text is no longer in the cache (or not what was recorded): the side is made again."""


def _side(opts: Options, label: str | None, snapshot: dict[str, bytes] | None = None, keep: bool = True
          ) -> tuple[Side, list[Diagnostic]]:
    if not (snapshot if snapshot is not None else (opts.root / "specs").is_dir()):
        return Side(), []  # e.g. the first commit: everything is new
    model, diags, rendered = load_then(opts, partial(render_stage, opts), snapshot)
    errors = [d for d in diags if d.severity == "error"]
    if model is None or rendered is None:
        return Side(), _tag(errors, label)
    with opts.timed("build"):
        built, errors = build(opts, rendered, overlays_of(rendered))
    with opts.timed("cache"):
        out = side(model, rendered.files, built, opts.root, snapshot)
        if keep and not errors:
            remember(opts, model, out, built.keys, rendered.units)
    return out, _tag(errors, label)


def side(model: Model, files: dict[str, bytes], built: Built, root: Path | None = None,
         snapshot: dict[str, bytes] | None = None) -> Side:
    """One side of a diff from its model, rendered files and built overlays (the gate hands over the head it
    validated); its spec files are read again, where the diff needs them, from the snapshot or from root."""
    out = Side(envs=list(model.platform.environments), specs=dict(model.inputs), read=_reader(root, snapshot),
               clusters={env: e.cluster for env, e in model.platform.environments.items()}, sweeps={
        (s.top("team"), s.top("name")) for s in specs_of(model.experiments)
        if s.top("sweep", {}).get("grid") or "random" in s.top("sweep", {})})  # as Experiment.grid/random
    for env in model.platform.environments:
        out.quotas[env] = (dict(model.platform.environments[env].gpu_capacity), allocation(model, env),
                           {t.name: t.quota[env] for t in model.teams_in(env)})
    for overlay in built.overlays:  # by sha256: an overlay's text is read when the other side's differs
        out.built[overlay] = digest = built.digest(overlay)
        out.made[digest] = partial(built.overlays.__getitem__, overlay)
        if overlay in built.parsed:
            out.parsed[digest] = built.parsed[overlay]
    digest_of = cache.PerObject(lambda data: hashlib.sha256(data).hexdigest())  # (one values file, many environments)
    for env in sorted(out.envs):  # (in path order; the bytes of the values files only, decoded when the other
        # side's differ: at 10,000 teams each is 22 MB)
        path = layout.hub_values(env)
        if path in files:
            data = files[path]
            digest = digest_of(data)
            out.values[env] = digest  # the sha256 of the text (UTF-8)
            out.made.setdefault(digest, partial(bytes.decode, data, "utf-8"))
    return out


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


def _builder(root: Path) -> str | None:
    kustomize = tools.find("kustomize", root)
    return None if isinstance(kustomize, Diagnostic) else builder_id(kustomize)


def remember(opts: Options, model: Model, s: Side, keys: dict[str, str], units: dict[str, str]) -> None:
    """Keep a side that built without errors, for the diffs that take it as their base. Built overlays are found
    again through their build entries, and plain directories through the render entry of the unit that wrote all
    their files (units: Rendered.units); the texts that have neither (values files, a folder several units write)
    are kept too (at 10,000 teams, keeping each team's workloads folder's text took 5 s: 30,000 files)."""
    store, root = opts.store, opts.root
    builder = _builder(root)
    if store.folder is None or builder is None or None in model.inputs.values():
        return
    k = side_key(model.inputs, cache.tree_ids(root / "bases"), cache.tree_ids(root / "schemas"), builder)
    if store.lookup("side", k) is not None:
        return
    where = {}
    for overlay, digest in s.built.items():
        if overlay in keys:
            where[overlay] = ("build", keys[overlay])
        elif overlay in units:
            where[overlay] = ("unit", units[overlay])
        else:
            where[overlay] = ("text", digest)
    for digest in {*(d for o, (kind, d) in where.items() if kind == "text"), *s.values.values()}:
        kept = store.read("text", digest)  # (kept by an earlier side, intact: not made again, e.g. from every unit)
        if kept is None or kept[1] != digest:
            store.put("text", digest, s.text(digest).encode("utf-8"))
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
    for digest in out.values.values():
        out.where[digest] = ("text", digest)
    return out


def _parse(side: Side, other: Side) -> None:
    """Objects and profiles of this side where its output differs from the other side's: an overlay or values file
    built to the same text on both sides holds the same objects, so it adds nothing to the diff and is not parsed.
    The work is proportional to what changed."""
    for overlay, digest in side.built.items():
        theirs = other.built.get(overlay)
        if theirs == digest:
            continue
        place = layout.place(overlay)
        if theirs is not None and is_directory_source(overlay):  # a file each: only the files that differ
            same = set(other.documents(theirs))
            objects = [obj for doc in side.documents(digest) if doc not in same for obj in parse(doc)]
        else:
            objects = side.parsed.get(digest) or parse(side.text(digest))
        for obj in objects:
            meta = obj.get("metadata", {})
            team = place.team or meta.get("labels", {}).get(LABEL_TEAM)
            side.objects[(place.env, obj["kind"], meta.get("namespace", ""), meta["name"])] = (team, obj)
    for env, digest in side.values.items():
        if other.values.get(env) != digest:
            for p in yaml.load(side.text(digest), Loader=yaml.CSafeLoader)["singleuser"]["profileList"]:
                team = p["kubespawner_override"]["namespace"]
                side.profiles[(env, team, p["slug"].removeprefix(f"{team}-"))] = p


def documents(text: str) -> list[str]:
    """The documents of a plain directory's text (its files' texts joined by "---" lines, as build() joins them).
    A "---" line at the start of a line always starts a new YAML document (YAML forbids it inside a scalar), so a
    document here parses to exactly the objects the same document gives in the whole stream."""
    return ("\n" + text.removesuffix("\n")).split("\n---\n")  # the last one, too, without its line end


def _tag(diags: list[Diagnostic], label: str | None) -> list[Diagnostic]:
    """Say which side a finding is about (a missing tool is the same on both)."""
    return [replace(d, message=f"{label}: {d.message}") if label and d.code != "KF901" else d for d in diags]


def diff_trees(base_opts: Options, head_opts: Options, base_label: str = "base",
               base_specs: dict[str, bytes] | None = None, head: Side | None = None, base: Side | None = None
               ) -> DiffReport:
    """Compare two checkouts (each with specs/ and bases/; the base's spec files may be given as their bytes
    instead, the head as the side already built, and the base as a side recalled from the cache). With a result
    cache, the side that has been loaded, rendered and built before (usually the base branch) comes from it."""
    diags: list[Diagnostic] = []
    if base is None:
        with base_opts.timed("base"):
            base, diags = _side(base_opts, base_label, base_specs)
    head, found = (head, []) if head is not None else _side(head_opts, None)
    if diags or found:
        return DiffReport(diagnostics=sorted(set(diags + found)))
    with head_opts.timed("compare"):
        _parse(base, head)
        _parse(head, base)
        return compare(base, head, _spec_changes(base, head))


def _spec_changes(base: Side, head: Side) -> dict[str, tuple[SpecFile | None, SpecFile | None]]:
    """{path: (the base's spec, the head's)} of every spec file that differs between the two sides, experiments,
    models and teams parsed (None where a side has none), the platform file by path only (both None): what the diff
    says a change happened because of."""
    paths = sorted(p for p in base.specs.keys() | head.specs.keys() if base.specs.get(p) != head.specs.get(p))
    typed = [p for p in paths if p.startswith(("specs/experiments/", "specs/models/", "specs/teams/"))]
    old, new = base.spec_files(typed), head.spec_files(typed)
    return {p: (old.get(p), new.get(p)) for p in paths}


def changed_paths(root: Path, base: str) -> set[str] | None:
    """The repository paths (from root) that differ between the git ref `base` and the working tree, untracked ones
    too: what a pull request changes. None when git cannot say, and for a ref that reads as an option
    (gitref.option_like)."""
    if gitref.option_like(base):
        return None
    try:
        runs = [subprocess.run(["git", "-C", str(root), *args], capture_output=True) for args in
                (["diff", "--name-only", "--relative", "-z", base, "--"], ["ls-files", "-z", "--others",
                                                                          "--exclude-standard"])]
    except OSError:
        return None
    if any(r.returncode for r in runs):
        return None
    return {p for r in runs for p in r.stdout.decode("utf-8", "surrogateescape").split("\0") if p}


def diff_git(opts: Options, base: str, head: Side | None = None, started: list | None = None) -> DiffReport:
    """Compare the git ref `base` with the working tree at root. When the base's spec files, bases/ and schemas/
    (named by their git blob ids, listed without reading them) were diffed or validated before by this kflowgen
    with this kustomize, the base side is recalled from the cache. Otherwise its spec files are read from git into
    memory (`git cat-file --batch`: writing thousands of small files costs far more); bases/ and schemas/, which
    kustomize and the CRD list read from disk, are extracted with `git archive`, and so is specs/ when it holds
    links. A head handed over (the gate's, released: see Files.release) whose files are no longer in the cache is
    made again, and not kept (the gate keeps no head)."""
    try:
        return _diff_git(opts, base, head, started)
    except Released:
        if head is None:
            raise
    head, found = _side(opts, None, keep=False)
    if found:
        return DiffReport(diagnostics=sorted(set(found)))
    return _diff_git(opts, base, head, None)


def _diff_git(opts: Options, base: str, head: Side | None, started: list | None) -> DiffReport:
    root = opts.root

    def git(*args: str, at: Path = root, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(at), *args], capture_output=True, **kw)

    with opts.timed("base"):
        listed = _base_listed(opts, git, base, started)
    if isinstance(listed, DiffReport):
        return listed
    top, tree, names, entries, recalled = listed
    if recalled is not None:
        recalled.read = lambda ids: gitref.blobs(git, top, ids)
        if head is None:  # made once, also for the case the recalled side turns out stale
            head, found = _side(opts, None)
            if found:  # a recalled side is free of errors: the head's are all there is to say
                return DiffReport(diagnostics=sorted(set(found)))
        try:
            return diff_trees(opts, opts, base_label=base, head=head, base=recalled)
        except _Gone:
            pass
    with tempfile.TemporaryDirectory(prefix="kflowgen-diff-") as tmp:
        with opts.timed("base"):
            specs = gitref.spec_blobs(git, top, entries) if "specs" in names else None
            paths = [p for p in ("specs", "bases", "schemas")
                     if p in names and not (p == "specs" and specs is not None)]
            if paths:
                archive = git("archive", "--format=tar", tree, "--", *paths, at=top)
                untar = subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, capture_output=True)
                if archive.returncode or untar.returncode:
                    msg = (archive.stderr or untar.stderr).decode(errors="replace").strip()
                    return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"cannot read {base}: {msg}")])
        return diff_trees(replace(opts, root=Path(tmp)), opts, base_label=base, base_specs=specs, head=head)


def _base_listed(opts: Options, git, base: str, started: list | None = None
                 ) -> DiffReport | tuple[Path, str, list[str], list | None, Side | None]:
    """The git ref's files (the folder above root, the tree, its top-level names and the listing of specs/, bases/
    and schemas/) and its side when the cache holds it; or the report of why git cannot say. started: gitref.started's
    commands, else they are started here."""
    root, store = opts.root, opts.store
    (_, bad), (where, _), (top_names, _), (listing, unlisted) = survey.results(started or gitref.started(root, base))
    if bad:  # (asked again, for git's words)
        try:
            found = git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
        except OSError as e:
            return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"git could not run: {e}")])
        why = found.stderr.decode(errors="replace").strip()
        return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"'{base}' is not a commit in {root}"
                                             + (f" ({why})" if why else ""),
                                             "fetch the base branch first, e.g. git fetch origin main")])
    lines = where.decode("utf-8", "surrogateescape").split("\n")
    top, prefix = Path(lines[0].strip() or root), (lines[1:] or [""])[0].strip()  # root may be below the git top
    tree = f"{base}:{prefix}"
    names = top_names.decode("utf-8", "surrogateescape").splitlines()
    entries = None if unlisted else gitref.entries(listing)
    ids = gitref.blob_ids(entries)
    builder = _builder(root)
    recalled = None
    if ids is not None and builder is not None and "specs" in names:
        wanted = {rel for rel, _ in spec_files(root, {p: b"" for p in ids if p.startswith("specs/")})}
        k = side_key({p: i for p, i in ids.items() if p in wanted},
                     {p.removeprefix("bases/"): i for p, i in ids.items() if p.startswith("bases/")},
                     {p.removeprefix("schemas/"): i for p, i in ids.items() if p.startswith("schemas/")}, builder)
        recalled = recall(store, k)
    return top, tree, names, entries, recalled
