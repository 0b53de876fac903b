"""KF304, KF311: every GPU type named in a profile, a quota or a capacity is defined in the platform file."""
from __future__ import annotations

from kflowgen.diagnostics import error
from kflowgen.specs.hints import closest

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF304": "GPU type not defined in the platform file",
    "KF311": "GPU capacity given for a GPU type the platform does not define",
}


def misspelt(model, named, gpu: str) -> bool:
    """gpu is missing from named (a quota's or a capacity's GPU types), which names a type the platform does not
    define: KF304 or KF311 reports that one, and gpu is most likely it, misspelt. A check that finds gpu missing there
    would only report a consequence of the root cause, so it says nothing."""
    return gpu not in named and any(g not in model.platform.gpu_types for g in named)


def _unknown(name, known):
    best = closest(name, known)
    return (f"write {best}; " if best else "") + f"GPU types in the platform: {', '.join(known)}"


def check(model):
    p = model.platform
    known = list(p.gpu_types)
    for env in p.environments.values():
        for gpu in env.gpu_capacity:
            if gpu not in p.gpu_types:
                yield error(p.source.path, p.source.at(f"/environments/{env.name}/capacity/gpu/{gpu}", key=True),
                            "KF311", f"capacity of {env.name} names GPU type '{gpu}', which gpuTypes does not define",
                            _unknown(gpu, known))
    for t in model.teams:
        for i, prof in enumerate(t.profiles):
            if prof.gpu_type and prof.gpu_type not in p.gpu_types:
                yield error(t.source.path, t.source.at(f"/notebook/profiles/{i}/gpu/type"), "KF304",
                            f"profile '{prof.name}' asks for GPU type '{prof.gpu_type}', which the platform does not define",
                            _unknown(prof.gpu_type, known))
        for env, q in t.quota.items():
            for gpu in q.gpu:
                if gpu not in p.gpu_types:
                    yield error(t.source.path, t.source.at(f"/quota/{env}/gpu/{gpu}", key=True), "KF304",
                                f"quota for {env} names GPU type '{gpu}', which the platform does not define",
                                _unknown(gpu, known))
