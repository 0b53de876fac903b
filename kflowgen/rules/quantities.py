"""KF204: every cpu, memory and storage amount in a spec is parsed as a Kubernetes quantity: cpu in whole millicores
(Kubernetes refuses finer ones), and none of them zero. A pod that requests nothing escapes its team's quota
accounting (and a zero limit is no limit); a zero quota or volume holds nothing."""
from __future__ import annotations

from kflowgen.specs import hints, quantity
from kflowgen.diagnostics import error


def amounts(model, experiments=None, whole: bool = True, teams=None, served=None):
    """(spec, pointer, 'cpu', 'memory' or 'storage', value) of every amount in the specs (of these experiments, and
    with whole of every other spec: see rules.BY_TEAM; or of these team specs and served models: see local)."""
    for t in (model.teams if teams is None else teams) if whole else ():
        for i, p in enumerate(t.profiles):
            at = f"/notebook/profiles/{i}"
            yield t.source, f"{at}/cpu", "cpu", p.cpu
            yield t.source, f"{at}/memory", "memory", p.memory
            if t.source.has(f"{at}/guarantee/cpu"):
                yield t.source, f"{at}/guarantee/cpu", "cpu", p.cpu_guarantee
            if t.source.has(f"{at}/guarantee/memory"):
                yield t.source, f"{at}/guarantee/memory", "memory", p.memory_guarantee
        yield t.source, "/storage/size", "storage", t.storage_size
        for env, q in t.quota.items():
            yield t.source, f"/quota/{env}/cpu", "cpu", q.cpu
            yield t.source, f"/quota/{env}/memory", "memory", q.memory
            if t.source.has(f"/quota/{env}/storage"):
                yield t.source, f"/quota/{env}/storage", "storage", q.storage
    for e in model.experiments if experiments is None else experiments:
        yield e.source, "/resources/cpu", "cpu", e.cpu
        yield e.source, "/resources/memory", "memory", e.memory
    for m in (model.served if served is None else served) if whole else ():
        for env, s in m.environments.items():
            yield m.source, f"/environments/{env}/cpu", "cpu", s.cpu
            yield m.source, f"/environments/{env}/memory", "memory", s.memory


def check(model, experiments=None, whole: bool = True):
    return _judged(amounts(model, experiments, whole))


def local(model, teams: list, served: list):
    """What check finds in these team specs and served models (each amount is judged alone)."""
    return _judged(amounts(model, [], True, teams, served))


def _judged(found):
    for spec, pointer, what, value in found:
        try:
            amount = quantity.parse(value)
            if what == "cpu":
                quantity.cpu(value)
        except ValueError:
            if what == "cpu" and quantity.valid(value):
                yield error(spec.path, spec.at(pointer), "KF204", f"cpu {value} is finer than a thousandth of a core",
                            "use whole millicores, e.g. 100m or 0.1")
            elif what != "cpu" and (meant := hints.quantity(value)) and quantity.valid(meant):
                yield error(spec.path, spec.at(pointer), "KF204", f"{what} {value!r} is not a quantity; did you mean "
                            f"'{meant}'?", f"write {meant}")
            else:
                yield error(spec.path, spec.at(pointer), "KF204", f"{what} {value!r} is not a quantity",
                            "write e.g. 500m or 2 for cpu, 16Gi for memory and storage")
            continue
        if amount == 0:
            meaning = ("a pod asking for no " + what + " escapes the team's quota, and a zero limit is no limit"
                       if "/quota/" not in pointer and pointer != "/storage/size" else "it holds nothing")
            yield error(spec.path, spec.at(pointer), "KF204", f"{what} {value!r} is zero: {meaning}",
                        f"give an amount above zero{', or leave the environment out' if '/quota/' in pointer else ''}")

