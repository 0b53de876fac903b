"""KF616: a TrainJob runs on one of the platform's training runtimes. Its runtime is its pods' template (image
defaults, commands, volumes, what the runtime's own pods may do), so `spec.runtimeRef` names a ClusterTrainingRuntime
(trainer.kubeflow.org) that `training.distributed.runtimes` declares: not another cluster runtime the cluster happens
to have, and not a namespaced TrainingRuntime (which teams cannot create: KF607, KF609). It is run by Trainer's own
controller in this cluster (`spec.managedBy`, if said: not MultiKueue, which would run it in another cluster), and
has no `spec.initializer`: the runtime's initializer steps would download a dataset or model from anywhere, with a
secret of the namespace, where a team's data is read from its NAS."""
from __future__ import annotations

from kflowgen.checks.objects import as_dict
from kflowgen.specs import layout

CODE = "KF616"
TITLE = "TrainJob on a training runtime the platform does not declare, managed elsewhere, or with initializers"

GROUP, KIND = "trainer.kubeflow.org", "ClusterTrainingRuntime"  # the API server's defaults for runtimeRef
MANAGER = "trainer.kubeflow.org/trainjob-controller"  # spec.managedBy's default


def check(obj, ctx):
    if layout.group_kind(obj) != layout.TRAINJOB:
        return
    spec = as_dict(obj.get("spec"))
    if spec.get("managedBy", MANAGER) != MANAGER:
        yield "/spec/managedBy", f"'{spec['managedBy']}' is not Kubeflow Trainer's own controller", \
            "remove managedBy: Kubeflow Trainer runs the TrainJob in this cluster"
    if "initializer" in spec:
        yield "/spec/initializer", "initializers download datasets and models from outside the team NAS", \
            "remove initializer: training reads its data from the team NAS"
    ref = as_dict(spec.get("runtimeRef"))
    declared = ", ".join(sorted(ctx.runtimes)) or "none"
    hint = f"name one of the platform's runtimes (training.distributed.runtimes: {declared})"
    if ref.get("apiGroup", GROUP) != GROUP or ref.get("kind", KIND) != KIND:
        yield "/spec/runtimeRef", f"refers to {ref.get('apiGroup', GROUP)}/{ref.get('kind', KIND)}, not a " \
            f"{KIND}", hint
    elif ref.get("name") not in ctx.runtimes:
        yield "/spec/runtimeRef/name", f"'{ref.get('name', '')}' is not a runtime the platform declares", hint
