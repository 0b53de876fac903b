"""KF612: RBAC bindings (from the renderer or from hand-kept bases/) grant no more than a team's own people need: none
binds `cluster-admin`, none names everyone (system:authenticated, system:unauthenticated, system:anonymous, all
service accounts, system:masters), and none names another team's service accounts. A RoleBinding of cluster-admin
to system:authenticated in bases/team would otherwise give every signed-in person admin in every team namespace."""
from __future__ import annotations

from . import ptr

CODE = "KF612"
TITLE = "RBAC binding to cluster-admin, to everyone, or to another team's service accounts"

EVERYONE = {("Group", "system:authenticated"), ("Group", "system:unauthenticated"), ("Group", "system:serviceaccounts"),
            ("Group", "system:masters"), ("User", "system:anonymous")}
BINDINGS = ("RoleBinding", "ClusterRoleBinding")


def _namespace_of(subject: dict, default: str | None) -> str | None:
    """The namespace a subject's service accounts live in, when it names service accounts."""
    kind, name = subject.get("kind"), str(subject.get("name", ""))
    if kind == "ServiceAccount":
        return subject.get("namespace") or default
    if kind == "Group" and name.startswith("system:serviceaccounts:"):
        return name.split(":", 2)[2]
    if kind == "User" and name.startswith("system:serviceaccount:"):
        return name.split(":")[2] if name.count(":") >= 3 else None
    return None


def check(obj, ctx):
    if obj.get("kind") not in BINDINGS:
        return
    meta = obj.get("metadata") or {}
    role = obj.get("roleRef") or {}
    if role.get("kind") == "ClusterRole" and role.get("name") == "cluster-admin":
        yield "/roleRef/name", "binds cluster-admin", "bind admin, edit or view (namespaced), or a Role of the namespace"
    teams = set(ctx.team_namespaces.values())
    own = meta.get("namespace")
    for i, subject in enumerate(obj.get("subjects") or []):
        subject = subject if isinstance(subject, dict) else {}
        who = (subject.get("kind"), subject.get("name"))
        if who in EVERYONE:
            yield ptr("subjects", i, "name"), f"names {who[1]}: everyone of that kind", \
                "name the team's owners and member groups only"
            continue
        ns = _namespace_of(subject, own)
        if ns is not None and ns != own and ns in teams:
            yield ptr("subjects", i), f"names service accounts of team namespace '{ns}'", \
                "bind only the namespace's own service accounts (and the hub's)"
