"""KF612: RBAC bindings (from the renderer or from hand-kept bases/, which reach every team namespace) grant no more
than a team's own people need. None binds `cluster-admin`; none names a `system:` user or group (everyone signed in,
everyone anonymous, all service accounts, nodes, masters), except the service accounts of the binding's own
namespace; none names a service account of another namespace than its own and the hub's; and none in a team's
namespace names another team's owners or member groups (a base binding `vision-ds` would make vision admin in every
team's namespace)."""
from __future__ import annotations

from kflowgen.checks.objects import ptr

CODE = "KF612"
TITLE = "RBAC binding to cluster-admin, to a system user or group, or to another team's people or service accounts"

BINDINGS = ("RoleBinding", "ClusterRoleBinding")


def _own_service_accounts(kind: str, name: str, namespace: str | None) -> bool:
    return (kind == "Group" and name == f"system:serviceaccounts:{namespace}") or (
        kind == "User" and name.startswith(f"system:serviceaccount:{namespace}:"))


def check(obj, ctx):
    if obj.get("kind") not in BINDINGS:
        return
    own = (obj.get("metadata") or {}).get("namespace")
    role = obj.get("roleRef") or {}
    if role.get("kind") == "ClusterRole" and role.get("name") == "cluster-admin":
        yield "/roleRef/name", "binds cluster-admin", "bind admin, edit or view (namespaced), or a Role of the namespace"
    for i, subject in enumerate(obj.get("subjects") or []):
        subject = subject if isinstance(subject, dict) else {}
        kind, name = subject.get("kind"), str(subject.get("name", ""))
        if kind in ("User", "Group") and name.startswith("system:"):
            if not _own_service_accounts(kind, name, own):
                yield ptr("subjects", i, "name"), f"names {name}", \
                    "name the team's owners and member groups, or the namespace's own service accounts"
        elif kind == "ServiceAccount" and (subject.get("namespace") or own) not in (own, ctx.hub_namespace):
            yield ptr("subjects", i), f"names a service account of namespace '{subject.get('namespace')}'", \
                "bind only the namespace's own service accounts (and the hub's)"
        elif ctx.team and (teams := ctx.teams_of(kind, name)) and ctx.team not in teams:
            yield ptr("subjects", i, "name"), f"names {kind.lower()} {name} of team {', '.join(sorted(teams))}", \
                f"bind only team {ctx.team}'s owners and member groups in its namespace"
