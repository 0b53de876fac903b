"""KF607: what a team overlay (`overlays/<env>/teams/<team>/...`) builds stays in the team's namespace and is of a
kind the overlay may hold: a workloads overlay only the kinds the team's AppProject allows (layout.TEAM_KINDS, and
InferenceService where KServe serves models), a
platform overlay only what kflowgen renders there and bases/team may add (layout.PLATFORM_KINDS: the team's own
Namespace, quota, limits, storage, service accounts, config, network policy and RBAC). A list of allowed kinds, not of
forbidden ones, so a kind kflowgen has never heard of (a new cluster-scoped kind, say) is refused too."""
from __future__ import annotations

from kflowgen.specs import layout

CODE = "KF607"
TITLE = "object in a team overlay outside the team's namespace, or of a kind the overlay may not hold"


def check(obj, ctx):
    if ctx.team is None:
        return
    namespace = ctx.team_namespaces.get(ctx.team, ctx.team)
    meta = obj.get("metadata") or {}
    kinds = layout.PLATFORM_KINDS if ctx.platform_owned else ctx.workload_kinds
    group, kind = layout.group_kind(obj)
    if (group, kind) not in kinds:
        yield "/kind", f"{group + '/' if group else ''}{kind} may not be in team {ctx.team}'s " \
            f"{'platform' if ctx.platform_owned else 'workloads'} overlay", \
            f"a {'platform' if ctx.platform_owned else 'workloads'} overlay holds only " + \
            ", ".join(k for _, k in kinds)
    elif kind == "Namespace":
        if meta.get("name") != namespace:
            yield "/metadata/name", f"team {ctx.team}'s overlay creates Namespace '{meta.get('name')}', not '{namespace}'", \
                "a team's platform overlay creates only the team's own Namespace"
    elif meta.get("namespace") != namespace:
        yield "/metadata/namespace", f"is '{meta.get('namespace', '')}', not team {ctx.team}'s namespace '{namespace}'", \
            "every object of a team overlay is created in the team's namespace"
