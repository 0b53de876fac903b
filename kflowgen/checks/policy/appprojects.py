"""KF609: AppProjects are exact tenancy boundaries (reliability.md §1.3, Argo CD `IsGroupKindNamePermitted`).

Every destination namespace is one exact namespace (no glob `*?[]{}\\` nor `!` negation: Argo CD matches them with
gobwas/glob), of this environment (Argo CD's, the hub's or a team's), and Argo CD's own namespace is only ever a
project's sole destination (a project that can write there is admin-level). A team project `<env>-<team>`:
- has destinations exactly its team's namespace, none matching another team's under Go glob semantics;
- has `clusterResourceWhitelist: []` written out. Argo CD denies cluster-scoped kinds when this list is empty or
  omitted alike; we require it explicitly so the intent survives a serializer or a reader who assumes otherwise;
- has a non-empty `namespaceResourceWhitelist`: here an OMITTED list allows every namespaced kind (and `[]` denies
  all), so it must list kinds, with no wildcard and none of the platform-owned kinds a team must not change."""
from __future__ import annotations

from kflowgen.checks.policy import go_match

CODE = "KF609"
TITLE = "AppProject wider than the team or platform it is for"

GLOB = set("*?[]{}\\!")
PLATFORM_KINDS = ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding", "Role", "Namespace")


def check(obj, ctx):
    if obj.get("kind") != "AppProject":
        return
    spec, name = obj.get("spec") or {}, (obj.get("metadata") or {}).get("name", "")
    teams = ctx.team_namespaces
    team = ctx.team_of_project(name)
    dests = [(f"/spec/destinations/{i}/namespace", str((d or {}).get("namespace", ""))) for i, d in
             enumerate(spec.get("destinations") or [])]
    known = ctx.known_namespaces
    for at, ns in dests:
        if GLOB & set(ns):
            yield at, f"'{ns}' is a pattern, not one namespace", "list each namespace exactly"
        elif ns not in known:
            yield at, f"'{ns}' is not Argo CD's, the hub's or a team namespace of {ctx.env}", "remove the destination"
        elif ns == ctx.argocd_namespace and len(dests) > 1:
            yield at, f"Argo CD's namespace '{ns}' beside other destinations", \
                "only the bootstrap project may target Argo CD's namespace, and nothing else"
    if team is None:
        return
    own = teams[team]
    if not dests:
        yield "/spec/destinations", "no destination", f"set one destination: namespace {own}"
    for at, ns in dests:
        if GLOB & set(ns):  # reported above as a pattern; say whose namespaces it would reach
            for other, other_ns in sorted(teams.items()):
                if other != team and go_match(ns, other_ns):
                    yield at, f"'{ns}' matches team {other}'s namespace '{other_ns}'", f"target only {own}"
        elif ns != own:
            yield at, f"'{ns}' is not team {team}'s namespace '{own}'", f"a team project targets only {own}"
    if spec.get("clusterResourceWhitelist", None) != []:
        yield "/spec/clusterResourceWhitelist", "must be present and empty ([])", \
            "a team may create no cluster-scoped object: write clusterResourceWhitelist: []"
    kinds = spec.get("namespaceResourceWhitelist")
    if not kinds:
        yield "/spec/namespaceResourceWhitelist", "empty: the team could create nothing" if kinds == [] else \
            "missing: Argo CD then allows every namespaced kind", "list the workload kinds the team may create"
    for i, entry in enumerate(kinds or []):
        group, kind = str((entry or {}).get("group", "")), str((entry or {}).get("kind", ""))
        if GLOB & set(group + kind):
            yield f"/spec/namespaceResourceWhitelist/{i}", f"'{group}/{kind}' is a pattern", "list exact kinds"
        elif kind in PLATFORM_KINDS:
            yield f"/spec/namespaceResourceWhitelist/{i}/kind", f"{kind} is platform-owned", \
                "quota, limits, RBAC, network policy and namespaces belong to the platform project"
