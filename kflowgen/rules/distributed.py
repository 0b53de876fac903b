"""KF350-KF352: distributed experiments (workers > 1) run as the platform says (`training.distributed`): on Kubeflow
Trainer, each needs a ClusterTrainingRuntime named for its framework, and TensorFlow has none; the legacy Training
Operator's kinds are a warning naming the line to add; a TrainJob carries no retries."""
from __future__ import annotations

from kflowgen.diagnostics import error, warning
from kflowgen.specs.model import TRAINER, TRAINING_OPERATOR, specs_of

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF350": "distributed experiment the platform has no runtime for: no Trainer runtime named, or TensorFlow on Trainer",
    "KF351": "distributed experiments render the legacy Training Operator's PyTorchJob or TFJob",
    "KF352": "retries on a TrainJob, which has none: the runtime's failure policy decides",
}

RUNTIME = "torch-distributed"  # the ClusterTrainingRuntime Trainer v2.3.0 installs for PyTorch
RECOMMENDED = f"distributed: {{api: {TRAINER}, runtimes: {{pytorch: {RUNTIME}}}}}"


def check(model):
    p = model.platform
    distributed = [s for s in specs_of(model.experiments) if s.top("workers", 1) > 1]  # without decoding the rest
    if not distributed:
        return
    if not p.trainer:
        yield _legacy(p, distributed)
        return
    for spec in distributed:
        d, path = spec.data, spec.path
        framework = d.get("framework", "pytorch")
        if framework == "tensorflow":
            yield error(path, spec.at("/framework"), "KF350", f"framework: tensorflow with workers: {d['workers']} "
                        "needs a TFJob, but the platform runs Kubeflow Trainer, which has no TensorFlow runtime",
                        "run it on one machine (remove workers), port it to PyTorch (framework: pytorch, started with "
                        f"torchrun), or ask the platform team for distributed: {{api: {TRAINING_OPERATOR}}} in "
                        f"{p.source.path} (the legacy Training Operator)")
        elif framework not in p.distributed.runtimes:
            yield error(path, spec.at("/workers"), "KF350", f"workers: {d['workers']} gives a TrainJob, but "
                        f"{p.source.path} names no ClusterTrainingRuntime for {framework}",
                        f"ask the platform team to add runtimes: {{{framework}: {RUNTIME}}} under "
                        f"training.distributed in {p.source.path} (the runtime installed with Trainer v2.3.0), or "
                        "remove workers to run on one machine")
        if "retries" in d:
            yield warning(path, spec.at("/retries"), "KF352", f"retries: {d['retries']} does not reach a TrainJob, "
                          "which has no retries: the runtime's failure policy decides whether a failed trial restarts",
                          "remove retries, or ask the platform team which failure policy their runtime has")


def _legacy(p, distributed):
    """One warning on the platform file, naming the distributed experiments that render a legacy kind."""
    names = ", ".join(s.path for s in distributed[:3]) + (f" and {len(distributed) - 3} more" if len(distributed) > 3
                                                          else "")
    kinds = " or ".join(sorted({"TFJob" if s.data.get("framework") == "tensorflow" else "PyTorchJob"
                                for s in distributed}))
    n = f"{len(distributed)} distributed experiment{'s' if len(distributed) > 1 else ''} ({names}) " \
        f"render{'' if len(distributed) > 1 else 's'}"
    if p.distributed is None:
        return warning(p.source.path, p.source.at("/training"), "KF351", f"{n} the legacy {kinds} of the "
                       "Kubeflow Training Operator v1, because training.distributed is not set; the Training "
                       "Operator is maintained on release-1.9 only and Kueue's integration of it is deprecated",
                       f"install Kubeflow Trainer v2.3.0 and its runtimes, then add `{RECOMMENDED}` under training "
                       f"(each distributed trial then gets a new TrainJob); or write `distributed: {{api: "
                       f"{TRAINING_OPERATOR}}}` to keep {kinds} on purpose")
    return warning(p.source.path, p.source.at("/training/distributed/api"), "KF351", f"{n} the legacy {kinds} "
                   "of the Kubeflow Training Operator v1, which is maintained on release-1.9 only; Kueue's integration "
                   "of it is deprecated", f"install Kubeflow Trainer v2.3.0 and its runtimes, then write `{RECOMMENDED}`"
                   " under training" + (" (TensorFlow has no Trainer runtime: those experiments need workers: 1 or "
                                        "PyTorch first)" if "TFJob" in kinds else ""))
