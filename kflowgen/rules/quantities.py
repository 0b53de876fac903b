"""KF204: every cpu amount in a spec is whole millicores (Kubernetes refuses finer ones)."""
from __future__ import annotations

from .. import quantity
from ..diagnostics import error


def _cpu(spec, pointer: str, value):
    try:
        quantity.cpu(value)
    except ValueError:
        yield error(spec.path, spec.at(pointer), "KF204", f"cpu {value} is finer than a thousandth of a core",
                    "use whole millicores, e.g. 100m or 0.1")


def check(model):
    for t in model.teams:
        for env, q in t.quota.items():
            yield from _cpu(t.source, f"/quota/{env}/cpu", q.cpu)
    for e in model.experiments:
        yield from _cpu(e.source, "/resources/cpu", e.cpu)
    for m in model.served:
        for env, s in m.environments.items():
            yield from _cpu(m.source, f"/environments/{env}/cpu", s.cpu)
