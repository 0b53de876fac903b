"""KF609: AppProjects are exact tenancy boundaries (reliability.md §1.3, Argo CD `IsGroupKindNamePermitted`).

Every destination namespace is one exact namespace (no glob `*?[]{}\\` nor `!` negation: Argo CD matches them with
gobwas/glob), of this environment (Argo CD's, the hub's or a team's), and Argo CD's own namespace is only ever a
project's sole destination (a project that can write there is admin-level). A team project `<env>-<team>`:
- has destinations exactly its team's namespace, none matching another team's under Go glob semantics;
- has `clusterResourceWhitelist: []` written out. Argo CD denies cluster-scoped kinds when this list is empty or
  omitted alike; we require it explicitly so the intent survives a serializer or a reader who assumes otherwise;
- has a non-empty `namespaceResourceWhitelist`: here an OMITTED list allows every namespaced kind (and `[]` denies
  all), so it must list kinds, with no wildcard and none of the platform-owned kinds a team must not change (Kueue's
  queues among them: a team cannot make or edit a queue; nor KServe's serving runtimes, which choose the image and
  command of model servers; nor Kubeflow Trainer's runtimes: a runtime is the pod template of every TrainJob that
  names it).
The platform project `<env>-platform` may create only Namespaces and, where Kueue queues training, Kueue's
ResourceFlavors, Cohorts and ClusterQueues as cluster-scoped kinds; its one destination without a namespace (`""`,
for the queueing Application's cluster-scoped objects) exists only there."""
from __future__ import annotations

import re

from kflowgen.specs import layout

CODE = "KF609"
TITLE = "AppProject wider than the team or platform it is for"

GLOB = set("*?[]{}\\!")
PLATFORM_KINDS = ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding", "Role", "Namespace", "LocalQueue",
                  "ClusterQueue", "ResourceFlavor", "Cohort", "Workload", "ServingRuntime", "ClusterServingRuntime",
                  "TrainingRuntime", "ClusterTrainingRuntime")


def check(obj, ctx):
    if obj.get("kind") != "AppProject":
        return
    spec, name = obj.get("spec") or {}, (obj.get("metadata") or {}).get("name", "")
    teams = ctx.team_namespaces
    team = ctx.team_of_project(name)
    dests = [(f"/spec/destinations/{i}/namespace", str((d or {}).get("namespace", ""))) for i, d in
             enumerate(spec.get("destinations") or [])]
    known = ctx.known_namespaces
    platform = name == layout.project(ctx.env, "platform")
    if platform:
        yield from _platform_cluster_kinds(spec, ctx)
    for at, ns in dests:
        if ns == "" and platform and ctx.queues:
            continue  # the queueing Application's: cluster-scoped objects only (KF608 holds its folder to that)
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
                "quota, limits, RBAC, network policy, namespaces, serving and training runtimes belong to the platform " \
                "project"


def _platform_cluster_kinds(spec: dict, ctx):
    allowed = {("", "Namespace"), *(layout.QUEUEING_KINDS if ctx.queues else ())}
    for i, entry in enumerate(spec.get("clusterResourceWhitelist") or []):
        group, kind = str((entry or {}).get("group", "")), str((entry or {}).get("kind", ""))
        if (group, kind) not in allowed:
            yield f"/spec/clusterResourceWhitelist/{i}", f"'{group}/{kind}' is not a cluster-scoped kind the platform " \
                "creates", "the platform project creates only Namespaces (and Kueue's queues where queueing is on)"


# --- Argo CD's glob matching ---------------------------------------------------------------------------------

def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    """One character of a [class] in Go's filepath.Match: `\\c` is c; an unescaped `-` or `]` is malformed."""
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        return (pattern[i + 1], i + 2) if i + 1 < len(pattern) else (None, i)
    return pattern[i], i + 1


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match on '/'-separated names: `*`, `?`, `[a-z]`, `[^a-z]`, `\\c`. A malformed pattern
    matches nothing, as Argo CD treats the error (`ok && err == nil`)."""
    rx, i, n = [], 0, len(pattern)
    while i < n:
        c, i = pattern[i], i + 1
        if c in "*?":
            rx.append("[^/]*" if c == "*" else "[^/]")
        elif c == "\\":
            if i == n:
                return False
            rx.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            negate = i < n and pattern[i] == "^"
            i += negate
            items: list[str] = []
            while not (i < n and pattern[i] == "]" and items):
                lo, i = _class_char(pattern, i)
                hi = lo
                if lo is not None and i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                if lo is None or hi is None:
                    return False
                items.append(re.escape(lo) + ("-" + re.escape(hi) if hi > lo else "") if hi >= lo else "(?!)")
            i += 1
            ranges = [r for r in items if r != "(?!)"]
            rx.append(("[^%s]" if negate else "[%s]") % "".join(ranges) if ranges else ("[^/]" if negate else "(?!)"))
        else:
            rx.append(re.escape(c))
    return re.fullmatch("".join(rx), name, re.DOTALL) is not None
