"""KF607: what a team overlay (`overlays/<env>/teams/<team>/...`) builds stays in the team's namespace: every
namespaced object is in it, and the only cluster-scoped object is the team's own Namespace in its platform overlay
(KF608 then checks where a Namespace may be; this rule does not repeat that)."""
from __future__ import annotations

from . import CLUSTER_SCOPED

CODE = "KF607"
TITLE = "object in a team overlay outside the team's namespace, or cluster-scoped"


def check(obj, ctx):
    if ctx.team is None:
        return
    namespace = ctx.team_namespaces.get(ctx.team, ctx.team)
    meta = obj.get("metadata") or {}
    kind = obj.get("kind")
    if kind in CLUSTER_SCOPED:
        if kind != "Namespace" or not ctx.platform_owned:
            yield "/kind", f"cluster-scoped {kind} in team {ctx.team}'s overlay", \
                "cluster-scoped objects belong to the platform overlays; a team may only create namespaced workloads"
        elif meta.get("name") != namespace:
            yield "/metadata/name", f"team {ctx.team}'s overlay creates Namespace '{meta.get('name')}', not '{namespace}'", \
                "a team's platform overlay creates only the team's own Namespace"
    elif meta.get("namespace") != namespace:
        yield "/metadata/namespace", f"is '{meta.get('namespace', '')}', not team {ctx.team}'s namespace '{namespace}'", \
            "every object of a team overlay is created in the team's namespace"
