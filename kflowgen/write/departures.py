"""Teams that leave an environment: their committed namespace is no longer rendered. Argo CD keeps the Namespace and
the NAS volume (Prune=false, Delete=false), so nothing is lost, and the namespace's quota, network policy, access
and training Jobs (Delete=false: fenced, and the team can back its NAS up); a warning says what a person must do to
remove them on purpose. Before that, a team being offboarded (`offboarding: true`, step 1) only reads: a warning says
so, and what step 2 is."""
from __future__ import annotations

import os
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, warning
from kflowgen.specs.model import Model

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF505": "a removed team's namespace and data stay on the cluster until a person deletes them",
    "KF506": "a team is being offboarded: read-only until its NAS is backed up, then removed on purpose",
}


def departures(root: Path, model: Model, files: dict[str, bytes], envs: list[str],
               committed: list[str] | None = None) -> list[Diagnostic]:
    """Teams whose committed namespace no spec renders any more: Argo CD keeps the Namespace and the NAS volume
    (Prune=false, Delete=false), so nothing is lost; say what a person must do to remove them on purpose.
    `committed`: the namespace files of another tree (the gate's base, where the pull request has already
    rendered the team away); by default those on disk."""
    out = []
    if committed is None:
        committed = [rel for env in envs for rel in _unrendered_namespaces(root, env, files)]
    for env in envs:
        cluster = model.platform.environments[env].cluster
        for rel in sorted(r for r in committed if r.startswith(f"overlays/{env}/teams/")
                          and r.endswith("/platform/namespace.yaml") and r.count("/") == 5):
            if rel not in files:
                team = rel.split("/")[3]
                out.append(warning(rel, (1, 1), "KF505", f"team {team} leaves {env}: Argo CD keeps its Namespace "
                                   f"{team} and PersistentVolumeClaim nas (Prune=false, Delete=false), and its "
                                   "quota, network policy, access and training Jobs (Delete=false)",
                                   "to delete them on purpose, back up the team NAS, then run: "
                                   f"kubectl --server {cluster} delete namespace {team}"))
    return out


def _unrendered_namespaces(root: Path, env: str, files: dict[str, bytes]) -> list[str]:
    """The overlays/<env>/teams/*/platform/namespace.yaml on disk (links followed, as Path.glob finds them) that are
    not among the rendered files: one listing of the teams folder, and a look only at the folders of teams that are
    not rendered (a rendered namespace is not a departure, whatever is on disk)."""
    teams = f"overlays/{env}/teams"
    try:
        names = os.listdir(os.path.join(root, teams))
    except OSError:
        return []
    found = (f"{teams}/{name}/platform/namespace.yaml" for name in names)
    return [rel for rel in found if rel not in files and os.path.exists(os.path.join(root, rel))]


def offboarding(model: Model, envs: list[str]) -> list[Diagnostic]:
    """Teams in step 1 of leaving (`offboarding: true`): say what they can still do and what step 2 is."""
    out = []
    for t in model.teams:
        where = [env for env in envs if env in t.quota and env in model.platform.environments]
        if t.offboarding and where:
            delete = "; ".join(f"kubectl --server {model.platform.environments[env].cluster} delete namespace "
                               f"{t.namespace}" for env in where)
            out.append(warning(t.source.path, t.source.at("/offboarding", key=True), "KF506",
                               f"team {t.name} is being offboarded (step 1 of 2): in {', '.join(where)} its owners "
                               "and members only read (ClusterRole view) and its notebooks mount the NAS read-only, "
                               "so the NAS can be backed up",
                               f"step 2, once the NAS is backed up: remove {t.source.path} with the team's "
                               f"experiments and models, then run: {delete}"))
    return out
