"""The pipeline: load -> validate -> model -> render -> write/check -> build -> verify -> report."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import cache, policy, rules, specschema, tools, verify, writer
from .diagnostics import Diagnostic, Report, error, warning
from .loader import SpecFile, load_file
from .model import Model, platform_from, team_from
from .render import render
from .experiments import EXPERIMENTS, experiment_from
from .serving import MODELS, served_model_from
from .rules.capacity import allocation

PLATFORM = "specs/platform.yaml"
TEAMS = "specs/teams"


def _spec_paths(root: Path, folder: str, nested: bool = False) -> list[str]:
    """Spec files in a folder (and below it when nested: a misplaced file is then reported, not ignored)."""
    base = root / folder
    if not base.is_dir():
        return []
    found = base.rglob("*") if nested else base.iterdir()
    return sorted(p.relative_to(root).as_posix() for p in found if p.suffix in (".yaml", ".yml"))


def _inside(root: Path, rel: str) -> bool:
    try:
        return (root / rel).resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop (RuntimeError on Python 3.11) is refused like a link outside
        return False


def _read(root: Path, rel: str, kind: str, diags: list[Diagnostic]) -> SpecFile | None:
    if not _inside(root, rel):
        diags.append(error(rel, (1, 1), "KF312", "spec file is a link that leaves the repository or loops",
                           "replace the link with the file itself"))
        return None
    spec, found = load_file(root, rel)
    diags.extend(found)
    if spec is None:
        return None
    found = specschema.validate(kind, spec)
    diags.extend(found)
    return None if found else spec


def load(root: Path) -> tuple[Model | None, list[Diagnostic]]:
    """Read and check every spec; the model is returned only when there is no error."""
    diags: list[Diagnostic] = []
    if not (root / PLATFORM).is_file():
        return None, [error(PLATFORM, (1, 1), "KF101", "platform file not found",
                            "run kflowgen in the repository root, or create one with `kflowgen init`")]
    pspec = _read(root, PLATFORM, "platform", diags)
    team_paths = _spec_paths(root, TEAMS)
    team_specs = [s for rel in team_paths if (s := _read(root, rel, "team", diags))]
    read = {s.path for s in team_specs}
    model_specs = [s for rel in _spec_paths(root, MODELS, True) if (s := _read(root, rel, "model", diags))]
    exp_specs = [s for rel in _spec_paths(root, EXPERIMENTS, True) if (s := _read(root, rel, "experiment", diags))]
    if pspec is None:
        return None, diags
    platform = platform_from(pspec)
    model = Model(platform, sorted((team_from(s, list(platform.environments)) for s in team_specs),
                                   key=lambda t: (t.name, t.source.path)),
                  sorted((served_model_from(s) for s in model_specs), key=lambda m: (m.team, m.name, m.source.path)),
                  sorted((experiment_from(s) for s in exp_specs), key=lambda e: (e.team, e.name, e.source.path)),
                  unreadable={Path(rel).stem for rel in team_paths if rel not in read})
    diags.extend(rules.run(model))
    return (None if any(d.severity == "error" for d in diags) else model), diags


@dataclass
class Built:
    """Built manifests per overlay, and per-environment object counts."""

    overlays: dict[str, str] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    rebuilt: int = 0  # overlays built by kustomize in this run (the rest came from the cache)


def overlays_of(files: dict[str, bytes], env: str | None = None, team: str | None = None) -> list[str]:
    out = sorted(p.rsplit("/", 1)[0] for p in files if p.endswith("/kustomization.yaml"))
    if env:
        out = [o for o in out if o.startswith(f"overlays/{env}/")]
    if team:
        out = [o for o in out if o.startswith(f"overlays/{env}/teams/{team}/")]
    return out


def overlay_keys(root: Path, files: dict[str, bytes], overlays: list[str], tool: tools.Tool) -> dict[str, str]:
    """A cache key per overlay: its files, the hand-kept bases it may reference, and the kustomize version.
    A change to any base changes the key of every overlay that uses bases/ (all are rebuilt)."""
    bases = cache.tree_digest(root / "bases")
    batch = tools.find_batch()
    builder = tools.command_version([str(batch), "-version"]) if batch and tool.argv[0] != "kubectl" else "process"
    by_overlay: dict[str, list[str]] = {o: [] for o in overlays}
    for rel in files:
        folder = rel.rsplit("/", 1)[0]
        if folder in by_overlay:
            by_overlay[folder].append(rel)
    out = {}
    for overlay, rels in by_overlay.items():
        parts: list = [tool.version, tool.argv[0] if tool.argv[0] == "kubectl" else "kustomize", builder]
        for rel in sorted(rels):
            parts += [rel, files[rel]]
        if any(b"bases/" in files[rel] for rel in rels):
            parts.append(bases)
        out[overlay] = cache.key(*parts)
    return out


def build(root: Path, files: dict[str, bytes], overlays: list[str], jobs: int,
          store: cache.Cache | None = None, progress=None) -> tuple[Built, list[Diagnostic]]:
    """kustomize build of the given overlays over the rendered files, in a scratch copy (the repository is untouched).
    Overlays whose inputs and kustomize version match a cached build are not built again."""
    kustomize = tools.find("kustomize", root)
    if isinstance(kustomize, Diagnostic):
        return Built(), [kustomize]
    store = store or cache.Cache(None)
    built = Built(tools={"kustomize": kustomize.version})
    diags: list[Diagnostic] = []
    keys = overlay_keys(root, files, overlays, kustomize)
    results: dict[str, str | Diagnostic] = {}
    for overlay in overlays:
        hit = store.get("build", keys[overlay])
        if hit is not None:
            results[overlay] = hit.decode("utf-8")
    todo = [o for o in overlays if o not in results]
    if todo:
        with tempfile.TemporaryDirectory(prefix="kflowgen-build-") as tmp:
            scratch = Path(tmp)
            if (root / "bases").is_dir():
                shutil.copytree(root / "bases", scratch / "bases", symlinks=False)
            wanted = tuple(o + "/" for o in todo)
            for rel, data in files.items():
                if rel.startswith(wanted):
                    (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                    (scratch / rel).write_bytes(data)
            tick = progress(len(todo)) if progress else (lambda: None)
            batch = tools.find_batch() if kustomize.argv[0] != "kubectl" else None
            results_now = (tools.kustomize_batch(batch, scratch, todo, jobs, tick) if batch else
                           tools.kustomize_build(kustomize, scratch, todo, jobs, tick))
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


def count_objects(text: str) -> int:
    return sum(1 for doc in ("\n" + text).split("\n---\n") if doc.strip())


def validate(root: Path, env: str | None = None, jobs: int | None = None, use_cache: bool = True,
             progress=None, server: bool = False) -> Report:
    """Everything the gate checks: specs, cross-file rules, build of every overlay, strict schema validation,
    policy. With the cache, only overlays whose inputs changed are built and checked again."""
    report = Report()
    jobs = jobs or os.cpu_count() or 1
    store = cache.Cache(cache.default_folder() if use_cache else None)
    server_lines: list[str] = []
    model, diags = load(root)
    report.extend(diags)
    if model is None:
        return report
    if env and env not in model.platform.environments:
        report.extend([error(PLATFORM, model.platform.source.at("/environments", key=True), "KF303",
                             f"environment '{env}' is not defined",
                             f"environments: {', '.join(model.platform.environments)}")])
        return report
    files = render(model)
    envs = [env] if env else list(model.platform.environments)
    report.extend(departures(root, model, files, envs))
    overlays = [o for e in envs for o in overlays_of(files, e)]
    built, diags = build(root, files, overlays, jobs, store, progress)
    report.extend(diags)
    if not diags:
        report.extend(verify.manifests(root, model, built.overlays, jobs, cache.default_folder(), built.tools, store))
        report.extend(verify.hub_values(root, model, files, envs))
        report.extend(checked_policy(model, env, built.overlays, store))
        if server and not report.errors:  # a real kube-apiserver: admission, defaulting, names, CEL, strict fields
            from . import server as apiserver

            report.extend(apiserver.check(root, list(model.platform.crds), built.overlays, jobs,
                                          summary=server_lines))
    if not report.errors:
        report.summary = summary(model, built, envs) + server_lines
    return report


def checked_policy(model: Model, env: str | None, overlays: dict[str, str], store: cache.Cache) -> list[Diagnostic]:
    """Policy rules on built objects; an overlay that passed with the same output and context is not parsed again."""
    ctx = policy.Context.from_model(model, env)
    fingerprint = repr(ctx)
    keys = {o: cache.key("policy", policy.VERSION, fingerprint, text) for o, text in overlays.items()}
    todo = {o: text for o, text in overlays.items() if store.get("policy", keys[o]) is None}
    found = policy.run(policy.parse(todo), ctx)
    failed = {d.path for d in found}
    for overlay in todo:
        if overlay not in failed:
            store.put("policy", keys[overlay], b"ok")
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


def render_to_disk(root: Path, check_only: bool) -> Report:
    report = Report()
    model, diags = load(root)
    report.extend(diags)
    if model is None:
        return report
    files = render(model)
    if check_only:
        plan, found = writer.check(root, files)
        report.extend(found)
        report.summary = [f"{len(files)} generated files checked: "
                          + ("up to date" if not plan.drift else
                             f"{len(plan.added)} missing, {len(plan.changed)} different, {len(plan.removed)} extra")]
    else:
        plan, found = writer.write(root, files)
        report.extend(found)
        report.summary = [f"{len(files)} generated files: {len(plan.added)} added, {len(plan.changed)} changed, "
                          f"{len(plan.removed)} removed, {len(plan.unchanged)} unchanged"]
    return report
