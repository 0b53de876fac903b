"""KF608: cluster-scoped objects come only from platform-owned overlays (`.../platform`, `.../argocd`), and a
Namespace only from a `.../platform` overlay. Team overlays are KF607's, which is stricter there."""
from __future__ import annotations

from . import CLUSTER_SCOPED

CODE = "KF608"
TITLE = "cluster-scoped object outside the platform overlays"


def check(obj, ctx):
    kind = obj.get("kind")
    if ctx.team is not None or kind not in CLUSTER_SCOPED:
        return
    if not ctx.platform_owned:
        yield "/kind", f"cluster-scoped {kind} in {ctx.overlay}, which is not a platform overlay", \
            "create cluster-scoped objects only in a platform-owned overlay (.../platform or .../argocd)"
    elif kind == "Namespace" and not ctx.overlay.endswith("/platform"):
        yield "/kind", f"Namespace in {ctx.overlay}", "create Namespaces only in a .../platform overlay"
