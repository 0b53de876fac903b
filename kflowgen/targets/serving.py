"""Serving: a model's TensorFlow Serving objects for one team workloads overlay, and who may call it."""
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


def model_config(m: ServedModel, platform: Platform, env: str) -> str:
    """The ModelServerConfig in protobuf text format: this one model, pinned to one version."""
    return (f"model_config_list {{\n  config {{\n    name: '{m.name}'\n    base_path: '{base_path(m, platform)}'\n"
            f"    model_platform: 'tensorflow'\n    model_version_policy {{\n      specific {{\n"
            f"        versions: {m.environments[env].version}\n      }}\n    }}\n  }}\n}}\n")


def base_path(m: ServedModel, platform: Platform) -> str:
    return f"{platform.mount_path.rstrip('/')}/{m.path}"


def render_model(m: ServedModel, team: Team, platform: Platform, env: str) -> dict[str, dict]:
    """{file name: object} for overlays/<env>/teams/<team>/workloads/, without the namespace and standard labels
    (render._team_workloads adds them)."""
    s = m.environments[env]
    selector = {"app.kubernetes.io/name": m.name, LABEL_MODEL: m.name}  # never changes, whatever the version
    labels = {"app.kubernetes.io/name": m.name, "app.kubernetes.io/component": "model-server", LABEL_MODEL: m.name}
    config = model_config(m, platform, env)
    objs: list[dict] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{m.name}-config", "labels": labels},
        "data": {CONFIG_FILE: config}}]
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
    objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": m.name, "labels": labels},
                 "spec": {"type": "ClusterIP", "selector": selector, "ports": [
                     {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                     {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]}})
    if s.replicas > 1:
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": m.name, "labels": labels},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}})
    if s.autoscale:
        objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {"name": m.name, "labels": labels},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.name},
                              "minReplicas": s.autoscale.min_replicas, "maxReplicas": s.autoscale.max_replicas,
                              "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                  "type": "Utilization", "averageUtilization": s.autoscale.target_cpu}}}]}})
    if s.host and platform.ingress:
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": m.name, "labels": labels},
                     "spec": {"ingressClassName": platform.ingress.class_name, "rules": [{"host": s.host, "http": {
                         "paths": [{"path": f"/v1/models/{m.name}", "pathType": "Prefix", "backend": {"service": {
                             "name": m.name, "port": {"name": "http"}}}}]}}]}})
    return {f"{o['kind'].lower()}.{o['metadata']['name']}.yaml": o for o in objs}


def callers_policy(m: ServedModel, team: Team, platform: Platform, env: str) -> dict:
    """The NetworkPolicy (in the team's platform overlay: teams do not write network policy) that lets the model's
    callers reach its servers' ports: its own team's pods (as for all of them), the namespaces of the teams it names,
    and, when it is exposed, the platform's ingress controller."""
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": caller}}}
             for caller in m.callers if caller != team.name]
    if m.environments[env].host and platform.ingress:
        controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform.ingress.namespace}}}
        if platform.ingress.pod_labels:
            controller["podSelector"] = {"matchLabels": dict(platform.ingress.pod_labels)}
        peers.append(controller)
    spec: dict = {"podSelector": {"matchLabels": {LABEL_MODEL: m.name}}, "policyTypes": ["Ingress"]}
    spec["ingress"] = [{"from": peers, "ports": [{"port": GRPC_PORT, "protocol": "TCP"},
                                                 {"port": HTTP_PORT, "protocol": "TCP"}]}] if peers else []
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"model-{m.name}", "labels": {LABEL_MODEL: m.name}}, "spec": spec}
