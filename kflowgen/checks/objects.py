"""What the checks read of a built object: its identity, JSON pointers into it, its pod templates and their
containers, and which kinds live outside any namespace."""
from __future__ import annotations

from collections.abc import Iterator

# Kinds the API server keeps outside any namespace (core, apiextensions, admission, RBAC, storage, scheduling, ...).
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "APIService", "PriorityClass", "StorageClass", "CSIDriver", "CSINode",
    "VolumeAttachment", "VolumeAttributesClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "IngressClass", "RuntimeClass", "CertificateSigningRequest", "ClusterTrustBundle",
    "FlowSchema", "PriorityLevelConfiguration", "IPAddress", "ServiceCIDR", "DeviceClass", "ResourceSlice",
    "StorageVersion", "StorageVersionMigration", "TokenReview", "SelfSubjectReview", "SelfSubjectAccessReview",
    "SelfSubjectRulesReview", "SubjectAccessReview",
    # Kueue's (kueue.x-k8s.io): only ResourceFlavor, Cohort and ClusterQueue are kflowgen's, in overlays/<env>/queueing
    "ResourceFlavor", "Cohort", "ClusterQueue", "WorkloadPriorityClass", "AdmissionCheck", "Topology",
    "MultiKueueCluster", "MultiKueueConfig", "ProvisioningRequestConfig",
    # Kubeflow Trainer's (trainer.kubeflow.org): the platform's runtimes, never kflowgen's nor a team's
    "ClusterTrainingRuntime",
    # KServe's (serving.kserve.io): the platform installs them with KServe; kflowgen renders none
    "ClusterServingRuntime", "ClusterStorageContainer", "LocalModelCache", "LocalModelNode", "LocalModelNodeGroup",
})


def ptr(*parts) -> str:
    """A JSON pointer (RFC 6901): ptr('spec', 'nvidia.com/gpu') -> '/spec/nvidia.com~1gpu'."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def identity(obj: dict) -> str:
    """'Kind namespace/name', e.g. 'Job vision/train'; a missing, empty or null name is '?'."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or "?"
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def as_dict(value) -> dict:
    """value where it is a mapping, else an empty one: a hand-written object may have anything anywhere."""
    return value if isinstance(value, dict) else {}


WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"})


# The components of a KServe InferenceService (serving.kserve.io) whose specs are pod specs, and the fields of a
# component that are one container each (the model, or a framework's predictor)
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
KSERVE_CONTAINERS = ("model", "tensorflow", "sklearn", "xgboost", "pytorch", "triton", "onnx", "huggingface", "pmml",
                     "lightgbm", "paddle", "art", "alibi")


def inference_service(obj: dict) -> bool:
    return obj.get("kind") == "InferenceService" and str(obj.get("apiVersion", "")).startswith("serving.kserve.io/")


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(pointer, pod spec) of every pod template: Pod, PodTemplate, the WORKLOADS, CronJob, the replica templates of
    Kubeflow jobs (PyTorchJob, TFJob, MPIJob, ...), what a TrainJob says of its pods (train_pods), and the components of
    a KServe InferenceService, its canaries' predictors and a predictor's workerSpec included (each a pod spec, its
    one-container fields read by containers())."""
    spec = as_dict(obj.get("spec"))
    if obj.get("kind") == "TrainJob" and str(obj.get("apiVersion", "")).startswith("trainer.kubeflow.org/"):
        yield from train_pods(spec)
    if inference_service(obj):
        for key in KSERVE_COMPONENTS:
            if key in spec:
                yield from _component(ptr("spec", key), as_dict(spec[key]))
        for i, canary in enumerate(spec.get("canary") or []):
            yield from _component(ptr("spec", "canary", i, "predictor"), as_dict(as_dict(canary).get("predictor")))
        return
    if obj.get("kind") == "Pod":
        yield "/spec", spec
    elif obj.get("kind") == "PodTemplate":
        yield "/template/spec", as_dict(as_dict(obj.get("template")).get("spec"))
    elif obj.get("kind") == "CronJob":
        yield "/spec/jobTemplate/spec/template/spec", \
            as_dict(as_dict(as_dict(as_dict(spec.get("jobTemplate")).get("spec")).get("template")).get("spec"))
    elif obj.get("kind") in WORKLOADS:
        yield "/spec/template/spec", as_dict(as_dict(spec.get("template")).get("spec"))
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs") and str(obj.get("apiVersion", "")).startswith("kubeflow.org/"):
            for role, r in sorted(as_dict(replicas).items()):
                yield ptr("spec", key, role, "template", "spec"), as_dict(as_dict(as_dict(r).get("template")).get("spec"))


def _component(at: str, component: dict) -> Iterator[tuple[str, dict]]:
    yield at, component
    if "workerSpec" in component:
        yield f"{at}/workerSpec", as_dict(component["workerSpec"])


def containers(pod: dict, at: str, fields=("initContainers", "containers", "ephemeralContainers")):
    """(pointer, container) of a pod spec's containers; ephemeral containers cannot set resources or ports. A KServe
    component's one-container fields (KSERVE_CONTAINERS) count as containers; they are in no pod spec of another
    kind."""
    for f in fields:
        for i, c in enumerate(pod.get(f) or []):
            yield f"{at}/{f}/{i}", as_dict(c)
    if "containers" in fields:
        for f in KSERVE_CONTAINERS:
            if isinstance(pod.get(f), dict):
                yield f"{at}/{f}", pod[f]


def all_containers(obj: dict, fields=("initContainers", "containers", "ephemeralContainers")):
    for at, pod in pod_specs(obj):
        yield from containers(pod, at, fields)


TRAINER_STEP = "node"  # the replicated Job and container of a Trainer runtime that spec.trainer sets


def train_pods(spec: dict) -> Iterator[tuple[str, dict]]:
    """A TrainJob has no pod template: its trainer step's pods are the runtime's template (the platform's), patched by
    `spec.runtimePatches` (pod spec of each replicated Job: service account, volumes, security contexts, node
    selection, pull secrets) and with `spec.trainer`'s image, command, environment and resourcesPerNode in the `node`
    container. Each patched pod spec is given at its pointer, its `node` container holding the trainer's fields too
    (findings on those point at that container); without a patch of the `node` step, the trainer's container alone,
    at /spec/trainer: a TrainJob that does not patch its own security context in is judged as one that has none."""
    trainer = as_dict(spec.get("trainer"))
    node = {k: v for k, v in (("image", trainer.get("image")), ("command", trainer.get("command")),
                              ("args", trainer.get("args")), ("env", trainer.get("env")),
                              ("resources", trainer.get("resourcesPerNode"))) if v is not None}
    patched = False
    for i, patch in enumerate(spec.get("runtimePatches") or []):
        jobs = as_dict(as_dict(as_dict(as_dict(patch).get("trainingRuntimeSpec")).get("template")).get("spec"))
        for j, job in enumerate(jobs.get("replicatedJobs") or []):
            pod = dict(as_dict(as_dict(as_dict(as_dict(as_dict(job).get("template")).get("spec")).get("template")).get("spec")))
            if as_dict(job).get("name") == TRAINER_STEP:
                patched = True
                named = [as_dict(c) for c in pod.get("containers") or [] if as_dict(c).get("name") == TRAINER_STEP]
                others = [c for c in pod.get("containers") or [] if as_dict(c).get("name") != TRAINER_STEP]
                pod["containers"] = [{**c, **node} for c in named or [{"name": TRAINER_STEP}]] + others
            yield ptr("spec", "runtimePatches", i, "trainingRuntimeSpec", "template", "spec", "replicatedJobs", j,
                      "template", "spec", "template", "spec"), pod
    if not patched:
        yield "/spec/trainer", {"containers": [{"name": TRAINER_STEP, **node}]}
