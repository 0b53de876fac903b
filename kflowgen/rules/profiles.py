"""KF305, KF308, KF309: notebook profiles are sane and fit the team's quota in every environment it has."""
from __future__ import annotations

from kflowgen.specs import quantity
from kflowgen.diagnostics import error
from kflowgen.rules.gpus import misspelt

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF305": "notebook profile does not fit the team's quota",
    "KF308": "more than one default notebook profile",
    "KF309": "guarantee larger than the limit",
}


def check(model):
    return local(model, model.teams, [])


def local(model, teams: list, served: list):
    """What check finds in these team specs (each team's profiles are checked against its own quota alone)."""
    for t in teams:
        defaults = [i for i, p in enumerate(t.profiles) if p.default]
        for i in defaults[1:]:
            yield error(t.source.path, t.source.at(f"/notebook/profiles/{i}/default"), "KF308",
                        f"profile '{t.profiles[i].name}' is a second default profile",
                        f"keep default: true on '{t.profiles[defaults[0]].name}' only")
        for i, p in enumerate(t.profiles):
            at = f"/notebook/profiles/{i}"
            for what, limit, guarantee in (("cpu", p.cpu, p.cpu_guarantee), ("memory", p.memory, p.memory_guarantee)):
                if quantity.parse(guarantee) > quantity.parse(limit):
                    yield error(t.source.path, t.source.at(f"{at}/guarantee/{what}"), "KF309",
                                f"profile '{p.name}' guarantees {what} {guarantee}, more than its limit {limit}",
                                f"lower the guarantee or raise {what}")
            for env, q in t.quota.items():
                if env not in model.platform.environments:
                    continue  # KF303 says so
                if p.gpu_type in model.platform.gpu_types and q.gpu.get(p.gpu_type, 0) < p.gpu_count \
                        and not misspelt(model, q.gpu, p.gpu_type):
                    yield error(t.source.path, t.source.at(f"{at}/gpu/count"), "KF305",
                                f"profile '{p.name}' needs {p.gpu_count} {p.gpu_type} GPU(s) but the team's {env} "
                                f"quota allows {q.gpu.get(p.gpu_type, 0)}",
                                f"raise quota.{env}.gpu.{p.gpu_type} or lower the profile's GPU count")
                for what, need, have in (("cpu", p.cpu_guarantee, q.cpu), ("memory", p.memory_guarantee, q.memory)):
                    if quantity.parse(need) > quantity.parse(have):
                        where = f"{at}/guarantee/{what}"
                        yield error(t.source.path, t.source.at(where if t.source.has(where) else f"{at}/{what}"),
                                    "KF305",
                                    f"profile '{p.name}' reserves {what} {need} but the team's {env} quota is {have}",
                                    f"raise quota.{env}.{what} or lower the profile")
