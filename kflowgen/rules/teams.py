"""KF301, KF302: a team's name matches its file name, is unique, and is not a reserved namespace: a system namespace
of Kubernetes or of what platforms run beside kflowgen (SYSTEM), one the platform file reserves, or the name of one
of the platform's own Argo CD projects. A team named after one would get an admin RoleBinding and Pod Security labels
there."""
from __future__ import annotations

import functools

from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF301": "team name does not match its file name, or two teams share a name",
    "KF302": "team name is reserved for a system namespace",
}

# Well-known namespaces of Kubernetes, its distributions and what ML platforms run beside it; a '*' ends a prefix.
# A denylist cannot be complete: the platform file adds its own (reservedNamespaces), and CODEOWNERS gives team
# files to the platform team, who review every new team.
SYSTEM = (
    "default", "kube", "kube-*", "kubernetes-dashboard", "local-path-storage",  # Kubernetes
    "openshift", "openshift-*", "gke-*", "gmp-*", "aks-*", "azure-*", "amazon-*", "aws-*", "eks-*", "cattle-*",
    "fleet-*", "rancher-*", "tigera-operator", "calico-*", "cilium", "cilium-*", "metallb-system",  # distributions
    "argocd", "argo", "argo-*",  # Argo
    "flux-system", "tekton-pipelines", "tekton-*", "keda", "crossplane-system", "kubevirt", "velero",  # delivery, ops
    "jupyterhub", "kubeflow", "kubeflow-*", "kserve", "kserve-*", "knative-*", "istio-*", "auth", "dex",
    "oauth2-proxy", "ray-system", "kuberay", "volcano-system",  # JupyterHub, Kubeflow, serving and batch
    "gpu-operator", "nvidia-*", "network-operator", "node-feature-discovery",  # GPUs
    "kueue-system",  # queueing
    "cert-manager", "cert-manager-*", "external-secrets", "sealed-secrets", "vault",  # certificates and secrets
    "monitoring", "monitoring-*", "prometheus", "prometheus-*", "grafana", "observability", "logging", "loki",
    "opentelemetry-operator-system",  # monitoring
    "ingress-*", "nginx-ingress", "traefik", "envoy-gateway-system", "gateway-system", "linkerd", "linkerd-*",  # ingress
    "gatekeeper-system", "kyverno", "kyverno-*",  # policy
    "rook-ceph", "longhorn-system", "minio-operator",  # storage
)


def _stem(team) -> str:
    return team.source.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def reserved(name: str, patterns) -> str | None:
    """The reserved name or prefix (ending in '*') that name falls under, or None."""
    names, prefixes = _prepared(tuple(patterns))
    if name not in names and not name.startswith(prefixes):
        return None  # most names: one lookup, and one test of every prefix at once
    for pattern in patterns:
        if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return pattern
    return None


@functools.lru_cache(maxsize=8)
def _prepared(patterns: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    return frozenset(patterns), tuple(pattern[:-1] for pattern in patterns if pattern.endswith("*"))


def check(model):
    p = model.platform
    # platform and bootstrap name the platform's own Argo CD projects (<env>-platform, <env>-bootstrap)
    patterns = (*SYSTEM, p.argocd_namespace, p.hub_namespace, "platform", "bootstrap", *p.reserved_namespaces)
    owner: dict[str, str] = {}  # the first file in this order owns the name: one whose stem is the name, then by path
    for t in sorted(model.teams, key=lambda t: (_stem(t) != t.name, t.source.path)):
        owner.setdefault(t.name, t.source.path)
    for t in model.teams:
        stem = _stem(t)
        if owner[t.name] != t.source.path:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is already defined in {owner[t.name]}",
                        f"give each team one spec file; if this is a new team, rename it to '{stem}'")
        elif stem != t.name:
            yield error(t.source.path, t.source.at("/name"), "KF301",
                        f"team '{t.name}' is in a file named '{stem}'",
                        f"rename the file to {t.name}.yaml or the team to '{stem}'")
        hit = reserved(t.name, patterns)
        if hit:
            by = "the platform file" if hit in p.reserved_namespaces else "kflowgen"
            yield error(t.source.path, t.source.at("/name"), "KF302",
                        f"team name '{t.name}' is a system or platform namespace ({hit}, reserved by {by})",
                        "choose another team name")
