"""KF306: in each environment, the team quotas of each GPU type add up to at most the capacity."""
from __future__ import annotations

from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF306": "team quotas exceed the environment's GPU capacity",
}


def allocation(model, env: str) -> dict[str, int]:
    """GPUs promised to teams in an environment, by GPU type (types with capacity first, in platform order)."""
    out = {g: 0 for g in model.platform.environments[env].gpu_capacity}
    for t in model.teams_in(env):
        for gpu, n in t.quota[env].gpu.items():
            if gpu in model.platform.gpu_types:  # unknown types are reported by gpu-types-exist
                out[gpu] = out.get(gpu, 0) + n
    return out


def check(model):
    p = model.platform
    for env in p.environments.values():
        for gpu, used in allocation(model, env.name).items():
            cap = env.gpu_capacity.get(gpu, 0)
            if used > cap:
                teams = ", ".join(f"{t.name} {t.quota[env.name].gpu[gpu]}" for t in model.teams_in(env.name)
                                  if t.quota[env.name].gpu.get(gpu))
                pointer = f"/environments/{env.name}/capacity/gpu/{gpu}"
                yield error(p.source.path, p.source.at(pointer if gpu in env.gpu_capacity else
                                                       f"/environments/{env.name}/capacity/gpu"), "KF306",
                            f"{env.name}: teams are promised {used} {gpu} GPUs but the cluster has {cap} ({teams})",
                            "lower team quotas or raise the capacity")
