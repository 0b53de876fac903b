"""Policies on built manifests: one-line pass and fail tests per rule, the Go glob matcher, the Diagnostics run()
makes, and the real built example and a tenancy model (teams a, a-b, ab) with zero findings."""
from __future__ import annotations

import copy
import shutil

import pytest

from conftest import PROJECT
from kflowgen import codes, diagnostics, tools
from kflowgen.flow import pipeline
from kflowgen.checks import policy
from kflowgen.checks.policy import Context, go_match
from kflowgen.targets import render
from kflowgen.build import build
from kflowgen.build import overlays_of
from kflowgen.options import Options

CTX = Context(("registry.example.com/ml/",), {"dev": {"vision": "vision", "nlp": "nlp"}}, "argocd", "jupyterhub",
              ingress_class="nginx", domains={"dev": "dev.ml.example.com"}, runtimes=frozenset({"torch-distributed"}))
WORKLOADS, PLATFORM, ARGOCD = ("overlays/dev/teams/vision/workloads", "overlays/dev/teams/vision/platform",
                               "overlays/dev/argocd")
DELETE = object()


def test_every_policy_code_is_registered_with_its_title():
    for p in policy.POLICIES.values():
        assert codes.CODES[p.CODE] == p.TITLE


def patched(obj: dict, *changes) -> dict:
    """A copy of obj with (json pointer, value) changes; DELETE removes the key, a missing parent is created."""
    obj = copy.deepcopy(obj)
    for pointer, value in changes:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if value is DELETE:
            node.pop(last) if isinstance(node, dict) else node.pop(int(last))
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return obj


def found(name: str, obj: dict, overlay: str = WORKLOADS, ctx: Context = CTX) -> list[str]:
    """The JSON pointers one policy reports for one object."""
    return [pointer for pointer, _, _ in policy.POLICIES[name].check(obj, ctx.at(overlay))]


# --- objects that pass every policy ----------------------------------------------------------------------------

CONTAINER = {
    "name": "main", "image": "registry.example.com/ml/nb:2026.10",
    "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                  "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}},
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}
POD = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
       "containers": [CONTAINER], "volumes": [{"name": "nas", "persistentVolumeClaim": {"claimName": "nas"}}]}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "srv", "namespace": "vision"},
              "spec": {"template": {"spec": POD}}}
CRONJOB = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "vision"},
           "spec": {"jobTemplate": {"spec": {"template": {"spec": POD}}}}}
PYTORCHJOB = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "t", "namespace": "vision"},
              "spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": copy.deepcopy(POD)}},
                                               "Worker": {"template": {"spec": copy.deepcopy(POD)}}}}}
BARE_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "vision"}, "spec": POD}
KEEP = {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false"}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision", "annotations": KEEP}}
PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
       "metadata": {"name": "nas", "namespace": "vision", "annotations": KEEP}}
CLUSTERROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}}
PROJECT_VISION = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "dev-vision", "namespace": "argocd"},
    "spec": {"destinations": [{"server": "https://dev", "namespace": "vision"}], "clusterResourceWhitelist": [],
             "namespaceResourceWhitelist": [{"group": "batch", "kind": "Job"}, {"group": "apps", "kind": "Deployment"}]}}
PROJECT_PLATFORM = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "dev-platform", "namespace": "argocd"},
    "spec": {"destinations": [{"server": "https://dev", "namespace": n} for n in ("jupyterhub", "nlp", "vision")],
             "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
             "namespaceResourceWhitelist": [{"group": "*", "kind": "*"}]}}
APP_VISION = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
              "metadata": {"name": "dev-vision-workloads", "namespace": "argocd"},
              "spec": {"project": "dev-vision", "source": {"path": "overlays/dev/teams/vision/workloads"},
                       "destination": {"server": "https://dev", "namespace": "vision"}}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "vision"}}
DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny",
        "namespace": "vision"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
ALLOW_DNS = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "allow-dns", "namespace": "vision"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"port": 53}]}]}}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": "members-edit", "namespace": "vision"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "vision-ds"},
                        {"kind": "ServiceAccount", "name": "hub", "namespace": "jupyterhub"},
                        {"kind": "ServiceAccount", "name": "runner"}]}

QUEUE_LABEL = "kueue.x-k8s.io~1queue-name"
JOB = {"apiVersion": "batch/v1", "kind": "Job",
       "metadata": {"name": "t", "namespace": "vision", "labels": {"kueue.x-k8s.io/queue-name": "default"}},
       "spec": {"suspend": True, "template": {"spec": POD}}}
LOCALQUEUE = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
              "metadata": {"name": "default", "namespace": "vision"}, "spec": {"clusterQueue": "vision"}}
CLUSTERQUEUE = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "vision"},
                "spec": {"cohortName": "platform",
                         "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vision"}}}}
FLAVOR = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "gpu-a100"},
          "spec": {"nodeLabels": {"gpu": "a100"}}}
QUEUEING = "overlays/dev/queueing"
# A TrainJob has no pod template: its pods are its runtime's, patched (kflowgen's runtimePatches entry) and with the
# trainer's image and resources in the `node` container (checks.objects.train_pods)
TRAINJOB = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "t", "namespace": "vision"},
            "spec": {"runtimeRef": {"name": "torch-distributed"},
                     "trainer": {"image": CONTAINER["image"], "resourcesPerNode": CONTAINER["resources"], "numNodes": 2},
                     "runtimePatches": [{"manager": "kflowgen.dev/trial", "trainingRuntimeSpec": {"template": {"spec": {
                         "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {
                             **POD, "containers": [{"name": "node",
                                                    "securityContext": CONTAINER["securityContext"]}]}}}}}]}}}}]}}
TJ = "/spec/runtimePatches/0/trainingRuntimeSpec/template/spec/replicatedJobs/0/template/spec/template/spec"

C = "/spec/template/spec/containers/0"
SC = C + "/securityContext"
P = "/spec/template/spec"
A = "/spec/destinations/0/namespace"
W = "/spec/namespaceResourceWhitelist"

INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ranker"},
           "spec": {"ingressClassName": "nginx", "rules": [{"host": "ranker.dev.ml.example.com", "http": {"paths": [
               {"path": "/v1/models/ranker", "pathType": "Prefix", "backend": {"service": {"name": "ranker", "port": {
                   "name": "http"}}}}]}}]}}

# A KServe InferenceService as kflowgen renders it (tests/golden/kserve), cut down: a stable predictor and a canary
MODEL = {"modelFormat": {"name": "tensorflow"}, "runtime": "kserve-tensorflow-serving",
         "storageUri": "pvc://nas/models/ranker", **{k: v for k, v in CONTAINER.items() if k != "name"}}
ISVC_POD = {k: v for k, v in POD.items() if k != "containers"}
ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "ranker", "namespace": "vision",
                     "labels": {"networking.kserve.io/visibility": "cluster-local"},
                     "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": copy.deepcopy({"minReplicas": 2, **ISVC_POD, "model": MODEL}),
                 "canary": [{"trafficPercent": 10, "predictor": copy.deepcopy(
                     {"name": "v2", **ISVC_POD, "model": {"name": "kserve-container", **MODEL}})}]}}
SERVINGRUNTIME = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
                  "metadata": {"name": "mine", "namespace": "vision"},
                  "spec": {"containers": [CONTAINER], "supportedModelFormats": [{"name": "tensorflow"}]}}
CLUSTERSERVINGRUNTIME = {**SERVINGRUNTIME, "kind": "ClusterServingRuntime", "metadata": {"name": "mine"}}
M, CM = "/spec/predictor/model", "/spec/canary/0/predictor/model"

CASES = [
    # (policy, object, overlay, expected pointers)
    ("inference-services", ISVC, WORKLOADS, []),
    ("inference-services", ISVC, ARGOCD, []),  # not a team overlay: KF608 refuses the kind there
    ("inference-services", patched(ISVC, (M + "/storageUri", "s3://bucket/models/ranker")), WORKLOADS,
     [M + "/storageUri"]),
    ("inference-services", patched(ISVC, (CM + "/storageUri", "pvc://other-claim/models")), WORKLOADS,
     [CM + "/storageUri"]),
    ("inference-services", patched(ISVC, (M + "/storageUri", "pvc://nas/models/../../etc")), WORKLOADS,
     [M + "/storageUri"]),
    ("inference-services", patched(ISVC, (M + "/storageUri", "pvc://nas")), WORKLOADS, [M + "/storageUri"]),
    ("inference-services", patched(ISVC, (M + "/storage", {"key": "platform-s3", "path": "x"})), WORKLOADS,
     [M + "/storage"]),
    ("inference-services", patched(ISVC, ("/spec/predictor/storageUris", [{"uri": "pvc://nas/m", "mountPath": "/m"}])),
     WORKLOADS, ["/spec/predictor/storageUris"]),
    ("inference-services", patched(ISVC, ("/spec/predictor/model", DELETE),
                                   ("/spec/predictor/tensorflow", {"storageUri": "gs://elsewhere/m"})), WORKLOADS,
     ["/spec/predictor/tensorflow/storageUri"]),
    ("inference-services", patched(ISVC, ("/metadata/annotations/serving.kserve.io~1deploymentMode", "Knative")),
     WORKLOADS, ["/metadata/annotations/serving.kserve.io~1deploymentMode"]),
    ("inference-services", patched(ISVC, ("/metadata/labels", {})), WORKLOADS,
     ["/metadata/labels/networking.kserve.io~1visibility"]),
    ("pod-security-restricted", ISVC, WORKLOADS, []),
    ("pod-security-restricted", patched(ISVC, (CM + "/securityContext/allowPrivilegeEscalation", True)), WORKLOADS,
     [CM + "/securityContext/allowPrivilegeEscalation"]),
    ("no-host-access", patched(ISVC, ("/spec/predictor/hostNetwork", True)), WORKLOADS,
     ["/spec/predictor/hostNetwork"]),
    ("allowed-registries", patched(ISVC, (M + "/image", "docker.io/evil/server:1")), WORKLOADS, [M + "/image"]),
    ("requests-and-limits", patched(ISVC, (CM + "/resources", {})), WORKLOADS,
     [CM + f"/resources/{f}/{r}" for f in ("requests", "limits") for r in ("cpu", "memory")]),
    ("team-namespace", ISVC, WORKLOADS, ["/kind"]),  # CTX's dev has no KServe
    ("team-namespace", SERVINGRUNTIME, WORKLOADS, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERSERVINGRUNTIME, "overlays/dev/extras", ["/kind"]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W + "/1", {"group": "serving.kserve.io", "kind": "ServingRuntime"})),
     ARGOCD, [W + "/1/kind"]),
    ("pod-security-restricted", DEPLOYMENT, WORKLOADS, []),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/allowPrivilegeEscalation", DELETE)), WORKLOADS,
     [SC + "/allowPrivilegeEscalation"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/securityContext/runAsNonRoot", DELETE)), WORKLOADS,
     [SC + "/runAsNonRoot"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/securityContext/runAsNonRoot", DELETE),
                                        (SC + "/runAsNonRoot", True)), WORKLOADS, []),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/runAsNonRoot", False)), WORKLOADS, [SC + "/runAsNonRoot"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/securityContext/runAsUser", 0)), WORKLOADS,
     [P + "/securityContext/runAsUser"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/runAsUser", 0)), WORKLOADS, [SC + "/runAsUser"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/securityContext/seccompProfile", DELETE)), WORKLOADS,
     [SC + "/seccompProfile/type"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/seccompProfile", {"type": "Unconfined"})), WORKLOADS,
     [SC + "/seccompProfile/type"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/securityContext/seccompProfile", {"type": "Unconfined"}),
                                        (SC + "/seccompProfile", {"type": "Localhost"})), WORKLOADS,
     [P + "/securityContext/seccompProfile/type"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/capabilities/drop", ["NET_RAW"])), WORKLOADS,
     [SC + "/capabilities/drop"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/capabilities/add", ["NET_BIND_SERVICE"])), WORKLOADS, []),
    ("pod-security-restricted", patched(DEPLOYMENT, (SC + "/capabilities/add", ["NET_BIND_SERVICE", "SYS_ADMIN"])),
     WORKLOADS, [SC + "/capabilities/add/1"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/volumes/0", {"name": "v", "nfs": {"server": "x"}})),
     WORKLOADS, [P + "/volumes/0/nfs"]),
    ("pod-security-restricted", patched(DEPLOYMENT, (P + "/initContainers", [{"name": "init", "image": "x:1"}])),
     WORKLOADS, [P + "/initContainers/0/securityContext/" + f for f in
                 ("allowPrivilegeEscalation", "capabilities/drop")]),
    ("pod-security-restricted", PYTORCHJOB, WORKLOADS, []),
    ("pod-security-restricted", patched(PYTORCHJOB, ("/spec/pytorchReplicaSpecs/Worker/template/spec/securityContext",
                                                     DELETE)), WORKLOADS,
     ["/spec/pytorchReplicaSpecs/Worker/template/spec/containers/0/securityContext/" + f
      for f in ("runAsNonRoot", "seccompProfile/type")]),
    ("pod-security-restricted", patched(CRONJOB, ("/spec/jobTemplate/spec/template/spec/containers/0/securityContext",
                                                  DELETE)), WORKLOADS,
     ["/spec/jobTemplate/spec/template/spec/containers/0/securityContext/" + f
      for f in ("allowPrivilegeEscalation", "capabilities/drop")]),

    ("requests-and-limits", DEPLOYMENT, WORKLOADS, []),
    ("requests-and-limits", patched(DEPLOYMENT, (C + "/resources/limits/memory", DELETE)), WORKLOADS,
     [C + "/resources/limits/memory"]),
    ("requests-and-limits", patched(DEPLOYMENT, (C + "/resources", DELETE)), WORKLOADS,
     [C + f"/resources/{f}/{r}" for f in ("requests", "limits") for r in ("cpu", "memory")]),

    ("gpu-limits-equal-requests", DEPLOYMENT, WORKLOADS, []),
    ("gpu-limits-equal-requests", patched(DEPLOYMENT, (C + "/resources/requests/nvidia.com~1gpu", DELETE)), WORKLOADS,
     []),
    ("gpu-limits-equal-requests", patched(DEPLOYMENT, (C + "/resources/limits/nvidia.com~1gpu", 2)), WORKLOADS,
     [C + "/resources/limits/nvidia.com~1gpu"]),
    ("gpu-limits-equal-requests", patched(DEPLOYMENT, (C + "/resources/limits/nvidia.com~1gpu", DELETE)), WORKLOADS,
     [C + "/resources/limits/nvidia.com~1gpu"]),

    ("image-tag", DEPLOYMENT, WORKLOADS, []),
    ("image-tag", patched(DEPLOYMENT, (C + "/image", "registry.example.com:5000/ml/nb@sha256:" + "0" * 64)),
     WORKLOADS, []),
    ("image-tag", patched(DEPLOYMENT, (C + "/image", "registry.example.com:5000/ml/nb")), WORKLOADS, [C + "/image"]),
    ("image-tag", patched(DEPLOYMENT, (C + "/image", "registry.example.com/ml/nb:latest")), WORKLOADS, [C + "/image"]),

    ("allowed-registries", DEPLOYMENT, WORKLOADS, []),
    ("allowed-registries", patched(DEPLOYMENT, (C + "/image", "registry.example.com/mlx/nb:1")), WORKLOADS,
     [C + "/image"]),

    ("no-host-access", DEPLOYMENT, WORKLOADS, []),
    ("no-host-access", patched(DEPLOYMENT, (P + "/hostNetwork", True), (P + "/hostPID", False)), WORKLOADS,
     [P + "/hostNetwork"]),
    ("no-host-access", patched(BARE_POD, ("/spec/volumes/0", {"name": "h", "hostPath": {"path": "/"}})), WORKLOADS,
     ["/spec/volumes/0/hostPath"]),
    ("no-host-access", patched(DEPLOYMENT, (SC + "/privileged", True), (C + "/ports", [{"containerPort": 80,
                                                                                        "hostPort": 80}])),
     WORKLOADS, [SC + "/privileged", C + "/ports/0/hostPort"]),

    ("team-namespace", DEPLOYMENT, WORKLOADS, []),
    ("team-namespace", NAMESPACE, PLATFORM, []),
    ("team-namespace", patched(DEPLOYMENT, ("/metadata/namespace", "nlp")), WORKLOADS, ["/metadata/namespace"]),
    ("team-namespace", patched(CONFIGMAP, ("/metadata/namespace", DELETE)), PLATFORM, ["/metadata/namespace"]),
    ("team-namespace", DEPLOYMENT, PLATFORM, ["/kind"]),  # a platform overlay holds no workloads
    ("team-namespace", DENY, WORKLOADS, ["/kind"]),  # nor a workloads overlay network policy
    ("team-namespace", patched(CONFIGMAP, ("/apiVersion", "resource.k8s.io/v1alpha3"), ("/kind", "DeviceTaintRule")),
     PLATFORM, ["/kind"]),  # a kind kflowgen has never heard of
    ("team-namespace", NAMESPACE, WORKLOADS, ["/kind"]),
    ("team-namespace", patched(NAMESPACE, ("/metadata/name", "nlp")), PLATFORM, ["/metadata/name"]),
    ("team-namespace", CLUSTERROLE, PLATFORM, ["/kind"]),
    ("team-namespace", patched(DEPLOYMENT, ("/metadata/namespace", "x")), ARGOCD, []),

    ("cluster-scoped-platform-only", PROJECT_VISION, ARGOCD, []),
    ("cluster-scoped-platform-only", CLUSTERROLE, ARGOCD, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERROLE, "overlays/dev/extras", ["/kind"]),
    ("cluster-scoped-platform-only", NAMESPACE, "overlays/dev/platform", ["/kind"]),
    ("cluster-scoped-platform-only", NAMESPACE, ARGOCD, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERROLE, WORKLOADS, []),  # a team overlay: KF607 reports it
    ("cluster-scoped-platform-only", NAMESPACE, PLATFORM, []),
    ("cluster-scoped-platform-only", CONFIGMAP, ARGOCD, ["/kind"]),
    ("cluster-scoped-platform-only", patched(PROJECT_VISION, ("/metadata/namespace", "vision")), ARGOCD,
     ["/metadata/namespace"]),

    ("network-isolation", DENY, PLATFORM, []),
    ("network-isolation", ALLOW_DNS, PLATFORM, []),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to", DELETE)), PLATFORM, ["/spec/egress/0"]),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to", [])), PLATFORM, ["/spec/egress/0"]),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to/0", {})), PLATFORM, ["/spec/egress/0/to/0"]),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to/0/namespaceSelector", {})), PLATFORM,
     ["/spec/egress/0/to/0/namespaceSelector"]),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to/0", {"ipBlock": {"cidr": "0.0.0.0/0"}})), PLATFORM,
     ["/spec/egress/0/to/0/ipBlock/cidr"]),
    ("network-isolation", patched(ALLOW_DNS, ("/spec/egress/0/to/0", {"ipBlock": {"cidr": "10.1.0.0/16"}})), PLATFORM,
     []),
    ("network-isolation", patched(DENY, ("/spec/ingress", [{}])), PLATFORM, ["/spec/ingress/0"]),

    ("appproject-tenancy", PROJECT_VISION, ARGOCD, []),
    ("appproject-tenancy", PROJECT_PLATFORM, ARGOCD, []),
    ("appproject-tenancy", patched(PROJECT_VISION, (A, "vision*")), ARGOCD, [A]),
    ("appproject-tenancy", patched(PROJECT_VISION, (A, "!nlp")), ARGOCD, [A]),
    ("appproject-tenancy", patched(PROJECT_VISION, (A, "[nv]*")), ARGOCD, [A, A]),
    ("appproject-tenancy", patched(PROJECT_VISION, (A, "nlp")), ARGOCD, [A]),
    ("appproject-tenancy", patched(PROJECT_VISION, ("/spec/destinations", [])), ARGOCD, ["/spec/destinations"]),
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/destinations/0/namespace", "monitoring")), ARGOCD, [A]),
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/destinations/0/namespace", "argocd")), ARGOCD, [A]),
    ("appproject-tenancy", patched(PROJECT_VISION, ("/spec/clusterResourceWhitelist", DELETE)), ARGOCD,
     ["/spec/clusterResourceWhitelist"]),
    ("appproject-tenancy", patched(PROJECT_VISION, ("/spec/clusterResourceWhitelist", [{"group": "", "kind": "Namespace"}])),
     ARGOCD, ["/spec/clusterResourceWhitelist"]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W, DELETE)), ARGOCD, [W]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W, [])), ARGOCD, [W]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W + "/1", {"group": "*", "kind": "*"})), ARGOCD, [W + "/1"]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W + "/1", {"group": "networking.k8s.io", "kind": "NetworkPolicy"})),
     ARGOCD, [W + "/1/kind"]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W + "/1", {"group": "rbac.authorization.k8s.io", "kind": "Role"})),
     ARGOCD, [W + "/1/kind"]),

    ("keep-namespaces-and-volumes", NAMESPACE, PLATFORM, []),
    ("keep-namespaces-and-volumes", patched(PVC, ("/metadata/annotations/argocd.argoproj.io~1sync-options",
                                                  "ServerSideApply=true, Delete=false,Prune=false")), PLATFORM, []),
    ("keep-namespaces-and-volumes", patched(PVC, ("/metadata/annotations/argocd.argoproj.io~1sync-options",
                                                  "Prune=false")), PLATFORM,
     ["/metadata/annotations/argocd.argoproj.io~1sync-options"]),
    ("keep-namespaces-and-volumes", patched(NAMESPACE, ("/metadata/annotations", DELETE)), PLATFORM,
     ["/metadata/annotations/argocd.argoproj.io~1sync-options"]),

    ("application-project", APP_VISION, ARGOCD, []),
    ("application-project", patched(APP_VISION, ("/spec/source/path", "overlays/dev/teams/vision/extra")), ARGOCD,
     ["/spec/source/path"]),
    ("application-project", patched(APP_VISION, ("/spec/source/path", "overlays/dev/teams/nlp/workloads")), ARGOCD,
     ["/spec/source/path"]),
    ("application-project", patched(APP_VISION, ("/spec/source", DELETE), ("/spec/sources", [
        {"path": "overlays/dev/teams/vision/workloads"}, {"path": "overlays/dev/teams/vision/platform"}])), ARGOCD,
     ["/spec/sources"]),
    ("application-project", patched(APP_VISION, ("/spec/destination/namespace", "nlp")), ARGOCD,
     ["/spec/destination/namespace"]),
    ("application-project", patched(APP_VISION, ("/spec/project", "default")), ARGOCD, ["/spec/project"]),
    ("application-project", patched(APP_VISION, ("/spec/project", DELETE)), ARGOCD, ["/spec/project"]),
    ("application-project", patched(APP_VISION, ("/spec/project", "dev-platform"),
                                    ("/spec/destination/namespace", "jupyterhub")), ARGOCD, []),
    ("exposed-routes", INGRESS, WORKLOADS, []),
    ("exposed-routes", patched(INGRESS, ("/spec/rules/0/host", "dev.ml.example.com")), WORKLOADS, []),
    ("exposed-routes", patched(INGRESS, ("/spec/ingressClassName", "public")), WORKLOADS, ["/spec/ingressClassName"]),
    ("exposed-routes", patched(INGRESS, ("/spec/ingressClassName", DELETE)), WORKLOADS, ["/spec/ingressClassName"]),
    ("exposed-routes", patched(INGRESS, ("/spec/rules/0/host", "login.example.com")), WORKLOADS,
     ["/spec/rules/0/host"]),
    ("exposed-routes", patched(INGRESS, ("/spec/rules/0/host", "evil-dev.ml.example.com.attacker.io")), WORKLOADS,
     ["/spec/rules/0/host"]),
    ("exposed-routes", patched(INGRESS, ("/spec/rules/0/host", "xdev.ml.example.com")), WORKLOADS,
     ["/spec/rules/0/host"]),
    ("exposed-routes", patched(INGRESS, ("/spec/rules/0/host", DELETE)), WORKLOADS, ["/spec/rules/0/host"]),
    ("exposed-routes", patched(INGRESS, ("/spec/tls", [{"hosts": ["ranker.dev.ml.example.com", "sso.example.com"]}])),
     WORKLOADS, ["/spec/tls/0/hosts/1"]),
    ("exposed-routes", patched(INGRESS, ("/spec/defaultBackend", {"service": {"name": "ranker", "port": {"number": 1}}})),
     WORKLOADS, ["/spec/defaultBackend"]),
    ("exposed-routes", INGRESS, "overlays/prod/teams/vision/workloads", ["/spec/rules/0/host"]),  # prod: no domain
    ("kueue-queues", CLUSTERQUEUE, QUEUEING, []),
    ("kueue-queues", LOCALQUEUE, PLATFORM, ["/kind"]),  # CTX's dev queues nothing
    ("kueue-queues", JOB, WORKLOADS, ["/metadata/labels/" + QUEUE_LABEL]),  # CTX's dev queues nothing
    ("kueue-queues", patched(CLUSTERQUEUE, ("/spec/namespaceSelector", {})), QUEUEING, ["/spec/namespaceSelector"]),
    ("team-namespace", LOCALQUEUE, PLATFORM, []),
    ("team-namespace", LOCALQUEUE, WORKLOADS, ["/kind"]),  # teams make no queues
    ("team-namespace", CLUSTERQUEUE, WORKLOADS, ["/kind"]),
    ("team-namespace", FLAVOR, PLATFORM, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERQUEUE, QUEUEING, []),
    ("cluster-scoped-platform-only", FLAVOR, QUEUEING, []),
    ("cluster-scoped-platform-only", patched(FLAVOR, ("/metadata/namespace", "vision")), QUEUEING,
     ["/metadata/namespace"]),
    ("cluster-scoped-platform-only", CLUSTERROLE, QUEUEING, ["/kind"]),
    ("cluster-scoped-platform-only", LOCALQUEUE, QUEUEING, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERQUEUE, ARGOCD, ["/kind"]),
    ("cluster-scoped-platform-only", CLUSTERQUEUE, "overlays/dev/extras", ["/kind"]),
    ("appproject-tenancy", patched(PROJECT_VISION, (W + "/1", {"group": "kueue.x-k8s.io", "kind": "LocalQueue"})),
     ARGOCD, [W + "/1/kind"]),
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/clusterResourceWhitelist",
                                                      [{"group": "", "kind": "Namespace"},
                                                       {"group": "kueue.x-k8s.io", "kind": "ClusterQueue"}])),
     ARGOCD, ["/spec/clusterResourceWhitelist/1"]),  # CTX's dev queues nothing
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/destinations/0/namespace", "")), ARGOCD, [A]),
    ("trainjob-runtimes", TRAINJOB, WORKLOADS, []),
    ("trainjob-runtimes", patched(TRAINJOB, ("/spec/runtimeRef/name", "gpu-miner")), WORKLOADS,
     ["/spec/runtimeRef/name"]),
    ("trainjob-runtimes", patched(TRAINJOB, ("/spec/runtimeRef/kind", "TrainingRuntime")), WORKLOADS,
     ["/spec/runtimeRef"]),
    ("pod-security-restricted", TRAINJOB, WORKLOADS, []),
    ("pod-security-restricted", patched(TRAINJOB, (TJ + "/securityContext/runAsUser", 0)), WORKLOADS,
     [TJ + "/securityContext/runAsUser"]),
    ("requests-and-limits", TRAINJOB, WORKLOADS, []),
    ("requests-and-limits", patched(TRAINJOB, ("/spec/trainer/resourcesPerNode", DELETE)), WORKLOADS,
     [TJ + f"/containers/0/resources/{k}/{r}" for k in ("requests", "limits") for r in ("cpu", "memory")]),
    ("allowed-registries", patched(TRAINJOB, ("/spec/trainer/image", "docker.io/x/y:1")), WORKLOADS,
     [TJ + "/containers/0/image"]),
    ("no-host-access", patched(TRAINJOB, (TJ + "/volumes/0", {"name": "h", "hostPath": {"path": "/"}})), WORKLOADS,
     [TJ + "/volumes/0/hostPath"]),
    ("team-namespace", TRAINJOB, WORKLOADS, ["/kind"]),  # CTX's platform runs no Trainer: no TrainJob
    ("rbac-bindings", BINDING, PLATFORM, []),
    ("rbac-bindings", patched(BINDING, ("/roleRef/name", "cluster-admin")), PLATFORM, ["/roleRef/name"]),
    ("rbac-bindings", patched(BINDING, ("/kind", "ClusterRoleBinding"), ("/roleRef/name", "cluster-admin")), ARGOCD,
     ["/roleRef/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0/name", "system:authenticated")), PLATFORM, ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0", {"kind": "User", "name": "system:anonymous"})), PLATFORM,
     ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0/name", "system:serviceaccounts")), PLATFORM, ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/2/namespace", "nlp")), PLATFORM, ["/subjects/2"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0/name", "system:serviceaccounts:nlp")), PLATFORM,
     ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0", {"kind": "User", "name": "system:serviceaccount:nlp:runner"})),
     PLATFORM, ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0/name", "system:nodes")), PLATFORM, ["/subjects/0/name"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/2/namespace", "default")), PLATFORM, ["/subjects/2"]),
    ("rbac-bindings", patched(BINDING, ("/subjects/0", {"kind": "User", "name": "system:serviceaccount:vision:runner"})),
     PLATFORM, []),
    ("rbac-bindings", patched(BINDING, ("/subjects/0/name", "system:serviceaccounts:vision")), PLATFORM, []),
]


@pytest.mark.parametrize("name, obj, overlay, expected", CASES,
                         ids=[f"{c[0]}-{i}-{'pass' if not c[3] else 'fail'}" for i, c in enumerate(CASES)])
def test_policy(name, obj, overlay, expected):
    assert found(name, obj, overlay) == expected


QUEUED = Context(CTX.registries, CTX.teams, queueing=frozenset({"dev"}))
QUEUED_CASES = [
    ("kueue-queues", JOB, WORKLOADS, []),
    ("kueue-queues", LOCALQUEUE, PLATFORM, []),
    ("kueue-queues", patched(LOCALQUEUE, ("/spec/clusterQueue", "nlp")), PLATFORM, ["/spec/clusterQueue"]),
    ("kueue-queues", patched(JOB, ("/metadata/labels/kueue.x-k8s.io~1queue-name", "nlp")), WORKLOADS,
     ["/metadata/labels/" + QUEUE_LABEL]),  # another team's queue: no such LocalQueue in vision
    ("kueue-queues", patched(JOB, ("/metadata/annotations", {"kueue.x-k8s.io/queue-name": "x"})), WORKLOADS,
     ["/metadata/annotations/" + QUEUE_LABEL]),
    ("kueue-queues", patched(DEPLOYMENT, ("/spec/template/metadata", {"labels": {"kueue.x-k8s.io/queue-name": "q"}})),
     WORKLOADS, ["/spec/template/metadata/labels/" + QUEUE_LABEL]),
    ("kueue-queues", patched(LOCALQUEUE, ("/metadata/name", "nlp")), PLATFORM, ["/metadata/name"]),
    ("kueue-queues", patched(CLUSTERQUEUE, ("/spec/namespaceSelector", {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["vision", "nlp"]}]})), QUEUEING,
     ["/spec/namespaceSelector"]),
    ("kueue-queues", patched(CLUSTERQUEUE, ("/spec/namespaceSelector/matchLabels/kubernetes.io~1metadata.name", "nlp")),
     QUEUEING, ["/spec/namespaceSelector"]),
    ("kueue-queues", patched(CLUSTERQUEUE, ("/metadata/name", "ops")), QUEUEING, ["/metadata/name"]),
    ("kueue-queues", patched(CLUSTERQUEUE, ("/spec/cohortName", "elsewhere")), QUEUEING, ["/spec/cohortName"]),
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/clusterResourceWhitelist",
                                                      [{"group": "", "kind": "Namespace"},
                                                       {"group": "kueue.x-k8s.io", "kind": "ClusterQueue"}]),
                                   ("/spec/destinations", [*PROJECT_PLATFORM["spec"]["destinations"],
                                                           {"server": "https://dev", "namespace": ""}])), ARGOCD, []),
    ("appproject-tenancy", patched(PROJECT_PLATFORM, ("/spec/clusterResourceWhitelist",
                                                      [{"group": "", "kind": "Namespace"},
                                                       {"group": "kueue.x-k8s.io", "kind": "LocalQueue"}])), ARGOCD,
     ["/spec/clusterResourceWhitelist/1"]),
    ("appproject-tenancy", patched(PROJECT_VISION, ("/spec/destinations/0/namespace", "")), ARGOCD, [A, A]),
]


@pytest.mark.parametrize("name, obj, overlay, expected", QUEUED_CASES)
def test_policy_where_kueue_queues(name, obj, overlay, expected):
    assert found(name, obj, overlay, QUEUED) == expected


KSERVED = Context(CTX.registries, CTX.teams, kserve=frozenset({"dev"}))
KSERVE_CASES = [
    ("team-namespace", ISVC, WORKLOADS, []),
    ("team-namespace", patched(ISVC, ("/metadata/namespace", "nlp")), WORKLOADS, ["/metadata/namespace"]),
    ("team-namespace", SERVINGRUNTIME, WORKLOADS, ["/kind"]),  # never a team's, KServe or not
    ("team-namespace", ISVC, PLATFORM, ["/kind"]),
]


@pytest.mark.parametrize("name, obj, overlay, expected", KSERVE_CASES)
def test_policy_where_kserve_serves(name, obj, overlay, expected):
    assert found(name, obj, overlay, KSERVED) == expected


def test_every_policy_has_a_pass_and_a_fail_case():
    assert {c[0] for c in CASES if c[3]} == {c[0] for c in CASES if not c[3]} == set(policy.POLICIES)


def test_policies_have_unique_codes_in_their_range_and_one_line_titles():
    codes = [p.CODE for p in policy.POLICIES.values()]
    assert len(set(codes)) == len(codes)
    assert all("KF601" <= c <= "KF619" for c in codes)
    assert all(p.TITLE and "\n" not in p.TITLE and p.__doc__.startswith(p.CODE) for p in policy.POLICIES.values())


# --- the Go glob matcher (checked against Go 1.26 path/filepath.Match on 60,000 random cases) ----------------------

@pytest.mark.parametrize("pattern, name, expected", [
    ("a*", "ab", True), ("a*", "a-b", True), ("a-*", "ab", False), ("a-*", "a-b", True), ("a?", "ab", True),
    ("a?", "a-b", False), ("a[b-]", "a-", False), ("a[-b]", "a-", False), ("a[\\-b]", "a-", True),
    ("[^a]b", "ab", False), ("[^a]b", "-b", True), ("a\\*", "a*", True), ("a\\*", "ab", False), ("[", "a", False),
    ("[]a]", "]", False), ("[z-a]", "b", False), ("*", "a/b", False), ("ab", "a-b", False), ("", "", True),
])
def test_go_match(pattern, name, expected):
    assert go_match(pattern, name) is expected


def test_team_project_pattern_is_checked_against_teams_a_a_b_and_ab():
    ctx = Context((), {"dev": {"a": "a", "a-b": "a-b", "ab": "ab"}})
    project = patched(PROJECT_VISION, ("/metadata/name", "dev-a"))
    assert found("appproject-tenancy", patched(project, (A, "a")), ARGOCD, ctx) == []
    messages = [m for _, m, _ in policy.POLICIES["appproject-tenancy"].check(patched(project, (A, "a*")),
                                                                              ctx.at(ARGOCD))]
    assert messages == ["'a*' is a pattern, not one namespace", "'a*' matches team a-b's namespace 'a-b'",
                        "'a*' matches team ab's namespace 'ab'"]
    project_ab = patched(PROJECT_VISION, ("/metadata/name", "dev-ab"), (A, "a?"))
    assert [m for _, m, _ in policy.POLICIES["appproject-tenancy"].check(project_ab, ctx.at(ARGOCD))] == [
        "'a?' is a pattern, not one namespace"]  # matches only ab itself: not a-b, not a


# --- run(): findings become Diagnostics named by overlay and object -----------------------------------------------

def test_run_names_the_overlay_the_object_and_the_pointer():
    built = {WORKLOADS: [patched(DEPLOYMENT, (C + "/image", "docker.io/library/nginx"))], PLATFORM: [NAMESPACE, DENY],
             "overlays/dev/extras": [patched(NAMESPACE, ("/metadata/annotations", DELETE))]}
    out = [(d.path, d.line, d.col, d.code, d.severity, d.message) for d in policy.run(built, CTX)]
    assert out == [
        ("overlays/dev/extras", 0, 0, "KF608", "error", "Namespace vision: /kind: cluster-scoped Namespace in "
         "overlays/dev/extras"),
        ("overlays/dev/extras", 0, 0, "KF610", "error",
         "Namespace vision: /metadata/annotations/argocd.argoproj.io~1sync-options: missing: needs Prune=false and "
         "Delete=false"),
        (WORKLOADS, 0, 0, "KF604", "error", f"Deployment vision/srv: {C}/image: 'docker.io/library/nginx' has no tag or "
                                            "digest"),
        (WORKLOADS, 0, 0, "KF605", "error", f"Deployment vision/srv: {C}/image: 'docker.io/library/nginx' is not from "
                                            "an allowed registry"),
    ]
    assert all(d.hint for d in policy.run(built, CTX))


def test_context_from_model_and_overlay_paths():
    model, diags = pipeline.load(Options(PROJECT))
    assert model is not None, diags
    ctx = Context.from_model(model, "prod").at("overlays/prod/teams/vision/workloads")
    assert ctx.teams == {"prod": {t.name: t.namespace for t in model.teams_in("prod")}}
    assert (ctx.registries, ctx.argocd_namespace, ctx.hub_namespace) == (
        model.platform.registries, model.platform.argocd_namespace, model.platform.hub_namespace)
    assert (ctx.env, ctx.team, ctx.team_owned, ctx.platform_owned) == ("prod", "vision", True, False)
    assert (ctx.at(ARGOCD).team, ctx.at(ARGOCD).platform_owned, ctx.at(PLATFORM).platform_owned) == (None, True, True)
    assert set(Context.from_model(model).teams) == set(model.platform.environments)


# --- real builds: the example repository, and teams whose names are prefixes of each other ------------------------

def _built(root):
    if isinstance(tools.find("kustomize", root), diagnostics.Diagnostic):
        pytest.skip("needs kustomize (make setup)")
    model, diags = pipeline.load(Options(root))
    assert model is not None, diags
    files = render(model)
    built, diags = build(Options(root, 4), files, overlays_of(files))
    assert diags == []
    parsed = {o: built.objects(o) for o in built.overlays}
    assert sum(len(objs) for objs in parsed.values()) == sum(built.counts.values()) > 0
    return model, parsed


def test_the_built_example_has_no_findings():
    model, built = _built(PROJECT)
    assert [f"{d.path}: [{d.code}] {d.message}" for d in policy.run(built, Context.from_model(model))] == []


TEAM = """\
name: {name}
owners: [{name}@example.com]
members: [{{group: {name}-members}}]
notebook:
  image: registry.example.com/nb:1
  profiles: [{{name: cpu, cpu: 1, memory: 1Gi}}]
storage: {{size: 1Gi}}
quota:
  lab: {{cpu: "1", memory: 2Gi}}
"""


def test_teams_a_a_b_and_ab_are_isolated(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "tests/golden/minimal/specs", root / "specs")
    shutil.copytree(PROJECT / "bases", root / "bases")
    for name in ("a", "a-b", "ab"):
        (root / f"specs/teams/{name}.yaml").write_text(TEAM.format(name=name))
    model, built = _built(root)
    assert [d.message for d in policy.run(built, Context.from_model(model))] == []
    teams = {t.name for t in model.teams_in("lab")}
    assert teams == {"a", "a-b", "ab", "solo"}
    projects = {o["metadata"]["name"]: o for o in built["overlays/lab/argocd"] if o["kind"] == "AppProject"}
    for team in teams:
        dests = [d["namespace"] for d in projects[f"lab-{team}"]["spec"]["destinations"]]
        assert dests == [team]
        assert not [(d, other) for d in dests for other in teams - {team} if go_match(d, other)]
    assert go_match("a*", "a-b") and go_match("a*", "ab")  # what a glob destination would have let through


def test_a_team_platform_overlay_without_default_deny_is_one_finding_for_the_overlay():
    out = [(d.path, d.code, d.message) for d in policy.run({PLATFORM: [NAMESPACE, ALLOW_DNS]}, CTX)]
    assert out == [(PLATFORM, "KF613", "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, "
                    "no rules)")]
    assert policy.run({WORKLOADS: [], ARGOCD: []}, CTX) == []  # only team platform overlays need it


def test_a_binding_in_one_team_namespace_may_not_name_another_teams_people():
    ctx = Context(CTX.registries, CTX.teams, people={"dev": {("Group", "vision-ds"): frozenset({"vision"}),
                                                             ("Group", "shared-ds"): frozenset({"vision", "nlp"}),
                                                             ("User", "bob@example.com"): frozenset({"nlp"})}})
    nlp = "overlays/dev/teams/nlp/platform"
    binding = patched(BINDING, ("/metadata/namespace", "nlp"), ("/subjects", [
        {"kind": "Group", "name": "vision-ds"}, {"kind": "Group", "name": "shared-ds"},
        {"kind": "User", "name": "bob@example.com"}]))
    assert found("rbac-bindings", binding, nlp, ctx) == ["/subjects/0/name"]
    assert found("rbac-bindings", patched(binding, ("/metadata/namespace", "vision")), PLATFORM, ctx) == [
        "/subjects/2/name"]
