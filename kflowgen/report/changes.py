"""What a change to the specs does, in words a reviewer reads without YAML: the changes between the objects of two
built sides (quotas, served versions, images, Jobs, objects added, changed and removed), said by their cause where
the spec files that differ give one (a model promoted, added or no longer served; a sweep re-run because a field
changed; an experiment archived; a team leaving an environment), and the diff's formats."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from kflowgen.diagnostics import Diagnostic
from kflowgen.specs import quantity
from kflowgen.specs.layout import LABEL_EXPERIMENT, LABEL_MODEL, LABEL_VERSION, SYNC_OPTIONS
from kflowgen.report.causes import experiment, model_lines, offboarding_lines, plural as _plural
from kflowgen.specs.loader import SpecFile

KINDS = ("quota", "version", "image", "jobs", "added", "changed", "removed")
DANGEROUS = ("Namespace", "PersistentVolumeClaim", "AppProject")
DANGER_TITLE = "⚠ Read first: teams leaving, models no longer served, namespaces, volumes and projects removed"


@dataclass(frozen=True)
class Change:
    env: str
    team: str | None
    kind: str  # one of KINDS
    text: str  # one line, starting with "team, env: " (or "env: " for the environment as a whole)
    danger: bool = False  # read first: a team leaving an environment, a model that stops serving there

    @property
    def body(self) -> str:
        return self.text.split(": ", 1)[1]


@dataclass
class DiffReport:
    changes: list[Change] = field(default_factory=list)
    dangerous: list[Change] = field(default_factory=list)  # teams leaving, models no longer served, removals of
    # Namespaces, PVCs and AppProjects
    diagnostics: list[Diagnostic] = field(default_factory=list)  # spec errors at either side, tool failures

    @property
    def exit_code(self) -> int:
        return 1 if self.diagnostics else 0


def compare(base, head, specs: dict[str, tuple[SpecFile | None, SpecFile | None]] | None = None) -> DiffReport:
    """The changes from one built side to the other (each side with the objects and profiles where the two differ,
    its environments, quotas, sweeps and clusters): the dangerous ones apart, in environment, team and kind order.
    specs: {path: (base spec, head spec)} of the spec files that differ (experiments, models and teams parsed, the
    platform's None), which say why objects changed."""
    envs = list(dict.fromkeys(head.envs + base.envs))  # in the head's order, then those only the base has
    models = {k: Change(k[0], k[1], "version", _at(*k[:2]) + text, danger)
              for k, text, danger in model_lines(specs or {})}
    teams = {k: Change(k[0], k[1], "changed", _at(*k) + text, danger)
             for k, text, danger in offboarding_lines(specs or {})}
    changes = [*_quotas(base, head, envs), *_objects(base, head, specs or {}, models, teams), *models.values(),
               *teams.values(), *_profiles(base, head)]
    report = DiffReport(changes=sorted(changes, key=lambda c: (envs.index(c.env), c.team is not None, c.team or "",
                                                               KINDS.index(c.kind), c.text)))
    report.dangerous = [c for c in report.changes if c.danger or c.kind == "removed"
                        and c.body.split(" ", 1)[0] in DANGEROUS]
    return report


def _at(env: str, team: str | None) -> str:
    return f"{team}, {env}: " if team else f"{env}: "


def _arrow(old, new) -> str:
    return f"{old}" if old == new else f"{old} → {new}"


def _quotas(base, head, envs: list[str]):
    for env in envs:
        (cap0, alloc0, teams0), (cap1, alloc1, teams1) = (s.quotas.get(env, ({}, {}, {})) for s in (base, head))
        for g in sorted(set(cap0) | set(cap1)):
            if cap0.get(g, 0) != cap1.get(g, 0):
                yield Change(env, None, "quota", f"{_at(env, None)}GPU capacity {g} {cap0.get(g, 0)} → {cap1.get(g, 0)}")
        for team in sorted(set(teams0) | set(teams1)):
            q0, q1 = teams0.get(team), teams1.get(team)
            if q0 == q1:  # the same quota says nothing (most teams: the work is proportional to what changed)
                continue
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


def _objects(base, head, specs: dict, models: dict, teams: dict):
    """Objects added and removed (an experiment's Jobs by their cause, a model's objects left to its line in models,
    the RoleBindings of a team starting or ending its offboarding to its line in teams, a whole team in one line),
    then changed ones."""
    groups: dict[tuple, list] = {}
    jobs: dict[tuple, dict[str, list]] = {}
    sides = {"added": (head, base), "removed": (base, head)}
    for status, (here, there) in sides.items():
        for key in here.objects.keys() - there.objects.keys():
            team, obj = here.objects[key]
            labels = obj.get("metadata", {}).get("labels", {})
            exp = labels.get(LABEL_EXPERIMENT)
            if exp:
                jobs.setdefault((key[0], team, exp), {"added": [], "removed": []})[status].append(key)
            elif (key[0], team, labels.get(LABEL_MODEL)) not in models and not (
                    key[1] == "RoleBinding" and (key[0], team) in teams):
                groups.setdefault((key[0], team, status), []).append(key)
    experiments: dict[str, tuple] = {}  # team/name -> (base spec, head spec); a renamed one is two experiments
    for p, (old, new) in specs.items():
        if p.startswith("specs/experiments/") and (old or new):
            names = [s.data["team"] + "/" + s.data["name"] if s else None for s in (old, new)]
            if names[0] == names[1]:
                experiments[names[0]] = (old, new)
            else:
                experiments.update({n: pair for n, pair in zip(names, ((old, None), (None, new))) if n})
    for (env, team, exp), found in jobs.items():
        yield Change(env, team, "jobs", _at(env, team) + experiment(env, team, exp, found, experiments.get(
            f"{team}/{exp}"), base, head, specs))
    for (env, team, status), keys in groups.items():  # (sorted at the end, with every other change)
        where, here = _at(env, team), sides[status][0]
        if status == "removed" and (env, "Namespace", "", team) in keys:  # the team leaves: one line, read first
            cluster = base.clusters.get(env)
            yield Change(env, team, status, f"{where}{team} leaves {env}: Namespace {team} and its NAS "
                         "(PersistentVolumeClaim nas) stay in the cluster, and so do its quota, network policy, "
                         "access and Jobs (Argo CD: Prune=false, Delete=false); to delete them after backing up the "
                         f"NAS: kubectl{f' --server {cluster}' if cluster else ''} delete namespace {team}", True)
        else:
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
            yield from _changed(key, team, old, new, models)


def _changed(key, team: str | None, old: dict, new: dict, models: dict):
    """Which fields changed (two levels deep), and the container images and served model version among them; of a
    model whose line (models) says why, only the images."""
    env, where = key[0], _at(key[0], team)
    model = new.get("metadata", {}).get("labels", {}).get(LABEL_MODEL)
    explained = (env, team, model) in models
    fields = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if a != b:
            fields += ([f"{k}.{s}" for s in sorted(a.keys() | b.keys()) if a.get(s) != b.get(s)]
                       if isinstance(a, dict) and isinstance(b, dict) else [k])
    if not explained:
        yield Change(env, team, "changed", f"{where}{key[1]} {_ident(key)} changed ({', '.join(fields)})")
    templates = [o.get("spec", {}).get("template", {}) for o in (old, new)]
    pods = [t.get("spec", {}) for t in templates]
    images = [{c["name"]: c.get("image") for c in p.get("containers", []) + p.get("initContainers", [])} for p in pods]
    for name in sorted(images[0].keys() & images[1].keys()):
        if images[0][name] != images[1][name]:
            yield Change(env, team, "image", f"{where}{key[1]} {_ident(key)} container {name} image "
                         f"{_image_arrow(images[0][name], images[1][name])}")
    versions = [t.get("metadata", {}).get("labels", {}).get(LABEL_VERSION) for t in templates]
    if key[1] == "InferenceService":
        versions = [_served_versions(o) for o in (old, new)]
    if model and not explained and key[1] in ("Deployment", "InferenceService") and None not in versions \
            and versions[0] != versions[1]:
        yield Change(env, team, "version", f"{where}model {model} version {versions[0]} → {versions[1]}")


def _served_versions(isvc: dict) -> str | None:
    """What a KServe InferenceService serves, from its predictors' version labels: '6', or '6, canary 7 at 10%'."""
    spec = isvc.get("spec", {})
    stable = spec.get("predictor", {}).get("labels", {}).get(LABEL_VERSION)
    canaries = [f"canary {c.get('predictor', {}).get('labels', {}).get(LABEL_VERSION)} at {c.get('trafficPercent')}%"
                for c in spec.get("canary") or []]
    return ", ".join([stable, *canaries]) if stable else None


def _image_arrow(old: str, new: str) -> str:
    """'repo:1 → repo:2' is written 'repo 1 → 2'."""
    def split(image: str) -> tuple[str, str]:
        if "@" in image:
            return image.split("@", 1)[0], "@" + image.split("@", 1)[1]
        repo, _, tag = image.rpartition(":")
        return (repo, tag) if repo and "/" not in tag else (image, "")
    (r0, t0), (r1, t1) = split(old), split(new)
    return f"{r0} {t0 or 'latest'} → {t1 or 'latest'}" if r0 == r1 else f"{old} → {new}"


def _profiles(base, head):
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

def fenced(lines: list[str]) -> list[str]:
    """Lines as one fenced block, its fence longer than any run of backticks inside (CommonMark), so no text from a
    pull request can end it early and be read as markdown."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def plain(text: str) -> str:
    """One line of prose with markdown and HTML characters escaped (names and images come from specs), its line
    breaks shown as \\r and \\n: a value from a spec starts no line of its own (a forged ⚠ line, a heading)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return re.sub(r"([\\`*_{}\[\]<>#|@~])", r"\\\1", text)  # no link, image, HTML, mention or reference


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
    """For a pull request comment or $GITHUB_STEP_SUMMARY: a heading, the dangerous list, a section per environment;
    text from specs escaped (plain) and findings fenced (fenced), as in the gate's comment."""
    dangerous = set(r.dangerous)
    out = [f"## {plain(tally(r))}", ""]
    if r.diagnostics:
        out += [*fenced(_diagnostic_lines(r)), ""]
    if r.dangerous:
        out += [f"### {DANGER_TITLE}", ""]
        out += [f"- ⚠ {plain(c.text)}" for c in r.dangerous] + [""]
    for env in dict.fromkeys(c.env for c in r.changes):
        out += [f"### {plain(env)}", ""]
        for c in (c for c in r.changes if c.env == env):
            mark = "⚠ " if c in dangerous else ""
            out.append(f"- {mark}**{plain(c.team)}**: {plain(c.body)}" if c.team else f"- {mark}{plain(c.body)}")
        out.append("")
    return "\n".join(out)


def render_json(r: DiffReport) -> str:
    diags = [{"path": d.path, "line": d.line, "column": d.col, "severity": d.severity, "code": d.code,
              "message": d.message, "hint": d.hint} for d in r.diagnostics]
    def change(c: Change) -> dict:
        return {k: v for k, v in asdict(c).items() if k != "danger"}  # the dangerous list says which

    return json.dumps({"changes": [change(c) for c in r.changes], "dangerous": [change(c) for c in r.dangerous],
                       "diagnostics": diags}, indent=2, ensure_ascii=False) + "\n"
