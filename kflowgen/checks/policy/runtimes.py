"""KF616: a TrainJob runs on one of the platform's training runtimes. Its runtime is its pods' template (image
defaults, commands, volumes, what the runtime's own pods may do), so `spec.runtimeRef` names a ClusterTrainingRuntime
(trainer.kubeflow.org) that `training.distributed.runtimes` declares: not another cluster runtime the cluster happens
to have, and not a namespaced TrainingRuntime (which teams cannot create: KF607, KF609)."""
from __future__ import annotations

from kflowgen.specs import layout

CODE = "KF616"
TITLE = "TrainJob on a training runtime the platform does not declare"

GROUP, KIND = "trainer.kubeflow.org", "ClusterTrainingRuntime"  # the API server's defaults for runtimeRef


def check(obj, ctx):
    if layout.group_kind(obj) != layout.TRAINJOB:
        return
    ref = (obj.get("spec") or {}).get("runtimeRef")
    ref = ref if isinstance(ref, dict) else {}
    declared = ", ".join(sorted(ctx.runtimes)) or "none"
    hint = f"name one of the platform's runtimes (training.distributed.runtimes: {declared})"
    if ref.get("apiGroup", GROUP) != GROUP or ref.get("kind", KIND) != KIND:
        yield "/spec/runtimeRef", f"refers to {ref.get('apiGroup', GROUP)}/{ref.get('kind', KIND)}, not a " \
            f"{KIND}", hint
    elif ref.get("name") not in ctx.runtimes:
        yield "/spec/runtimeRef/name", f"'{ref.get('name', '')}' is not a runtime the platform declares", hint
