"""KF301, KF302: a team's name matches its file name, is unique, and is not a system namespace or platform name."""
from __future__ import annotations

from ..diagnostics import error

SYSTEM = ("default", "kube-system", "kube-public", "kube-node-lease")


def _stem(team) -> str:
    return team.source.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def check(model):
    p = model.platform
    # platform and bootstrap name the platform's own Argo CD projects (<env>-platform, <env>-bootstrap)
    reserved = set(SYSTEM) | {p.argocd_namespace, p.hub_namespace, "platform", "bootstrap"}
    owner = {t.name: t.source.path for t in sorted(model.teams, key=lambda t: (_stem(t) != t.name, t.source.path))}
    for t in model.teams:
        stem = _stem(t)
        if owner[t.name] != t.source.path:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is already defined in {owner[t.name]}",
                        f"give each team one spec file; if this is a new team, rename it to '{stem}'")
        elif stem != t.name:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is in a file named '{stem}'",
                        f"rename the file to {t.name}.yaml or the team to '{stem}'")
        if t.name in reserved or t.name.startswith("kube-"):
            yield error(t.source.path, t.source.at("/name"), "KF302",
                        f"team name '{t.name}' is a system or platform namespace", "choose another team name")
