"""The pipeline: load -> validate -> model -> render -> write/check -> build -> verify -> report."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kflowgen import cache, parallel, rules, tools
from kflowgen.checks import codeowners, policy, verify
from kflowgen.build import handkept
from kflowgen.specs import loader, schema as specschema
from kflowgen.write import writer
from kflowgen.targets import render as render_mod
from kflowgen.diagnostics import Diagnostic, Report, error, warning
from kflowgen.specs.loader import SpecFile, load_bytes
from kflowgen.specs.model import Deferred, Model, platform_from, team_from
from kflowgen.specs.experiment import EXPERIMENTS, experiment_from
from kflowgen.specs.served import MODELS, served_model_from
from kflowgen.rules.capacity import allocation

PLATFORM = "specs/platform.yaml"
GROUPS = 64  # a folder of more spec files than this (specs/teams) is read and cached in this many groups


SPECS = "specs"


def _spec_paths(root: Path, snapshot: dict[str, bytes] | None = None) -> list[str]:
    """Every file (or folder) named like a spec (.yaml, .yml) anywhere under specs/: where it is decides what it is
    (spec_files), and one where kflowgen does not look is reported, not ignored."""
    if snapshot is not None:
        return sorted(rel for rel in snapshot if rel.startswith(SPECS + "/") and os.path.splitext(rel)[1] in (".yaml", ".yml"))
    out, seen = [], set()
    top = os.path.realpath(root)
    for dirpath, dirs, names in os.walk(os.path.join(root, SPECS), followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree: walked once (its files are then refused if they leave the repo)
            dirs[:] = []
            continue
        seen.add(real)
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        out += [f"{rel}/{n}" for n in names + dirs if os.path.splitext(n)[1] in (".yaml", ".yml")]
        leaving = [d for d in dirs if not _within(top, os.path.realpath(os.path.join(dirpath, d)))]
        out += [f"{rel}/{d}/" for d in leaving if not os.path.splitext(d)[1] in (".yaml", ".yml")]
        dirs[:] = [d for d in dirs if d not in leaving]  # never walked: a link to / would walk the whole machine
    return sorted(out)


def _within(top: str, real: str) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _kind(rel: str) -> str:
    """What kflowgen reads a file under specs/ as: platform, team, model, experiment, stray (nowhere it looks), or
    outside (a folder link that leaves the repository, not walked)."""
    if rel.endswith("/"):
        return "outside"
    if rel == PLATFORM:
        return "platform"
    parts = rel.split("/")
    if len(parts) == 3 and parts[1] == "teams":
        return "team"
    if len(parts) > 2 and f"{parts[0]}/{parts[1]}" in (MODELS, EXPERIMENTS):
        return "model" if f"{parts[0]}/{parts[1]}" == MODELS else "experiment"
    return "stray"


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
    return loader.to_json(None if found else spec, found)


def read_specs(root: Path, wanted: list[tuple[str, str]], store: cache.Cache, jobs: int,
               snapshot: dict[str, bytes] | None = None, progress=None, edits: dict[str, bytes] | None = None,
               ) -> dict[str, tuple[SpecFile | None, list[Diagnostic], str | None]]:
    """Load and schema-check spec files ((path, kind) pairs), from root or from a snapshot of their bytes (a git
    commit's): {path: (spec or None, findings, git blob id of the bytes or None when they could not be read)}.
    A file whose path and bytes were checked before by this kflowgen comes from the cache; the rest are checked
    here. The files of a folder (a team's experiments; a big folder is split in GROUPS groups by name) are read together,
    and their results cached together as well as one by one; many groups are read on `jobs` processes."""
    global _READING
    cache.code_digest()  # once here, not in every forked reader
    groups: dict[tuple[str, int], list[tuple[str, str]]] = {}
    sizes: dict[str, int] = {}
    for rel, _ in wanted:
        sizes[rel.rsplit("/", 1)[0]] = sizes.get(rel.rsplit("/", 1)[0], 0) + 1
    for rel, kind in wanted:
        folder, name = rel.rsplit("/", 1)
        # a big folder (every team's file) in GROUPS groups by name, so that changing one file re-reads few
        groups.setdefault((folder, zlib.crc32(name.encode()) % GROUPS if sizes[folder] > GROUPS else 0),
                          []).append((rel, kind))
    _READING = root, store, snapshot, edits
    try:
        results = parallel.fan_out(_read_groups, list(groups.values()), jobs,
                                   _stage(progress, len(wanted), "reading specs"), weigh=len)
    finally:
        _READING = None
    out = {}
    for group, group_results in zip(groups.values(), results):
        for (rel, _), (spec, found, hit, oid) in zip(group, group_results):
            out[rel] = spec, found, oid
            if hit is not None:
                store.count(hit)
    return out


_READING: tuple | None = None  # (root, store, snapshot, edits) that forked readers see


def _read_groups(batch: list[list[tuple[str, str]]]) -> list[list[tuple]]:
    assert _READING is not None
    root, store, snapshot, edits = _READING
    folders: dict[str, bool] = {}
    return [_read_group(root, group, store, snapshot, folders, edits) for group in batch]


def _read_group(root: Path, group: list[tuple[str, str]], store: cache.Cache, snapshot: dict[str, bytes] | None,
                folders: dict[str, bool], edits: dict[str, bytes] | None = None) -> list[tuple]:
    """(spec or None, findings, whether the cache had it: None when not looked up, git blob id) of each file of a
    group. The group's results are one cache entry, keyed on every readable file's path, kind and
    bytes; when it is missing, each file's own entry is looked up, or the file checked."""
    raws = [(edits[rel], []) if edits and rel in edits else _raw(root, rel, snapshot, folders) for rel, _ in group]
    readable = [(rel, kind, raw) for (rel, kind), (raw, _) in zip(group, raws) if raw is not None]
    k = cache.key("specs", cache.code_digest(), *(f"{rel}\0{kind}\0{hashlib.sha256(raw).hexdigest()}"
                                                 for rel, kind, raw in readable))
    packed = store.lookup("specs", k) if readable else None
    lines = packed.split(b"\n") if packed is not None else []
    if len(lines) == len(readable):
        results = [(line, True) for line in lines]
    else:  # not cached (or not one result per file: never trusted)
        results = [_checked(store, rel, kind, raw) for rel, kind, raw in readable]
        if readable:
            store.put("specs", k, b"\n".join(line for line, _ in results))
    out, at = [], iter(results)
    for (rel, kind), (raw, found) in zip(group, raws):
        if raw is None:
            out.append((None, found, None, None))
            continue
        line, hit = next(at)
        spec, found = loader.from_json(line)
        out.append((spec, found, hit, cache.blob_id(raw)))
    return out


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
    """A spec file's result (check_spec's JSON, one line) from its own cache entry or checked now; and whether
    the cache had it."""
    k = cache.key("spec", cache.code_digest(), kind, rel, raw)
    result = store.lookup("spec", k)
    if result is not None:
        return result, True
    result = check_spec(kind, rel, raw)
    store.put("spec", k, result)
    return result, False


def checked_rules(model: Model, sources: list[SpecFile], store: cache.Cache) -> list[Diagnostic]:
    """The rules across spec files. They read only the model, which is made from exactly these spec files (and the
    names of team files that did not load), so their findings are cached under all of those: the commands of one
    pull-request gate (validate, render --check, diff) run them once."""
    if not all(s.digest for s in sources):
        return rules.run(model)
    k = cache.key("rules", cache.code_digest(), len(sources), *sorted(f"{s.path}:{s.digest}" for s in sources),
                  *sorted(model.unreadable))
    hit = store.get("rules", k)
    if hit is not None:
        return [Diagnostic(*d) for d in json.loads(hit)]
    found = rules.run(model)
    store.put("rules", k, json.dumps([dataclasses.astuple(d) for d in found]).encode("utf-8"))
    return found


def _stage(progress, total: int, what: str):
    return progress(total, what) if progress else None


_RENDERING: tuple | None = None  # (model, store, keys) that forked render workers see


def _render_units(batch: list[tuple[str, str]]) -> list[tuple[dict[str, bytes], str | None, dict]]:
    """Files of render units not in the cache, rendered (and cached when the unit has a key), each with the sha256
    of its cache entry and the objects of its files in plain directories of manifests."""
    assert _RENDERING is not None
    model, store, keys = _RENDERING
    out = []
    for unit in batch:
        objects: dict = {}
        files, digest = render_mod.unit_files(model, *unit, objects), None
        if keys[unit]:
            body = pack(files)
            store.put("render", keys[unit], body)
            digest = hashlib.sha256(body).hexdigest()
        out.append((files, digest, objects))
    return out


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


def _unit_key(env: str, team: str, sources: list[SpecFile]) -> str | None:
    if not all(s.digest for s in sources):  # a spec not read from a file (e.g. made in a test): not cached
        return None
    return cache.key("render", "packed", cache.code_digest(), env, team, *(f"{s.path}:{s.digest}" for s in sources))


def render_cached(model: Model, store: cache.Cache, jobs: int, progress=None) -> dict[str, bytes]:
    """render(model), byte for byte. It is the union of units (render.units), each a function of the spec files
    render.unit_sources names and of kflowgen's code, so a unit comes from the cache when those are unchanged; the
    rest are rendered. Many units are handled on `jobs` processes."""
    global _RENDERING
    keys = {unit: _unit_key(*unit, render_mod.unit_sources(model, *unit)) for unit in render_mod.units(model)}
    stage = _stage(progress, len(keys), "rendering")
    cached = dict(zip(keys, store.read_many("render", keys.values())))  # read here: no copy between processes
    todo = [unit for unit, found in cached.items() if found is None]
    if stage:
        stage(len(keys) - len(todo))
    _RENDERING = model, store, keys
    try:
        made = dict(zip(todo, parallel.fan_out(_render_units, todo, jobs, stage)))
    finally:
        _RENDERING = None
    files: dict[str, bytes] = {}
    origin: dict[str, str | None] = {}
    objects: dict = {}
    for unit, k in keys.items():
        if cached[unit] is not None:
            unit_files, digest = unpack(cached[unit][0]), cached[unit][1]
        else:
            unit_files, digest, unit_objects = made[unit]
            objects.update(unit_objects)
        files.update(unit_files)
        if k:
            store.count(cached[unit] is not None)
        for path in unit_files:
            folder = path.rsplit("/", 1)[0]
            origin[folder] = digest if origin.get(folder, digest) == digest else None
    out = Rendered(sorted(files.items()))
    out.origin = {folder: k for folder, k in origin.items() if k}
    out.objects = objects
    return out


class Rendered(dict):
    """render_cached's files, {path: bytes}, knowing for each folder whose files all come from one cached unit the
    sha256 of that unit's files (its cache entry, checked when read): an overlay's build is keyed on it without
    hashing the overlay's files again; and, for files of plain directories of manifests rendered in this run (not
    read from the cache), the object each file holds, so they need not be parsed. Not to be changed after rendering
    (a copy, dict(files), knows neither)."""

    origin: dict[str, str] = {}
    objects: dict[str, dict] = {}


def spec_files(root: Path, snapshot: dict[str, bytes] | None = None) -> list[tuple[str, str]]:
    """(path, kind) of every spec file load reads (from root, or among a snapshot's paths), and of every file named
    like a spec where kflowgen does not look (kind "stray"): the platform file first, then teams, models and
    experiments."""
    order = {"platform": 0, "team": 1, "model": 2, "experiment": 3, "stray": 4, "outside": 5}
    found = [(rel, _kind(rel)) for rel in _spec_paths(root, snapshot) if rel != PLATFORM]
    return [(PLATFORM, "platform")] + sorted(found, key=lambda item: (order[item[1]], item[0]))


def _stray(rel: str) -> Diagnostic:
    return error(rel, (1, 1), "KF316", "kflowgen does not read spec files here, so this one would be ignored",
                 "the platform file is specs/platform.yaml, teams are specs/teams/<team>.yaml, experiments "
                 "specs/experiments/<team>/<name>.yaml and models specs/models/<team>/<name>.yaml")


def load(root: Path, store: cache.Cache | None = None, jobs: int | None = None,
         snapshot: dict[str, bytes] | None = None, progress=None, edits: dict[str, bytes] | None = None,
         ) -> tuple[Model | None, list[Diagnostic]]:
    """Read and check every spec (from root, or from a snapshot: {path: bytes} of a git commit's spec files; edits:
    {path: bytes} of spec files to read as these bytes instead, as a change about to be written); the model is
    returned only when there is no error."""
    diags: list[Diagnostic] = []
    if not (PLATFORM in snapshot if snapshot is not None else (root / PLATFORM).is_file()):
        return None, [error(PLATFORM, (1, 1), "KF101", "platform file not found",
                            "run kflowgen in the repository root, or create one with `kflowgen init`")]
    wanted = spec_files(root, snapshot)
    diags.extend(_stray(rel) for rel, kind in wanted if kind == "stray")
    diags.extend(error(rel.rstrip("/"), (1, 1), "KF312", "folder link that leaves the repository or loops",
                       "replace the link with the folder itself") for rel, kind in wanted if kind == "outside")
    wanted = [(rel, kind) for rel, kind in wanted if kind not in ("stray", "outside")]
    team_paths = [rel for rel, kind in wanted if kind == "team"]
    loaded = read_specs(root, wanted, store or cache.Cache(None), jobs or os.cpu_count() or 1, snapshot, progress,
                        edits)
    specs: dict[str, list[SpecFile]] = {"platform": [], "team": [], "model": [], "experiment": []}
    for rel, kind in wanted:
        spec, found, _ = loaded[rel]
        diags.extend(found)
        if spec is not None:
            specs[kind].append(spec)
    if not specs["platform"]:
        return None, diags
    platform = platform_from(specs["platform"][0])
    read = {s.path for s in specs["team"]}
    model = Model(platform, sorted((team_from(s, list(platform.environments)) for s in specs["team"]),
                                   key=lambda t: (t.name, t.source.path)),
                  Deferred(specs["model"], served_model_from), Deferred(specs["experiment"], experiment_from),
                  unreadable={Path(rel).stem for rel in team_paths if rel not in read},
                  inputs={rel: loaded[rel][2] for rel, _ in wanted})
    diags.extend(checked_rules(model, [s for group in specs.values() for s in group], store or cache.Cache(None)))
    return (None if any(d.severity == "error" for d in diags) else model), diags


@dataclass
class Built:
    """Built manifests per overlay, and per-environment object counts."""

    overlays: dict[str, str] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    rebuilt: int = 0  # overlays built by kustomize in this run (the rest came from the cache)
    keys: dict[str, str] = field(default_factory=dict)  # overlay -> its entry in the build cache
    # objects of overlays built now, when the builder gave them, and of plain directories rendered now
    parsed: dict[str, list] = field(default_factory=dict)


def is_directory_source(folder: str) -> bool:
    """overlays/<env>/argocd is synced by Argo CD as a plain directory of manifests (no kustomization)."""
    parts = folder.split("/")
    return len(parts) == 3 and parts[0] == "overlays" and parts[2] == "argocd"


def overlays_of(files: dict[str, bytes], env: str | None = None, team: str | None = None) -> list[str]:
    """The folders Argo CD syncs: kustomize overlays (a kustomization.yaml) and plain directories of manifests."""
    out = sorted({p.rsplit("/", 1)[0] for p in files
                  if p.endswith("/kustomization.yaml") or is_directory_source(p.rsplit("/", 1)[0])})
    if env:
        out = [o for o in out if o.startswith(f"overlays/{env}/")]
    if team:
        out = [o for o in out if o.startswith(f"overlays/{env}/teams/{team}/")]
    return out


def overlay_keys(root: Path, files: dict[str, bytes], overlays: list[str], tool: tools.Tool) -> dict[str, str]:
    """A cache key per overlay: its files, the hand-kept bases it may reference, and the kustomize version.
    A change to any base changes the key of every overlay that uses bases/ (all are rebuilt)."""
    bases = cache.tree_digest(root / "bases")
    builder = builder_id(tool)
    by_overlay: dict[str, list[str]] = {o: [] for o in overlays}
    for rel in files:
        folder = rel.rsplit("/", 1)[0]
        if folder in by_overlay:
            by_overlay[folder].append(rel)
    out = {}
    origin = files.origin if isinstance(files, Rendered) else {}
    for overlay, rels in by_overlay.items():
        parts: list = [builder]
        if overlay in origin:  # the overlay's files are those of this folder among the unit's files of this digest
            parts += ["unit", overlay, origin[overlay]]
        else:
            for rel in sorted(rels):
                parts += [rel, files[rel]]
        if any(b"bases/" in files[rel] for rel in rels):
            parts.append(bases)
        out[overlay] = cache.key(*parts)
    return out


def builder_id(tool: tools.Tool) -> str:
    """What builds overlays: kustomize's version, run as kubectl kustomize or kustomize, in kflowgen-kbuild or not."""
    batch = tools.find_batch()
    return " ".join([tool.version, tool.argv[0] if tool.argv[0] == "kubectl" else "kustomize",
                     tools.batch_version(batch) if batch and tool.argv[0] != "kubectl" else "process"])


def build(root: Path, files: dict[str, bytes], overlays: list[str], jobs: int,
          store: cache.Cache | None = None, progress=None) -> tuple[Built, list[Diagnostic]]:
    """kustomize build of the given overlays over the rendered files, in a scratch copy (the repository is untouched).
    Overlays whose inputs and kustomize version match a cached build are not built again."""
    kustomize = tools.find("kustomize", root)
    if isinstance(kustomize, Diagnostic):
        return Built(), [kustomize]
    refused = handkept.check(root)  # links, special files, remote bases: nothing is built from such a bases/
    if refused:
        return Built(), refused
    store = store or cache.Cache(None)
    built = Built(tools={"kustomize": kustomize.version})
    diags: list[Diagnostic] = []
    plain = {o: directory_files(files, o) for o in overlays if is_directory_source(o)}
    # what Argo CD reads from a plain directory: its files' texts, one document each
    results: dict[str, str | Diagnostic] = {o: "---\n".join(files[rel].decode("utf-8") for rel in rels)
                                            for o, rels in plain.items()}
    rendered = files.objects if isinstance(files, Rendered) else {}
    for folder, rels in plain.items():  # their objects, when the renderer gave them all
        if rendered and all(rel in rendered for rel in rels):
            built.parsed[folder] = [rendered[rel] for rel in rels]
    keys = overlay_keys(root, files, [o for o in overlays if o not in results], kustomize)
    built.keys = keys
    for overlay, hit in zip(keys, store.read_many("build", keys.values(), text=True)):
        if store.folder is not None:
            store.count(hit is not None)
        if hit is not None:
            results[overlay] = hit
    todo = [o for o in overlays if o not in results]
    if todo:
        tick = progress(len(todo), "kustomize build") if progress else (lambda: None)
        batch = tools.find_batch() if kustomize.argv[0] != "kubectl" else None

        def run(at: Path, group: list[str]) -> dict[str, str | Diagnostic]:
            return (tools.kustomize_batch(batch, at, group, jobs, tick, built.parsed) if batch else
                    tools.kustomize_build(kustomize, at, group, jobs, tick))

        by_folder: dict[str, list[str]] = {}
        for rel in files:
            by_folder.setdefault(rel.rsplit("/", 1)[0], []).append(rel)
        # An overlay whose folder already holds exactly the rendered files (the usual case: render --check passes)
        # is built where it is (writer.same_folders); the others from a scratch copy of the rendered files.
        # The repository is not written.
        with writer.locked(root, exclusive=False):  # no render swaps the tree between the comparison and the build
            same = writer.same_folders(root, {o: by_folder.get(o, []) for o in todo}, files, jobs)
            in_place = [o for o in todo if o in same]
            results_now = run(root, in_place) if in_place else {}
        elsewhere = sorted(set(todo) - set(in_place))
        if elsewhere:
            with tempfile.TemporaryDirectory(prefix="kflowgen-build-") as tmp:
                scratch = Path(tmp)
                if (root / "bases").is_dir():
                    shutil.copytree(root / "bases", scratch / "bases", symlinks=False)
                for overlay in elsewhere:
                    (scratch / overlay).mkdir(parents=True)
                    for rel in by_folder.get(overlay, []):
                        (scratch / rel).write_bytes(files[rel])
                results_now.update(run(scratch, elsewhere))
        for overlay, result in results_now.items():
            results[overlay] = result
            if not isinstance(result, Diagnostic):
                store.put("build", keys[overlay], result.encode("utf-8"))
    for overlay in overlays:
        result = results[overlay]
        if isinstance(result, Diagnostic):
            diags.append(result)
        else:
            built.overlays[overlay] = result
            env = overlay.split("/")[1]
            built.objects[env] = built.objects.get(env, 0) + count_objects(result)
    built.rebuilt = len(todo)
    return built, diags


def directory_files(files: dict[str, bytes], folder: str) -> list[str]:
    """The files Argo CD reads from a plain directory source: every .yaml file in it (not below it), in name order."""
    prefix = folder + "/"
    return sorted(rel for rel in files
                  if rel.startswith(prefix) and "/" not in rel[len(prefix):] and rel.endswith(".yaml"))


_VISIBLE = re.compile(r"\S")


def count_objects(text: str) -> int:
    """Documents of a YAML stream that hold something (without splitting the text into a copy per document)."""
    text, n, at = "\n" + text, 0, 0
    while True:
        end = text.find("\n---\n", at)
        if _VISIBLE.search(text, at, len(text) if end < 0 else end):
            n += 1
        if end < 0:
            return n
        at = end + 5


def validate(root: Path, env: str | None = None, jobs: int | None = None, use_cache: bool = True,
             progress=None, server: bool = False) -> Report:
    """Everything the gate checks: specs, cross-file rules, build of every overlay, strict schema validation,
    policy. With the cache, only overlays whose inputs changed are built and checked again."""
    store = cache.Cache(cache.default_folder() if use_cache else None)
    done = checked(root, store, env, jobs or os.cpu_count() or 1, progress, server)
    if env is None:
        head_side(root, store, done)
    return done.report


@dataclass
class Checked:
    """What validate found, and what it made on the way (for the gate's diff, which compares the same head)."""

    report: Report
    model: Model | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    built: Built | None = None  # None unless every overlay built


def checked(root: Path, store: cache.Cache, env: str | None, jobs: int, progress=None, server: bool = False,
            drift: bool = False) -> Checked:
    """validate's work; with drift, also render --check's (the committed overlays are what the specs render)."""
    report = Report()
    server_lines: list[str] = []
    started = writer.survey(root, git=drift)  # overlays/ is listed while the specs load
    model, diags = load(root, store, jobs, progress=progress)
    report.extend(diags)
    if model is None:
        writer.finish(started)
        return Checked(report)
    if env and env not in model.platform.environments:
        writer.finish(started)
        report.extend([error(PLATFORM, model.platform.source.at("/environments", key=True), "KF303",
                             f"environment '{env}' is not defined",
                             f"environments: {', '.join(model.platform.environments)}")])
        return Checked(report, model)
    report.extend(codeowners.check(root, model))
    files = render_cached(model, store, jobs, progress)
    # render --check's drift check; validate too refuses any file under overlays/ that the specs do not render
    plan, found = writer.check(root, files, jobs, started, compare=drift)
    report.extend(found)
    drift_lines = [drift_summary(files, plan)] if drift else []
    envs = [env] if env else list(model.platform.environments)
    report.extend(departures(root, model, files, envs))
    every = overlays_of(files)
    overlays = [o for e in envs for o in every if o.startswith(f"overlays/{e}/")]
    built, diags = build(root, files, overlays, jobs, store, progress)
    report.extend(diags)
    if not diags:
        # kubeconform (its own process, `jobs` threads) runs, on what the cache does not hold, while this process
        # checks the hub values and policy
        job = verify.manifests_job(root, model, built.overlays, jobs, cache.default_folder(), built.tools, store,
                                       built.parsed)
        with ThreadPoolExecutor(max_workers=1) as pool:
            schemas = pool.submit(job)
            others = verify.hub_values(root, model, files, envs)
            others += checked_policy(model, env, built.overlays, store, built.parsed)
            report.extend(schemas.result())
        report.extend(others)
        if server and not report.errors:  # a real kube-apiserver: admission, defaulting, names, CEL, strict fields
            from kflowgen.checks import server as apiserver

            crds = verify.crd_files(root, model.platform)  # an error here was reported by the schema check
            report.extend(apiserver.check(root, [c for c in crds if isinstance(c, Path)], built.overlays, jobs,
                                          summary=server_lines))
    if not report.errors:
        report.summary = summary(model, built, envs) + server_lines
    report.summary += drift_lines
    return Checked(report, model, files, None if diags else built)


def drift_summary(files: dict[str, bytes], plan: writer.Plan) -> str:
    return (f"{len(files)} generated files checked: "
            + ("up to date" if not plan.drift else
               f"{len(plan.added)} missing, {len(plan.changed)} different, {len(plan.removed)} extra"))


def gate(root: Path, base: str, jobs: int | None = None, use_cache: bool = True, progress=None):
    """The pull-request gate in one process: validate, render --check and diff --base, sharing the head's
    loaded specs, rendered files and builds (three commands would each load, render and build the head again).
    Returns (the validate and drift report, the diff against base, or None when the head does not build)."""
    from kflowgen.flow import diff

    jobs = jobs or os.cpu_count() or 1
    store = cache.Cache(cache.default_folder() if use_cache else None)
    done = checked(root, store, None, jobs, progress, drift=True)
    head = head_side(root, store, done, keep=False)
    if head is None:
        return done.report, None
    return done.report, diff.diff_git(root, base, jobs, store, head=head)


def head_side(root: Path, store: cache.Cache, done: Checked, keep: bool = True):
    """The working tree as one side of a diff, when every overlay built. With keep, it is kept in the cache when it
    is also free of errors, so that a pull request branching from this commit (validated on main) recalls it as its
    base instead of rebuilding it; a pull request's own gate does not keep its head (nothing branches from it)."""
    if done.built is None or done.model is None:
        return None
    from kflowgen.flow import diff

    side = diff.side(done.model, done.files, done.built.overlays)
    if keep and not done.report.errors:
        diff.remember(store, root, done.model, side, done.built.keys)
    return side


def checked_policy(model: Model, env: str | None, overlays: dict[str, str], store: cache.Cache,
                   parsed: dict[str, list] | None = None) -> list[Diagnostic]:
    """Policy rules on built objects; an overlay that passed with the same output and context is not checked again.
    Objects the builder already gave as JSON are not parsed from YAML."""
    ctx = policy.Context.from_model(model, env)
    fingerprint = cache.key(repr(ctx))  # hashed once: it names every team's namespaces
    # every rule reads the overlay's path (team, environment, who owns it) and the platform context; kflowgen's
    # whole code, not only policy/, decides the verdict (rules import quantities and registry matching)
    keys = {o: cache.key("policy", cache.code_digest(), fingerprint, o, cache.text_digest(text))
            for o, text in overlays.items()}
    passed = cache.Passes(store, "policy", cache.code_digest(), fingerprint)
    todo = {o: text for o, text in overlays.items() if not passed.has(keys[o])}
    objects = {o: parsed[o] for o in todo if parsed and o in parsed}
    objects.update(policy.parse({o: text for o, text in todo.items() if o not in objects}))
    found = policy.run(objects, ctx)
    failed = {d.path for d in found}
    for overlay in todo:
        if overlay not in failed:
            passed.add(keys[overlay])
    passed.save()
    return found


def departures(root: Path, model: Model, files: dict[str, bytes], envs: list[str]) -> list[Diagnostic]:
    """Teams whose committed namespace no spec renders any more: Argo CD keeps the Namespace and the NAS volume
    (Prune=false, Delete=false), so nothing is lost; say what a person must do to remove them on purpose."""
    out = []
    for env in envs:
        cluster = model.platform.environments[env].cluster
        for ns_file in sorted((root / "overlays" / env / "teams").glob("*/platform/namespace.yaml")):
            rel = ns_file.relative_to(root).as_posix()
            if rel not in files:
                team = ns_file.parts[-3]
                out.append(warning(rel, (1, 1), "KF505", f"team {team} leaves {env}: Argo CD keeps its Namespace "
                                   f"{team} and PersistentVolumeClaim nas (Prune=false, Delete=false)",
                                   "to delete them on purpose, back up the team NAS, then run: "
                                   f"kubectl --server {cluster} delete namespace {team}"))
    return out


def summary(model: Model, built: Built, envs: list[str]) -> list[str]:
    p = model.platform
    total = sum(built.objects.get(e, 0) for e in envs)
    tools_used = ", ".join(f"{k} {v}" for k, v in sorted(built.tools.items()))
    lines = [f"{len(model.teams)} teams, {len(envs)} environments, {total} objects built and validated "
             f"({tools_used}; Kubernetes {p.kubernetes_version})"]
    width = max(len(e) for e in envs)
    for e in envs:
        alloc = allocation(model, e)
        gpus = "  ".join(f"{g} {n}/{p.environments[e].gpu_capacity.get(g, 0)}" for g, n in alloc.items())
        lines.append(f"  {e:<{width}}  {len(model.teams_in(e))} teams  {built.objects.get(e, 0):>4} objects  "
                     f"GPU quota/capacity: {gpus}")
    return lines


def render_to_disk(root: Path, check_only: bool, jobs: int | None = None, use_cache: bool = True,
                   progress=None, edits: dict[str, bytes] | None = None) -> Report:
    """render and render --check. With edits ({spec path: bytes}, a change such as a promotion), the specs are read
    as edited, and the edited spec files are written with the overlays, or, on any finding, nothing is."""
    report = Report()
    jobs = jobs or os.cpu_count() or 1
    store = cache.Cache(cache.default_folder() if use_cache else None)
    model, diags = load(root, store, jobs, progress=progress, edits=edits)
    report.extend(diags)
    if model is None:
        return report
    files = render_cached(model, store, jobs, progress)
    if check_only:
        plan, found = writer.check(root, files, jobs)
        report.extend(found)
        report.summary = [drift_summary(files, plan)]
    else:
        plan, found = writer.write(root, files, jobs, edits)
        report.extend(found)
        if not found:
            report.summary = [f"{len(files)} generated files: {len(plan.added)} added, {len(plan.changed)} changed, "
                              f"{len(plan.removed)} removed, {len(plan.unchanged)} unchanged"]
    return report
