"""KF608: outside the team overlays (whose only cluster-scoped object is the team's own Namespace, KF607), nothing
cluster-scoped is built: the Argo CD folders hold Applications and AppProjects, which are namespaced, and a
ClusterRoleBinding or a webhook there would reach the whole cluster."""
from __future__ import annotations

from . import CLUSTER_SCOPED

CODE = "KF608"
TITLE = "cluster-scoped object outside a team's platform overlay"


def check(obj, ctx):
    kind = obj.get("kind")
    if ctx.team is None and kind in CLUSTER_SCOPED:
        yield "/kind", f"cluster-scoped {kind} in {ctx.overlay}", \
            "the only cluster-scoped object kflowgen builds is each team's Namespace, in its platform overlay"
