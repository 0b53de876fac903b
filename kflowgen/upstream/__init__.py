"""The upstream schemas kflowgen ships, so that a clone (or `pip install kflowgen`) validates with nothing else: the
CRDs of the custom kinds it emits, at the versions a platform pins, and the Zero to JupyterHub chart's values and values
schema. SOURCES.json names each file's upstream project, version, path, licence and sha256 (upstream and kept);
tools/upstream/update.py regenerates them. A platform's own `validation.crds` come after these, and win for a kind
both define; `validation.jupyterhubChart` replaces the shipped chart."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
ARGOCD = {"3.6.2": "argo-cd/v3.6.2"}  # the Argo CD versions whose Application and AppProject CRDs are here
TRAINING_OPERATOR = "training-operator/v1.9.4"  # PyTorchJob and TFJob (kubeflow.org/v1): legacy
TRAINER = "trainer/v2.3.0"  # TrainJob, TrainingRuntime and ClusterTrainingRuntime (trainer.kubeflow.org/v1alpha1)
KUEUE = "kueue/v0.19.2"  # ResourceFlavor, Cohort, ClusterQueue and LocalQueue (kueue.x-k8s.io/v1beta2, and v1beta1)
KSERVE = "kserve/v0.20.0"  # InferenceService (serving.kserve.io/v1beta1), for platforms that serve with KServe
JUPYTERHUB = {"4.4.0": "jupyterhub/4.4.0"}  # Zero to JupyterHub chart versions whose values schema is here


def crd_files(argocd_version: str, kserve: bool = False) -> list[Path] | None:
    """The shipped CRD files for a platform on this Argo CD version (and KServe's InferenceService when it serves with
    KServe somewhere); None when Argo CD's are not shipped for it."""
    if argocd_version not in ARGOCD:
        return None
    return sorted((FOLDER / ARGOCD[argocd_version]).glob("*.json")) + training_crd_files() + serving_crd_files(kserve)


def serving_crd_files(kserve: bool) -> list[Path]:
    """KServe's InferenceService CRD when the platform serves with KServe (a large schema: not installed or converted
    for platforms that do not)."""
    return sorted((FOLDER / KSERVE).glob("*.json")) if kserve else []


def training_crd_files() -> list[Path]:
    """The shipped CRDs of the kinds training uses, whatever the Argo CD version: Kubeflow Trainer's TrainJob (and its
    runtimes, which policy keeps out of team overlays), the Training Operator's PyTorchJob and TFJob, and Kueue's
    queues."""
    return sorted((FOLDER / TRAINER).glob("*.json")) + sorted((FOLDER / TRAINING_OPERATOR).glob("*.json")) \
        + sorted((FOLDER / KUEUE).glob("*.json"))


@dataclass(frozen=True)
class Chart:
    """A chart's default values and values schema, and where they come from (for messages)."""

    values: dict
    schema: dict
    origin: str


def chart(version: str) -> Chart | None:
    """The shipped Zero to JupyterHub chart of this version, or None."""
    if version not in JUPYTERHUB:
        return None
    folder = FOLDER / JUPYTERHUB[version]
    return Chart(json.loads((folder / "values.json").read_bytes()),
                 json.loads((folder / "values.schema.json").read_bytes()), f"chart {version} (shipped with kflowgen)")


def sources() -> list[dict]:
    return json.loads((FOLDER / "SOURCES.json").read_bytes())
