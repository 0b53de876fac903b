"""The lines a run ends with: what was built and validated per environment, and what render and render --check did."""
from __future__ import annotations

from kflowgen.build import Built
from kflowgen.rules.capacity import allocation
from kflowgen.specs.model import Model
from kflowgen.write import writer


def drift(files: dict[str, bytes], plan: writer.Plan, count: int | None = None) -> str:
    """render --check's line (count: how many files were generated, where files holds only some of them)."""
    return (f"{len(files) if count is None else count} generated files checked: "
            + ("up to date" if not plan.drift else
               f"{len(plan.added)} missing, {len(plan.changed)} different, {len(plan.removed)} extra"))


def summary(model: Model, built: Built, envs: list[str], tools: dict[str, str]) -> list[str]:
    """One line for the run, one per environment."""
    p = model.platform
    total = sum(built.counts.get(e, 0) for e in envs)
    tools_used = ", ".join(f"{k} {v}" for k, v in sorted(tools.items()))
    lines = [f"{len(model.teams)} teams, {len(envs)} environments, {total} objects built and validated "
             f"({tools_used}; Kubernetes {p.kubernetes_version})"]
    width = max(len(e) for e in envs)
    for e in envs:
        alloc = allocation(model, e)
        gpus = "  ".join(f"{g} {n}/{p.environments[e].gpu_capacity.get(g, 0)}" for g, n in alloc.items())
        lines.append(f"  {e:<{width}}  {len(model.teams_in(e))} teams  {built.counts.get(e, 0):>4} objects  "
                     f"GPU quota/capacity: {gpus}")
    return lines




def written(files: dict[str, bytes], plan: writer.Plan) -> str:
    """render's line."""
    return (f"{len(files)} generated files: {len(plan.added)} added, {len(plan.changed)} changed, "
            f"{len(plan.removed)} removed, {len(plan.unchanged)} unchanged")
