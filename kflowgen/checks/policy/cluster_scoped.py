"""KF608: outside the team overlays (KF607's), an environment's Argo CD folder holds only Applications and AppProjects
in Argo CD's namespace, its queueing folder only the Kueue kinds kflowgen renders there (ResourceFlavors, the Cohort,
ClusterQueues: cluster-scoped, with no namespace), and nothing else anywhere is cluster-scoped: a ClusterRoleBinding
or a webhook in a folder the root Application syncs would reach the whole cluster."""
from __future__ import annotations

from kflowgen.specs import layout
from kflowgen.checks.objects import CLUSTER_SCOPED

CODE = "KF608"
TITLE = ("object outside the team overlays that is not an Argo CD Application or AppProject or a Kueue flavor, Cohort "
         "or ClusterQueue of the queueing folder, or is cluster-scoped")


def check(obj, ctx):
    if ctx.team is not None:
        return
    group, kind = layout.group_kind(obj)
    if ctx.overlay.endswith("/argocd"):
        if (group, kind) not in layout.ARGOCD_KINDS:
            yield "/kind", f"{group + '/' if group else ''}{kind} in {ctx.overlay}", \
                "the Argo CD folders hold only Applications and AppProjects"
        elif (obj.get("metadata") or {}).get("namespace") != ctx.argocd_namespace:
            yield "/metadata/namespace", f"is '{(obj.get('metadata') or {}).get('namespace', '')}', not Argo CD's " \
                f"namespace '{ctx.argocd_namespace}'", "Applications and AppProjects live in Argo CD's namespace"
    elif ctx.overlay.endswith(f"/{layout.QUEUEING_PART}"):
        if (group, kind) not in layout.QUEUEING_KINDS:
            yield "/kind", f"{group + '/' if group else ''}{kind} in {ctx.overlay}", \
                "the queueing folders hold only Kueue ResourceFlavors, the Cohort and ClusterQueues"
        elif (obj.get("metadata") or {}).get("namespace"):
            yield "/metadata/namespace", f"{kind} is cluster-scoped: it has no namespace", "remove metadata.namespace"
    elif kind in CLUSTER_SCOPED:
        yield "/kind", f"cluster-scoped {kind} in {ctx.overlay}", \
            "the only cluster-scoped object kflowgen builds is each team's Namespace, in its platform overlay"
