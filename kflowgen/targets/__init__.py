"""The targets: pure functions from the model to the generated files, {repo-relative path: bytes}. One module per
thing rendered (argocd, jupyterhub, team, training, serving, queueing); render() is the union of units, one per
environment and team, each a function of the spec files unit_sources names (what the result cache keys them on)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kflowgen.specs import layout
from kflowgen.specs.model import Deferred, Model, Platform, Team
from kflowgen.targets import argocd, jupyterhub, queueing, team
from kflowgen.targets.common import sources
from kflowgen.targets.emit import document, header


@dataclass(frozen=True)
class Unit:
    """One unit's files, and the object of each file of a plain directory of manifests (overlays/<env>/argocd and
    overlays/<env>/queueing), by path: what the file reads as, so that nothing has to parse it again."""

    files: dict[str, bytes]
    objects: dict[str, dict]
    parts: dict[tuple[str, str], dict[str, bytes]] | None = None  # a team unit's: each experiment's files, by the
    # path and sha256 of its spec file (team.workloads_overlay)


def render(model: Model) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for env, name in units(model):
        files.update(unit(model, env, name).files)
    return dict(sorted(files.items()))


def units(model: Model) -> list[tuple[str, str]]:
    """The (environment, team) pieces render() is the union of; team "" is what the environment's teams share."""
    return [(env, name) for env in model.platform.environments for name in ["", *(t.name for t in model.teams_in(env))]]


def unit(model: Model, env: str, name: str, known: dict | None = None) -> Unit:
    """One unit, rendered from exactly the inputs unit_sources names (known: experiments' files rendered before with
    the same platform and team files, see team.workloads_overlay)."""
    kind, args, _ = _unit(model, env, name)
    return shared_unit(*args()) if kind == "shared" else team_unit(*args(), known)


def unit_sources(model: Model, env: str, name: str) -> list:
    """The spec files a unit's files are a function of (with kflowgen's code): what the result cache keys them on."""
    return _unit(model, env, name)[2]


def _unit(model: Model, env: str, name: str) -> tuple[str, Callable[[], tuple], list]:
    """A unit's renderer, its arguments (made when called: the objects of experiments and models are made only for
    units that are rendered), and the spec files those arguments are made from: one place, so the cache key can
    name no fewer inputs than the renderer reads."""
    p = model.platform
    if not name:
        teams = model.teams_in(env)
        return "shared", lambda: (p, teams, env), [p.source] + [t.source for t in teams]
    t = model.team(env, name)
    served, experiments = model.members(name, env)
    return ("team", lambda: (p, t, [model.served[i] for i in served], _picked(model.experiments, experiments), env),
            [p.source, t.source] + [_source(model.served, i) for i in served]
            + [_source(model.experiments, i) for i in experiments])


def _source(seq, i: int):
    return seq.specs[i] if isinstance(seq, Deferred) else seq[i].source


def _picked(seq, positions: list[int]):
    """The objects at these positions, in model order; of a Deferred, made when first asked for (once for both)."""
    if not isinstance(seq, Deferred):
        return [seq[i] for i in positions]
    at = {id(seq.specs[i]): i for i in positions}
    return Deferred([seq.specs[i] for i in positions], lambda spec: seq[at[id(spec)]])


def shared_unit(p: Platform, teams: list[Team], env: str) -> Unit:
    """What all teams of an environment share, from exactly these inputs: the JupyterHub values, the Argo CD
    bootstrap and, where Kueue queues training, the flavors and the Cohort."""
    docs = {**argocd.shared(p, teams, env), **queueing.shared(p, env)}
    files = {layout.hub_values(env): jupyterhub.values_file(header(sources(p, teams)), p, teams)}
    files.update((path, document(obj, src)) for path, (obj, src) in docs.items())
    return Unit(files, {path: obj for path, (obj, _) in docs.items()})


def team_unit(p: Platform, t: Team, served: list, experiments, env: str, known: dict | None = None) -> Unit:
    """Everything one team adds to an environment, from exactly these inputs (the result cache keys on their spec
    files): its platform overlay, its workloads overlay, its Argo CD project and Applications, and its ClusterQueue
    where Kueue queues training. known: see team.workloads_overlay."""
    docs = {**argocd.team(p, t, env), **queueing.team(p, t, env, served)}
    files = team.platform_overlay(p, t, env, served)
    files.update((path, document(obj, src)) for path, (obj, src) in docs.items())
    objects = {path: obj for path, (obj, _) in docs.items()}
    work, work_objects, parts = team.workloads_overlay(p, t, served, experiments, env, known)
    files.update(work)
    objects.update(work_objects)
    return Unit(files, objects, parts)
