"""KF306: in each environment, the team quotas of each GPU type add up to at most the capacity."""
from __future__ import annotations

from kflowgen.diagnostics import error
from kflowgen.rules.gpus import misspelt

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
    """Teams are counted in file-name order; the one whose quota takes the sum over the capacity is told, at that
    quota, how much is free (a later team over it too is told once this one fits)."""
    p = model.platform
    for env in p.environments.values():
        for gpu in allocation(model, env.name):
            if misspelt(model, env.gpu_capacity, gpu):
                continue  # KF311: the capacity misspells it
            cap, taken, before = env.gpu_capacity.get(gpu, 0), 0, []
            for t in model.teams_in(env.name):
                n = t.quota[env.name].gpu.get(gpu, 0)
                if n and taken + n > cap:
                    yield _over(p, t, env.name, gpu, n, cap, taken, before)
                    break
                taken += n
                before += [f"{t.name} {n}"] if n else []


def _over(p, team, env: str, gpu: str, n: int, cap: int, taken: int, before: list[str]):
    raise_it = (f"ask the platform team to raise environments.{env}.capacity.gpu.{gpu} in {p.source.path}"
                if cap else f"ask the platform team to add {gpu} to environments.{env}.capacity.gpu in {p.source.path}")
    has = f"{env} has {cap} {gpu}" if cap else f"{env} has no {gpu} GPUs"
    others = f"other teams already take {taken} ({', '.join(before)})" if before else "no other team takes any"
    free = cap - taken
    return error(team.source.path, team.source.at(f"/quota/{env}/gpu/{gpu}"), "KF306",
                 f"quota of {n} {gpu} GPUs in {env} does not fit: {has}; {others}; {free} free" if cap else
                 f"quota of {n} {gpu} GPUs in {env} does not fit: {has}",
                 f"lower quota.{env}.gpu.{gpu} to {free}, or {raise_it}" if free else
                 f"remove {gpu} from quota.{env}.gpu, or {raise_it}")
