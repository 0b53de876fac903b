"""What the policies know besides the object: the platform's settings, the teams of each environment and their
people, and the overlay being checked."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property

from kflowgen.specs import layout
from kflowgen.targets.team import egress_rules


@dataclass(frozen=True)
class Context:
    """What the policies know besides the object: platform settings, teams per environment, and the overlay
    being checked (set by run())."""

    registries: tuple[str, ...]
    teams: dict[str, dict[str, str]]  # environment -> {team: namespace}
    argocd_namespace: str = "argocd"
    hub_namespace: str = "jupyterhub"
    overlay: str = field(default="")
    # environment -> {("User", owner) or ("Group", member group): the teams that name it}
    people: dict[str, dict[tuple[str, str], frozenset[str]]] = field(default_factory=dict)
    egress: dict[str, tuple] = field(default_factory=dict)  # environment -> the platform's egress rules, rendered
    team_kinds: tuple[tuple[str, str], ...] = ()  # what a workloads overlay may hold (default layout.TEAM_KINDS)
    ingress_class: str | None = None  # the platform's IngressClass for exposed models
    domains: dict[str, str] = field(default_factory=dict)  # environment -> domain of exposed models
    queueing: frozenset[str] = frozenset()  # environments where Kueue queues training
    runtimes: frozenset[str] = frozenset()  # the platform's Kubeflow Trainer runtimes (ClusterTrainingRuntime names)
    kserve: dict[str, str] = field(default_factory=dict)  # environment where KServe serves models -> its runtime

    @classmethod
    def from_model(cls, model, env: str | None = None) -> Context:
        p = model.platform
        envs = [env] if env else list(p.environments)
        people: dict[str, dict[tuple[str, str], frozenset[str]]] = {}
        for e in envs:
            named: dict[tuple[str, str], set[str]] = {}
            for t in model.teams_in(e):
                for who in [("User", o) for o in t.owners] + [("Group", g) for g, _ in t.members]:
                    named.setdefault(who, set()).add(t.name)
            people[e] = {who: frozenset(teams) for who, teams in sorted(named.items())}
        return cls(tuple(p.registries), {e: {t.name: t.namespace for t in model.teams_in(e)} for e in envs},
                   p.argocd_namespace, p.hub_namespace, people=people,
                   egress={e: tuple(json.dumps(r, sort_keys=True) for r in egress_rules(p, e)) for e in envs},
                   team_kinds=layout.team_kinds(p), ingress_class=p.ingress.class_name if p.ingress else None,
                   domains={e: p.environments[e].domain for e in envs if p.environments[e].domain},
                   queueing=frozenset(e for e in envs if p.queueing_in(e)),
                   runtimes=frozenset(p.distributed.runtimes.values()) if p.trainer else frozenset(),
                   kserve={e: p.kserve_in(e).runtime for e in envs if p.kserve_in(e)})

    @property
    def workload_kinds(self) -> tuple[tuple[str, str], ...]:
        """What the overlay's team workloads may hold: the team kinds, and InferenceService where KServe serves."""
        return (self.team_kinds or layout.TEAM_KINDS) + ((layout.INFERENCE_SERVICE,) if self.env in self.kserve else ())

    @property
    def queues(self) -> bool:
        """Kueue queues training in the overlay's environment."""
        return self.env in self.queueing

    def teams_of(self, kind: str, name: str) -> frozenset[str]:
        """The teams of the overlay's environment that name this user (as an owner) or group (as a member group)."""
        return self.people.get(self.env, {}).get((kind, name), frozenset())

    def at(self, overlay: str) -> Context:
        return replace(self, overlay=overlay)

    @cached_property
    def env(self) -> str:
        place = layout.place(self.overlay)
        return place.env if place else ""

    @cached_property
    def team(self) -> str | None:
        """The team of a team overlay (`overlays/<env>/teams/<team>/...`), else None."""
        place = layout.place(self.overlay)
        return place.team if place else None

    @property
    def platform_owned(self) -> bool:
        return self.overlay.endswith(("/platform", "/argocd"))

    @property
    def team_owned(self) -> bool:
        return self.overlay.endswith("/workloads")

    @cached_property
    def team_namespaces(self) -> dict[str, str]:
        """{team: namespace} of the overlay's environment."""
        return self.teams.get(self.env, {})

    @cached_property
    def known_namespaces(self) -> frozenset[str]:
        """Argo CD's, the hub's and every team's namespace in the overlay's environment."""
        return frozenset({self.argocd_namespace, self.hub_namespace, *self.team_namespaces.values()})

    def team_of_project(self, project: str) -> str | None:
        """The team whose AppProject in this environment is named `project` (`<env>-<team>`), else None."""
        team = project.removeprefix(f"{self.env}-") if project.startswith(f"{self.env}-") else None
        return team if team in self.team_namespaces else None
