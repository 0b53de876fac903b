"""Serving: a model's TensorFlow Serving objects for one team workloads overlay (a Deployment, or a KServe
InferenceService), and who may call it."""
from __future__ import annotations

import hashlib

from kflowgen.targets import pods
from kflowgen.specs import quantity
from kflowgen.specs.served import ServedModel
from kflowgen.specs.layout import ANNOTATION_CONFIG, LABEL_MODEL, LABEL_TEAM, LABEL_VERSION
from kflowgen.specs.model import Platform, Team

SERVER = "/usr/bin/tensorflow_model_server"  # called directly: the image's entrypoint script adds flags we don't want
GRPC_PORT, HTTP_PORT = 8500, 8501
CONFIG_DIR, CONFIG_FILE = "/etc/tfserving", "models.config"
RUN_AS = 1000  # the image has no USER (it runs as root); Pod Security "restricted" needs a non-root uid

# KServe v0.20 (config/runtimes/kserve-tensorflow-serving.yaml and pkg/constants): the runtime's container listens on
# REST 8080 and gRPC 9000; a pvc:// storageUri is mounted (the claim's sub-path, read-only) at /mnt/models; the
# runtime's args (--model_name, --model_base_path=/mnt/models, ...) come first and the InferenceService's are
# appended, and TensorFlow Serving reads --model_config_file instead of --model_base_path when both are given: so
# the same pinned ModelServerConfig as the Deployment's serves exactly the spec's version.
KSERVE_API = "serving.kserve.io/v1beta1"
KSERVE_HTTP_PORT, KSERVE_GRPC_PORT = 8080, 9000
KSERVE_MODELS = "/mnt/models"
KSERVE_CONTAINER = "kserve-container"  # the predictor container's name in KServe's runtimes and pods
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe's, on every pod of an InferenceService
KSERVE_COMPONENT_LABEL = "component"  # KServe's: "predictor" on predictor pods, canaries' included
DEPLOYMENT_MODE, AUTOSCALER_CLASS = "serving.kserve.io/deploymentMode", "serving.kserve.io/autoscalerClass"
VISIBILITY = "networking.kserve.io/visibility"  # cluster-local: KServe makes no Ingress; kflowgen's `host` does


def model_config(m: ServedModel, platform: Platform, env: str, version: int | None = None,
                 base: str | None = None) -> str:
    """The ModelServerConfig in protobuf text format: this one model, pinned to one version (the environment's, or
    the one given), under base (the model's folder on the NAS mount by default)."""
    return (f"model_config_list {{\n  config {{\n    name: '{m.name}'\n    base_path: '{base or base_path(m, platform)}'\n"
            f"    model_platform: 'tensorflow'\n    model_version_policy {{\n      specific {{\n"
            f"        versions: {version or m.environments[env].version}\n      }}\n    }}\n  }}\n}}\n")


def base_path(m: ServedModel, platform: Platform) -> str:
    return f"{platform.mount_path.rstrip('/')}/{m.path}"


def render_model(m: ServedModel, team: Team, platform: Platform, env: str) -> dict[str, dict]:
    """{file name: object} for overlays/<env>/teams/<team>/workloads/, without the namespace and standard labels
    (render._team_workloads adds them)."""
    if m.environments[env].backend == "kserve":
        return render_kserve(m, team, platform, env)
    s = m.environments[env]
    selector = {"app.kubernetes.io/name": m.name, LABEL_MODEL: m.name}  # never changes, whatever the version
    labels = {"app.kubernetes.io/name": m.name, "app.kubernetes.io/component": "model-server", LABEL_MODEL: m.name}
    config = model_config(m, platform, env)
    objs: list[dict] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{m.name}-config", "labels": labels},
        "data": {CONFIG_FILE: config}}]
    pod, resources = _pod(m, platform, env)
    env_vars = [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                for k, (secret, key) in m.secrets.items()]
    pod["containers"] = [{
        "name": "tfserving", "image": m.image_for(env), "command": [SERVER],
        "args": [f"--port={GRPC_PORT}", f"--rest_api_port={HTTP_PORT}",
                 f"--model_config_file={CONFIG_DIR}/{CONFIG_FILE}"],
        **({"env": env_vars} if env_vars else {}),
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # the server opens its ports only once the model is loaded, which can take minutes
        "startupProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{m.name}", "port": "http"}, "periodSeconds": 10,
                           "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 20, "failureThreshold": 3},
        "resources": {"requests": resources, "limits": dict(resources)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "nas", "mountPath": base_path(m, platform), "subPath": m.path, "readOnly": True}]}]
    pod["volumes"] = [{"name": "config", "configMap": {"name": f"{m.name}-config"}},
                      {"name": "nas", "persistentVolumeClaim": {"claimName": "nas", "readOnly": True}}]
    spec: dict = {} if s.autoscale else {"replicas": s.replicas}  # an HPA owns replicas; Argo CD must not reset them
    spec.update({
        "revisionHistoryLimit": 3, "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": {**labels, LABEL_VERSION: str(s.version), LABEL_TEAM: team.name},
                                  "annotations": {ANNOTATION_CONFIG: hashlib.sha256(config.encode()).hexdigest()}},
                     "spec": pod}})
    objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": m.name, "labels": labels},
                 "spec": spec})
    objs += _service_and_budget(m, s, labels, selector)
    if s.autoscale:
        objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {"name": m.name, "labels": labels},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.name},
                              "minReplicas": s.autoscale.min_replicas, "maxReplicas": s.autoscale.max_replicas,
                              "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                  "type": "Utilization", "averageUtilization": s.autoscale.target_cpu}}}]}})
    objs += _ingress(m, platform, env, labels)
    return {f"{o['kind'].lower()}.{o['metadata']['name']}.yaml": o for o in objs}


def _ingress(m: ServedModel, platform: Platform, env: str, labels: dict) -> list[dict]:
    """The Ingress of an exposed model: https://<host>/v1/models/<name> to the model's Service (either backend)."""
    host = m.environments[env].host
    if not (host and platform.ingress):
        return []
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": m.name, "labels": labels},
             "spec": {"ingressClassName": platform.ingress.class_name, "rules": [{"host": host, "http": {
                 "paths": [{"path": f"/v1/models/{m.name}", "pathType": "Prefix", "backend": {"service": {
                     "name": m.name, "port": {"name": "http"}}}}]}}]}}]


def _pod(m: ServedModel, platform: Platform, env: str) -> tuple[dict, dict]:
    """What the two backends' server pods share: the pod-level settings (service account, security context, GPU
    nodes, pull secrets) and the container's resources."""
    s = m.environments[env]
    resources = {"cpu": quantity.cpu(s.cpu), "memory": str(s.memory)}
    pod: dict = {"serviceAccountName": "runner", "automountServiceAccountToken": False,
                 "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                     "seccompProfile": {"type": "RuntimeDefault"}}}
    if s.gpu_type:
        gpu = platform.gpu_types[s.gpu_type]
        resources[gpu.resource] = str(s.gpu_count)
        pod["nodeSelector"] = dict(gpu.node_selector)
        if gpu.tolerations:
            pod["tolerations"] = pods.gpu_tolerations(platform, s.gpu_type)
    if pods.pull_secrets(platform, [m.image_for(env)]):
        pod["imagePullSecrets"] = pods.image_pull_secrets(platform, [m.image_for(env)])
    return pod, resources


def kserve_config(m: ServedModel, version: int) -> str:
    """The ConfigMap of one version's ModelServerConfig under KServe: `<model>-v<version>`."""
    return f"{m.name}-v{version}"


def render_kserve(m: ServedModel, team: Team, platform: Platform, env: str) -> dict[str, dict]:
    """The KServe backend: an InferenceService in Standard mode on the platform's TensorFlow Serving runtime, its
    model from the team NAS (`pvc://nas/<path>`), pinned to the spec's version by a ConfigMap per served version; with
    a canary, `previous` is the stable predictor and `version` the canary (KServe v0.20's spec.canary: its own
    Deployment of ceil(replicas x share) pods). Beside it kflowgen's own Service `<model>` (gRPC 8500, REST 8501, as
    the Deployment backend's: callers do not change address) over all the InferenceService's predictor pods, so the
    canary gets its share of requests by its share of pods (v0.20 routes no weights in Standard mode), a
    PodDisruptionBudget, and the Ingress of an exposed model."""
    s = m.environments[env]
    on = platform.kserve_in(env)  # always on where this renders (KF360 otherwise): KServe's own runtime by default
    runtime = on.runtime if on else "kserve-tensorflow-serving"
    image = m.image_for(env)
    selector = {KSERVE_ISVC_LABEL: m.name, KSERVE_COMPONENT_LABEL: "predictor"}
    labels = {"app.kubernetes.io/name": m.name, "app.kubernetes.io/component": "model-server", LABEL_MODEL: m.name}
    stable = s.previous if s.canary else s.version
    versions = [stable] + ([s.version] if s.canary else [])
    objs: list[dict] = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": kserve_config(m, v), "labels": labels},
                         "data": {CONFIG_FILE: model_config(m, platform, env, v, KSERVE_MODELS)}} for v in versions]
    pod, resources = _pod(m, platform, env)
    env_vars = [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                for k, (secret, key) in m.secrets.items()]
    model = {"modelFormat": {"name": "tensorflow"}, "runtime": runtime, "storageUri": f"pvc://nas/{m.path}",
             "image": image}
    if "@sha256:" not in image:  # KServe would add -gpu to the tag of a GPU server's image; the runtimeVersion it
        model["runtimeVersion"] = image.rpartition(":")[2]  # is given replaces the tag instead: with the same tag
    model.update({
        "args": [f"--model_config_file={CONFIG_DIR}/{CONFIG_FILE}"],
        **({"env": env_vars} if env_vars else {}),
        "ports": [{"name": "http", "containerPort": KSERVE_HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": KSERVE_GRPC_PORT, "protocol": "TCP"}],
        "startupProbe": {"tcpSocket": {"port": KSERVE_GRPC_PORT}, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{m.name}", "port": KSERVE_HTTP_PORT}, "periodSeconds": 10,
                           "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": KSERVE_GRPC_PORT}, "periodSeconds": 20, "failureThreshold": 3},
        "resources": {"requests": resources, "limits": dict(resources)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]})

    def predictor(version: int, canary: bool = False) -> dict:
        # the CRD requires a canary's model container to be named (and the stable one must not be): KServe's own name
        # for it, which its storage mount looks for
        return {"labels": {LABEL_VERSION: str(version)}, **pod,
                "volumes": [{"name": "config", "configMap": {"name": kserve_config(m, version)}}],
                "model": {"name": KSERVE_CONTAINER, **model} if canary else model}

    stable_predictor = {"minReplicas": s.replicas}
    if s.autoscale:
        stable_predictor.update({"maxReplicas": s.autoscale.max_replicas, "scaleMetric": "cpu",
                                 "scaleTarget": s.autoscale.target_cpu})
    stable_predictor["deploymentStrategy"] = {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    stable_predictor.update(predictor(stable))
    spec: dict = {"predictor": stable_predictor}
    if s.canary:
        # complete, not only what differs: KServe overlays it on the stable predictor (mergo), and validates it alone
        spec["canary"] = [{"trafficPercent": s.canary,
                           "predictor": {"name": f"v{s.version}", **predictor(s.version, canary=True)}}]
    objs.append({"apiVersion": KSERVE_API, "kind": "InferenceService", "metadata": {
        "name": m.name, "labels": {**labels, VISIBILITY: "cluster-local"},
        "annotations": {DEPLOYMENT_MODE: "Standard", AUTOSCALER_CLASS: "hpa" if s.autoscale else "none"}},
        "spec": spec})
    objs += _service_and_budget(m, s, labels, selector)
    objs += _ingress(m, platform, env, labels)
    return {f"{o['kind'].lower()}.{o['metadata']['name']}.yaml": o for o in objs}


def _service_and_budget(m, s, labels: dict, selector: dict) -> list[dict]:
    """The model's Service (callers' gRPC and HTTP ports) and, with more than one replica, its PodDisruptionBudget: the
    same for both backends, whose pods carry the same ports and selector labels."""
    objs = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": m.name, "labels": labels},
             "spec": {"type": "ClusterIP", "selector": selector, "ports": [
                 {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                 {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]}}]
    if s.replicas > 1:
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": m.name, "labels": labels},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}})
    return objs


def server_ports(backend: str) -> tuple[int, int]:
    """The ports a model server's pods listen on (gRPC, REST): what network policy opens (it sees pod ports, not the
    Service's 8500 and 8501)."""
    return (KSERVE_GRPC_PORT, KSERVE_HTTP_PORT) if backend == "kserve" else (GRPC_PORT, HTTP_PORT)


def callers_policy(m: ServedModel, team: Team, platform: Platform, env: str) -> dict:
    """The NetworkPolicy (in the team's platform overlay: teams do not write network policy) that lets the model's
    callers reach its servers' ports (server_ports; a KServe model's pods carry the InferenceService's labels, the
    model's among them): its own team's pods (as for all of them), the namespaces of the teams it names,
    and, when it is exposed, the platform's ingress controller."""
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": caller}}}
             for caller in m.callers if caller != team.name]
    if m.environments[env].host and platform.ingress:
        controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform.ingress.namespace}}}
        if platform.ingress.pod_labels:
            controller["podSelector"] = {"matchLabels": dict(platform.ingress.pod_labels)}
        peers.append(controller)
    spec: dict = {"podSelector": {"matchLabels": {LABEL_MODEL: m.name}}, "policyTypes": ["Ingress"]}
    ports = server_ports(m.environments[env].backend)
    spec["ingress"] = [{"from": peers, "ports": [{"port": port, "protocol": "TCP"} for port in ports]}] if peers else []
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"model-{m.name}", "labels": {LABEL_MODEL: m.name}}, "spec": spec}
