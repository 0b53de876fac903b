"""kflowgen diff: what a change to the specs does to each environment, in words a reviewer reads without YAML.

Each side is loaded, rendered and built with kustomize (no validation), the built objects are keyed by
(environment, kind, namespace, name) and compared; quotas and capacity come from the models, notebook
images and profiles from the rendered JupyterHub values.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from kflowgen import cache
from kflowgen.flow import pipeline
from kflowgen.specs import quantity
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs.model import Model, Quota, specs_of
from kflowgen.rules.capacity import allocation
from kflowgen.specs.layout import LABEL_EXPERIMENT, LABEL_MODEL, LABEL_TEAM, LABEL_VERSION, SYNC_OPTIONS

KINDS = ("quota", "version", "image", "jobs", "added", "changed", "removed")
DANGEROUS = ("Namespace", "PersistentVolumeClaim", "AppProject")


@dataclass(frozen=True)
class Change:
    env: str
    team: str | None
    kind: str  # one of KINDS
    text: str  # one line, starting with "team, env: " (or "env: " for the environment as a whole)

    @property
    def body(self) -> str:
        return self.text.split(": ", 1)[1]


@dataclass
class DiffReport:
    changes: list[Change] = field(default_factory=list)
    dangerous: list[Change] = field(default_factory=list)  # removals of Namespaces, PVCs and AppProjects
    diagnostics: list[Diagnostic] = field(default_factory=list)  # spec errors at either side, tool failures

    @property
    def exit_code(self) -> int:
        return 1 if self.diagnostics else 0


@dataclass
class _Side:
    """What a diff needs of one side: no model, so that a side computed before can be recalled from the cache
    (`kflowgen validate` on main leaves one for every pull request that branches from it)."""

    envs: list[str] = field(default_factory=list)  # the platform's environments, in order
    quotas: dict[str, tuple[dict, dict, dict]] = field(default_factory=dict)  # env -> capacity, allocation, quotas
    sweeps: set[tuple[str, str]] = field(default_factory=set)  # (team, experiment) of sweeps
    built: dict[str, str] = field(default_factory=dict)  # overlay -> sha256 of its built YAML
    values: dict[str, str] = field(default_factory=dict)  # env -> sha256 of its JupyterHub values file
    texts: dict[str, str] = field(default_factory=dict)  # sha256 -> text, for a side made in this run
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha256 -> cache entry, for a recalled side
    store: cache.Cache | None = None
    objects: dict[tuple[str, str, str, str], tuple[str | None, dict]] = field(default_factory=dict)
    profiles: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (env, team, profile) -> profile

    def text(self, digest: str) -> str:
        """A built overlay or values file by its sha256; a recalled side reads it from the cache, checked."""
        if digest in self.texts:
            return self.texts[digest]
        found = self.store.read(*self.where[digest]) if self.store else None  # checksum checked on reading
        if found is None or found[1] != digest:
            raise _Gone(digest)
        return found[0].decode("utf-8")


class _Gone(Exception):
    """A recalled side's text is no longer in the cache (or not what was recorded): the side is made again."""


def _side(root: Path, jobs: int, label: str | None, store: cache.Cache,
          snapshot: dict[str, bytes] | None = None) -> tuple[_Side, list[Diagnostic]]:
    if not (snapshot if snapshot is not None else (root / "specs").is_dir()):
        return _Side(), []  # e.g. the first commit: everything is new
    model, diags = pipeline.load(root, store, jobs, snapshot)
    errors = [d for d in diags if d.severity == "error"]
    if model is None:
        return _Side(), _tag(errors, label)
    files = pipeline.render_cached(model, store, jobs)
    built, errors = pipeline.build(root, files, pipeline.overlays_of(files), jobs, store)
    out = side(model, files, built.overlays)
    if not errors:
        remember(store, root, model, out, built.keys)
    return out, _tag(errors, label)


def side(model: Model, files: dict[str, bytes], built: dict[str, str]) -> _Side:
    """One side of a diff from its model, rendered files and built overlays (the gate hands over the head it
    validated)."""
    out = _Side(envs=list(model.platform.environments), sweeps={
        (s.data["team"], s.data["name"]) for s in specs_of(model.experiments)
        if s.data.get("sweep", {}).get("grid") or "random" in s.data.get("sweep", {})})  # as Experiment.grid/random
    for env in model.platform.environments:
        out.quotas[env] = (dict(model.platform.environments[env].gpu_capacity), allocation(model, env),
                           {t.name: t.quota[env] for t in model.teams_in(env)})
    for overlay, text in built.items():
        out.built[overlay] = digest = cache.text_digest(text)
        out.texts[digest] = text
    for path, data in files.items():
        if path.endswith("/jupyterhub/values.yaml"):
            text = data.decode("utf-8")
            out.values[path.split("/")[1]] = digest = cache.text_digest(text)
            out.texts[digest] = text
    return out


def side_key(specs: dict[str, str], bases: dict[str, str], schemas: dict[str, str], builder: str) -> str:
    """A side is a function of its spec files, bases/ and schemas/ (by git blob id), kflowgen's code and the
    kustomize that built it."""
    return cache.key("side", cache.code_digest(), builder, *sorted(f"{p}:{i}" for p, i in specs.items()),
                     "bases", *sorted(f"{p}:{i}" for p, i in bases.items()),
                     "schemas", *sorted(f"{p}:{i}" for p, i in schemas.items()))


def _builder(root: Path) -> str | None:
    kustomize = pipeline.tools.find("kustomize", root)
    return None if isinstance(kustomize, Diagnostic) else pipeline.builder_id(kustomize)


def remember(store: cache.Cache, root: Path, model: Model, s: _Side, keys: dict[str, str]) -> None:
    """Keep a side that built without errors, for the diffs that take it as their base. Built overlays are found
    again through their build entries; the texts that have none (plain directories, values files) are kept too."""
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
        else:
            where[overlay] = ("text", digest)
            store.put("text", digest, s.texts[digest].encode("utf-8"))
    for digest in s.values.values():
        store.put("text", digest, s.texts[digest].encode("utf-8"))
    doc = {"envs": s.envs, "sweeps": sorted(s.sweeps),
           "quotas": {env: [cap, alloc, {t: asdict(q) for t, q in quotas.items()}]
                      for env, (cap, alloc, quotas) in s.quotas.items()},
           "built": {o: [d, *where[o]] for o, d in s.built.items()}, "values": s.values}
    store.put("side", k, json.dumps(doc, sort_keys=True).encode("utf-8"))


def recall(store: cache.Cache, k: str) -> _Side | None:
    body = store.lookup("side", k)
    if body is None:
        return None
    doc = json.loads(body)
    out = _Side(envs=doc["envs"], sweeps={tuple(x) for x in doc["sweeps"]}, store=store, values=doc["values"])
    for env, (cap, alloc, quotas) in doc["quotas"].items():
        out.quotas[env] = (cap, alloc, {t: Quota(**q) for t, q in quotas.items()})
    for overlay, (digest, kind, k) in doc["built"].items():
        out.built[overlay] = digest
        out.where[digest] = (kind, k)
    for digest in out.values.values():
        out.where[digest] = ("text", digest)
    return out


def _parse(side: _Side, other: _Side) -> None:
    """Objects and profiles of this side where its output differs from the other side's: an overlay or values file
    built to the same text on both sides holds the same objects, so it adds nothing to the diff and is not parsed.
    The work is proportional to what changed."""
    for overlay, digest in side.built.items():
        if other.built.get(overlay) == digest:
            continue
        parts = overlay.split("/")  # overlays/<env>/teams/<team>/... or overlays/<env>/argocd
        for obj in yaml.load_all(side.text(digest), Loader=yaml.CSafeLoader):
            if obj:
                meta = obj.get("metadata", {})
                team = parts[3] if parts[2] == "teams" else meta.get("labels", {}).get(LABEL_TEAM)
                side.objects[(parts[1], obj["kind"], meta.get("namespace", ""), meta["name"])] = (team, obj)
    for env, digest in side.values.items():
        if other.values.get(env) != digest:
            for p in yaml.load(side.text(digest), Loader=yaml.CSafeLoader)["singleuser"]["profileList"]:
                team = p["kubespawner_override"]["namespace"]
                side.profiles[(env, team, p["slug"].removeprefix(f"{team}-"))] = p


def _tag(diags: list[Diagnostic], label: str | None) -> list[Diagnostic]:
    """Say which side a finding is about (a missing tool is the same on both)."""
    return [replace(d, message=f"{label}: {d.message}") if label and d.code != "KF901" else d for d in diags]


def diff_trees(base_root: Path, head_root: Path, jobs: int, base_label: str = "base",
               store: cache.Cache | None = None, base_specs: dict[str, bytes] | None = None,
               head: _Side | None = None, base: _Side | None = None) -> DiffReport:
    """Compare two checkouts (each with specs/ and bases/; the base's spec files may be given as their bytes
    instead, the head as the side already built, and the base as a side recalled from the cache). With a result
    cache, the side that has been loaded, rendered and built before (usually the base branch) comes from it."""
    store = store or cache.Cache(None)
    diags: list[Diagnostic] = []
    if base is None:
        base, diags = _side(base_root, jobs, base_label, store, base_specs)
    head, found = (head, []) if head is not None else _side(head_root, jobs, None, store)
    report = DiffReport(diagnostics=sorted(set(diags + found)))
    if report.diagnostics:
        return report
    _parse(base, head)
    _parse(head, base)
    # environments in the head's order, then those only the base has
    envs = list(dict.fromkeys(head.envs + base.envs))
    changes = [*_quotas(base, head, envs), *_objects(base, head), *_profiles(base, head)]
    report.changes = sorted(changes, key=lambda c: (envs.index(c.env), c.team is not None, c.team or "",
                                                    KINDS.index(c.kind), c.text))
    report.dangerous = [c for c in report.changes if c.kind == "removed" and c.body.split(" ", 1)[0] in DANGEROUS]
    return report


def diff_git(root: Path, base: str, jobs: int, store: cache.Cache | None = None,
             head: _Side | None = None) -> DiffReport:
    """Compare the git ref `base` with the working tree at root. When the base's spec files, bases/ and schemas/
    (named by their git blob ids, listed without reading them) were diffed or validated before by this kflowgen
    with this kustomize, the base side is recalled from the cache. Otherwise its spec files are read from git into
    memory (`git cat-file --batch`: writing thousands of small files costs far more); bases/ and schemas/, which
    kustomize and the CRD list read from disk, are extracted with `git archive`, and so is specs/ when it holds
    links."""
    def git(*args: str, at: Path = root, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(at), *args], capture_output=True, **kw)

    try:
        found = git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
        top = Path(git("rev-parse", "--show-toplevel", text=True).stdout.strip() or root)
        prefix = git("rev-parse", "--show-prefix", text=True).stdout.strip()  # root may be below the git top
    except OSError as e:
        return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"git could not run: {e}")])
    if found.returncode:
        why = found.stderr.decode(errors="replace").strip()
        return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"'{base}' is not a commit in {root}"
                                             + (f" ({why})" if why else ""),
                                             "fetch the base branch first, e.g. git fetch origin main")])
    tree = f"{base}:{prefix}"
    store = store or cache.Cache(None)
    names = git("ls-tree", "--name-only", tree, at=top, text=True).stdout.splitlines()
    entries = _listing(git, top, tree, "specs", "bases", "schemas")
    ids = _blob_ids(entries)
    builder = _builder(root)
    if ids is not None and builder is not None and "specs" in names:
        wanted = {rel for rel, _ in pipeline.spec_files(root, {p: b"" for p in ids if p.startswith("specs/")})}
        k = side_key({p: i for p, i in ids.items() if p in wanted},
                     {p.removeprefix("bases/"): i for p, i in ids.items() if p.startswith("bases/")},
                     {p.removeprefix("schemas/"): i for p, i in ids.items() if p.startswith("schemas/")}, builder)
        recalled = recall(store, k)
        if recalled is not None:
            if head is None:  # made once, also for the case the recalled side turns out stale
                head, found = _side(root, jobs, None, store)
                if found:  # a recalled side is free of errors: the head's are all there is to say
                    return DiffReport(diagnostics=sorted(set(found)))
            try:
                return diff_trees(root, root, jobs, base_label=base, store=store, head=head, base=recalled)
            except _Gone:
                pass
    specs = _spec_blobs(git, top, entries) if "specs" in names else None
    paths = [p for p in ("specs", "bases", "schemas") if p in names and not (p == "specs" and specs is not None)]
    with tempfile.TemporaryDirectory(prefix="kflowgen-diff-") as tmp:
        if paths:
            archive = git("archive", "--format=tar", tree, "--", *paths, at=top)
            untar = subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, capture_output=True)
            if archive.returncode or untar.returncode:
                msg = (archive.stderr or untar.stderr).decode(errors="replace").strip()
                return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"cannot read {base}: {msg}")])
        return diff_trees(Path(tmp), root, jobs, base_label=base, store=store, base_specs=specs, head=head)


def _listing(git, top: Path, tree: str, *folders: str) -> list[tuple[str, bytes, bytes, bytes]] | None:
    """(path, mode, kind, object id) of every entry below these folders of a git tree, listed without reading a
    file; None when git cannot list it."""
    listing = git("ls-tree", "-r", "-z", "--full-tree", tree, "--", *folders, at=top)
    if listing.returncode:
        return None
    out = []
    for item in filter(None, listing.stdout.split(b"\0")):
        meta, _, path = item.partition(b"\t")
        mode, kind, oid = meta.split()
        out.append((path.decode("utf-8", "surrogateescape"), mode, kind, oid))
    return out


def _plain(entries) -> bool:
    """Only files: no link (its target could be anything) and no submodule."""
    return all(kind == b"blob" and mode != b"120000" for _, mode, kind, _ in entries)


def _blob_ids(entries) -> dict[str, str] | None:
    """{path: blob id} of the listed files; None when there is a link or a submodule among them (a side is then
    never recalled)."""
    if entries is None or not _plain(entries):
        return None
    return {path: oid.decode() for path, _, _, oid in entries}


def _spec_blobs(git, top: Path, entries) -> dict[str, bytes] | None:
    """{path: bytes} of every file under specs/ in a git tree's listing (_listing); None when there is a link or a
    submodule there, or no listing."""
    entries = [e for e in entries if e[0].startswith("specs/")] if entries is not None else None
    if entries is None or not _plain(entries):
        return None
    batch = git("cat-file", "--batch", at=top, input=b"".join(oid + b"\n" for *_, oid in entries))
    out, pos, data = {}, 0, batch.stdout
    for path, _, _, oid in entries:
        end = data.find(b"\n", pos)
        header = data[pos:end].split()
        if batch.returncode or end < 0 or len(header) != 3 or header[0] != oid or header[1] != b"blob":
            return None
        size = int(header[2])
        out[path] = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1  # the payload is followed by a newline
    return out


# --- what changed ---------------------------------------------------------------------------------------------

def _at(env: str, team: str | None) -> str:
    return f"{team}, {env}: " if team else f"{env}: "


def _arrow(old, new) -> str:
    return f"{old}" if old == new else f"{old} → {new}"


def _quotas(base: _Side, head: _Side, envs: list[str]):
    for env in envs:
        (cap0, alloc0, teams0), (cap1, alloc1, teams1) = (s.quotas.get(env, ({}, {}, {})) for s in (base, head))
        for g in sorted(set(cap0) | set(cap1)):
            if cap0.get(g, 0) != cap1.get(g, 0):
                yield Change(env, None, "quota", f"{_at(env, None)}GPU capacity {g} {cap0.get(g, 0)} → {cap1.get(g, 0)}")
        for team in sorted(set(teams0) | set(teams1)):
            q0, q1 = teams0.get(team), teams1.get(team)
            gpu0, gpu1 = q0.gpu if q0 else {}, q1.gpu if q1 else {}
            for g in sorted(set(gpu0) | set(gpu1)):
                n0, n1 = gpu0.get(g, 0), gpu1.get(g, 0)
                if n0 != n1:
                    yield Change(env, team, "quota", f"{_at(env, team)}GPU quota {g} {n0} → {n1} ({env} capacity "
                                 f"{_arrow(cap0.get(g, 0), cap1.get(g, 0))}, allocated "
                                 f"{alloc0.get(g, 0)} → {alloc1.get(g, 0)})")
            if q0 is None or q1 is None:  # the team came or went
                q = q0 or q1
                yield Change(env, team, "quota", f"{_at(env, team)}quota {'added' if q1 else 'removed'} "
                             f"(cpu {q.cpu}, memory {q.memory}, storage {q.storage})")
                continue
            for name in ("cpu", "memory", "storage"):
                v0, v1 = getattr(q0, name), getattr(q1, name)
                if quantity.parse(v0) != quantity.parse(v1):
                    yield Change(env, team, "quota", f"{_at(env, team)}{name} quota {v0} → {v1}")


def _ident(key: tuple[str, str, str, str]) -> str:
    return f"{key[2]}/{key[3]}" if key[2] else key[3]


def _plural(kind: str, n: int) -> str:
    return kind if n == 1 else kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


def _objects(base: _Side, head: _Side):
    """Objects added and removed (an experiment's Jobs counted, a whole team in one line), then changed ones."""
    groups: dict[tuple, list] = {}
    sides = {"added": (head, base), "removed": (base, head)}
    for status, (here, there) in sides.items():
        for key in here.objects.keys() - there.objects.keys():
            team, obj = here.objects[key]
            exp = obj.get("metadata", {}).get("labels", {}).get(LABEL_EXPERIMENT)
            groups.setdefault((key[0], team, status, exp), []).append(key)
    for (env, team, status, exp), keys in groups.items():  # (sorted at the end, with every other change)
        n, where, here = len(keys), _at(env, team), sides[status][0]
        if exp:  # an experiment's Jobs, counted
            sweep = (team, exp) in here.sweeps
            what = f"{n} new {_plural(keys[0][1], n)}" if status == "added" else f"{n} {_plural(keys[0][1], n)} removed"
            yield Change(env, team, "jobs", f"{where}{what} ({'sweep' if sweep else 'experiment'} {exp})")
            continue
        for key in sorted(k for k in keys if status == "removed" and k[1] in DANGEROUS):  # one line each
            opts = here.objects[key][1].get("metadata", {}).get("annotations", {}).get(SYNC_OPTIONS, "")
            keep = f" (Argo CD keeps it in the cluster: {opts})" if "Delete=false" in opts else ""
            yield Change(env, team, status, f"{where}{key[1]} {_ident(key)} removed{keep}")
        rest = sorted(k for k in keys if status == "added" or k[1] not in DANGEROUS)
        by_kind = {kind: [k for k in rest if k[1] == kind] for kind in sorted({k[1] for k in rest})}
        if (env, "Namespace", "", team) in keys:  # the whole team came or went: one line
            kinds = ", ".join(f"{len(ks)} {_plural(kind, len(ks))}" if len(ks) > 1 else kind
                              for kind, ks in by_kind.items())
            yield Change(env, team, status, f"{where}team {status}: {kinds}")
            continue
        for kind, ks in by_kind.items():
            names = ", ".join(_ident(k) for k in ks)
            yield Change(env, team, status, f"{where}{kind} {names} {status}" if len(ks) == 1 else
                         f"{where}{len(ks)} {_plural(kind, len(ks))} {status}: {names}")
    for key in sorted(base.objects.keys() & head.objects.keys()):
        (team, old), (_, new) = base.objects[key], head.objects[key]
        if old != new:
            yield from _changed(key, team, old, new)


def _changed(key, team: str | None, old: dict, new: dict):
    """Which fields changed (two levels deep), and the container images and served model version among them."""
    env, where = key[0], _at(key[0], team)
    fields = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if a != b:
            fields += ([f"{k}.{s}" for s in sorted(a.keys() | b.keys()) if a.get(s) != b.get(s)]
                       if isinstance(a, dict) and isinstance(b, dict) else [k])
    yield Change(env, team, "changed", f"{where}{key[1]} {_ident(key)} changed ({', '.join(fields)})")
    templates = [o.get("spec", {}).get("template", {}) for o in (old, new)]
    pods = [t.get("spec", {}) for t in templates]
    images = [{c["name"]: c.get("image") for c in p.get("containers", []) + p.get("initContainers", [])} for p in pods]
    for name in sorted(images[0].keys() & images[1].keys()):
        if images[0][name] != images[1][name]:
            yield Change(env, team, "image", f"{where}{key[1]} {_ident(key)} container {name} image "
                         f"{_image_arrow(images[0][name], images[1][name])}")
    model = new.get("metadata", {}).get("labels", {}).get(LABEL_MODEL)
    versions = [t.get("metadata", {}).get("labels", {}).get(LABEL_VERSION) for t in templates]
    if model and key[1] == "Deployment" and None not in versions and versions[0] != versions[1]:
        yield Change(env, team, "version", f"{where}model {model} version {versions[0]} → {versions[1]}")


def _image_arrow(old: str, new: str) -> str:
    """'repo:1 → repo:2' is written 'repo 1 → 2'."""
    def split(image: str) -> tuple[str, str]:
        if "@" in image:
            return image.split("@", 1)[0], "@" + image.split("@", 1)[1]
        repo, _, tag = image.rpartition(":")
        return (repo, tag) if repo and "/" not in tag else (image, "")
    (r0, t0), (r1, t1) = split(old), split(new)
    return f"{r0} {t0 or 'latest'} → {t1 or 'latest'}" if r0 == r1 else f"{old} → {new}"


def _profiles(base: _Side, head: _Side):
    """Notebook images, and profiles added, removed or changed otherwise, per team from the JupyterHub values."""
    for env, team in sorted({k[:2] for k in base.profiles.keys() | head.profiles.keys()}):
        old, new = ({k[2]: {**p, **p["kubespawner_override"], "kubespawner_override": None}
                     for k, p in side.profiles.items() if k[:2] == (env, team)} for side in (base, head))
        images = [" ".join(sorted({p.pop("image") for p in side.values()})) for side in (old, new)]
        if all(images) and images[0] != images[1]:
            yield Change(env, team, "image", f"{_at(env, team)}notebook image {_image_arrow(*images)}")
        for status, names in (("added", new.keys() - old.keys()), ("removed", old.keys() - new.keys()),
                              ("changed", {n for n in old.keys() & new.keys() if old[n] != new[n]})):
            if names:
                yield Change(env, team, status, f"{_at(env, team)}notebook {_plural('profile', len(names))} "
                             f"{status}: {', '.join(sorted(names))}")


# --- formats --------------------------------------------------------------------------------------------------

def _diagnostic_lines(r: DiffReport) -> list[str]:
    out = []
    for d in r.diagnostics:
        out.append(f"{d.location()}: {d.severity} [{d.code}] {d.message}")
        out += [f"    fix: {d.hint}"] if d.hint else []
    return out


def tally(r: DiffReport) -> str:
    if r.diagnostics:
        n = len(r.diagnostics)
        return f"kflowgen diff: {n} error{'s' * (n != 1)}, no diff"
    if not r.changes:
        return "kflowgen diff: no changes"
    n, envs = len(r.changes), len({c.env for c in r.changes})
    return (f"kflowgen diff: {n} change{'s' * (n != 1)} in {envs} environment{'s' * (envs != 1)}"
            + (f", {len(r.dangerous)} dangerous" if r.dangerous else ""))


def change_lines(r: DiffReport) -> list[str]:
    """The dangerous removals marked ⚠, then every other change; one line each."""
    dangerous = set(r.dangerous)
    return [f"⚠ {c.text}" for c in r.dangerous] + [c.text for c in r.changes if c not in dangerous]


def render_text(r: DiffReport) -> str:
    """Diagnostics, then the changes (change_lines), then the tally."""
    return "\n".join(_diagnostic_lines(r) + change_lines(r) + [tally(r)]) + "\n"


def render_markdown(r: DiffReport) -> str:
    """For a pull request comment or $GITHUB_STEP_SUMMARY: a heading, the dangerous list, a section per environment."""
    dangerous = set(r.dangerous)
    out = [f"## {tally(r)}", ""]
    if r.diagnostics:
        out += ["```", *_diagnostic_lines(r), "```", ""]
    if r.dangerous:
        out += ["### ⚠ Removed from Git: namespaces, volumes, projects", ""]
        out += [f"- ⚠ {c.text}" for c in r.dangerous] + [""]
    for env in dict.fromkeys(c.env for c in r.changes):
        out += [f"### {env}", ""]
        for c in (c for c in r.changes if c.env == env):
            mark = "⚠ " if c in dangerous else ""
            out.append(f"- {mark}**{c.team}**: {c.body}" if c.team else f"- {mark}{c.body}")
        out.append("")
    return "\n".join(out)


def render_json(r: DiffReport) -> str:
    diags = [{"path": d.path, "line": d.line, "column": d.col, "severity": d.severity, "code": d.code,
              "message": d.message, "hint": d.hint} for d in r.diagnostics]
    return json.dumps({"changes": [asdict(c) for c in r.changes], "dangerous": [asdict(c) for c in r.dangerous],
                       "diagnostics": diags}, indent=2, ensure_ascii=False) + "\n"
