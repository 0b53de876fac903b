"""KF603: extended resources (any name with a `/`, e.g. nvidia.com/gpu) are not overcommitted: the limit equals
the request. A limit alone is fine (Kubernetes sets the request to it); a request without a limit is not."""
from __future__ import annotations

from kflowgen.specs import quantity
from kflowgen.checks.objects import all_containers, ptr

CODE = "KF603"
TITLE = "GPU or other extended resource whose limit differs from its request"


def _same(a, b) -> bool:
    try:
        return quantity.parse(a) == quantity.parse(b)
    except ValueError:
        return str(a) == str(b)


def check(obj, ctx):
    for at, c in all_containers(obj, ("initContainers", "containers")):
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for name in sorted(n for n in set(requests) | set(limits) if "/" in n):
            where = at + ptr("resources", "limits", name)
            hint = f"set resources.limits.{name} equal to resources.requests.{name}"
            if name not in limits:
                yield where, f"{name} is requested ({requests[name]}) but has no limit", hint
            elif name in requests and not _same(requests[name], limits[name]):
                yield where, f"{name} limit {limits[name]} differs from its request {requests[name]}", hint
