"""KF610: Namespaces and PersistentVolumeClaims carry `argocd.argoproj.io/sync-options` with `Prune=false` and
`Delete=false` (in any order, among other options), so removing a team from the specs never deletes its data."""
from __future__ import annotations

from kflowgen.checks.objects import ptr

CODE = "KF610"
TITLE = "Namespace or PersistentVolumeClaim that Argo CD could prune or delete"

KEY = "argocd.argoproj.io/sync-options"
NEEDED = ("Prune=false", "Delete=false")


def check(obj, ctx):
    if obj.get("kind") not in ("Namespace", "PersistentVolumeClaim"):
        return
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(KEY)
    options = {o.strip() for o in str(value or "").split(",")}
    missing = [o for o in NEEDED if o not in options]
    if missing:
        yield ptr("metadata", "annotations", KEY), \
            f"{'is ' + repr(value) if value else 'missing'}: needs {' and '.join(missing)}", \
            f"annotate {KEY}: Prune=false,Delete=false so Argo CD never deletes it or its data"
