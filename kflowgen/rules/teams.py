"""KF301, KF302: a team's name matches its file name, is unique, and is not a system namespace."""
from __future__ import annotations

from ..diagnostics import error

SYSTEM = ("default", "kube-system", "kube-public", "kube-node-lease")


def check(model):
    p = model.platform
    reserved = set(SYSTEM) | {p.argocd_namespace, p.hub_namespace}
    seen: dict[str, str] = {}
    for t in model.teams:
        stem = t.source.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem != t.name:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is in a file named '{stem}'",
                        f"rename the file to {t.name}.yaml or the team to '{stem}'")
        if t.name in seen:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is already defined in {seen[t.name]}", "give each team one spec file")
        seen.setdefault(t.name, t.source.path)
        if t.name in reserved or t.name.startswith("kube-"):
            yield error(t.source.path, t.source.at("/name"), "KF302",
                        f"team name '{t.name}' is a system or platform namespace", "choose another team name")
