"""Policies on built manifests (the gate's kube-linter): each rule is a small module with CODE, TITLE and a
check(obj, ctx) generator of (json pointer, message, hint), registered in POLICIES; run() makes Diagnostics."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

import yaml

from kflowgen.specs import layout
from kflowgen.diagnostics import Diagnostic, error

Finding = tuple[str, str, str]  # (json pointer, message, hint)

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
})


@dataclass(frozen=True)
class Context:
    """What the policies know besides the object: platform settings, teams per environment, and the overlay
    being checked (set by run())."""

    registries: tuple[str, ...]
    teams: dict[str, dict[str, str]]  # environment -> {team: namespace}
    argocd_namespace: str = "argocd"
    hub_namespace: str = "jupyterhub"
    overlay: str = field(default="")
    # environment -> {("User", owner) or ("Group", member group): the teams that name it}
    people: dict[str, dict[tuple[str, str], frozenset[str]]] = field(default_factory=dict)
    egress: dict[str, tuple] = field(default_factory=dict)  # environment -> the platform's egress rules, rendered
    team_kinds: tuple[tuple[str, str], ...] = ()  # what a workloads overlay may hold (default layout.TEAM_KINDS)
    ingress_class: str | None = None  # the platform's IngressClass for exposed models
    domains: dict[str, str] = field(default_factory=dict)  # environment -> domain of exposed models

    @classmethod
    def from_model(cls, model, env: str | None = None) -> Context:
        p = model.platform
        envs = [env] if env else list(p.environments)
        people: dict[str, dict[tuple[str, str], frozenset[str]]] = {}
        for e in envs:
            named: dict[tuple[str, str], set[str]] = {}
            for t in model.teams_in(e):
                for who in [("User", o) for o in t.owners] + [("Group", g) for g, _ in t.members]:
                    named.setdefault(who, set()).add(t.name)
            people[e] = {who: frozenset(teams) for who, teams in sorted(named.items())}
        from kflowgen.targets.render import egress_rules

        return cls(tuple(p.registries), {e: {t.name: t.namespace for t in model.teams_in(e)} for e in envs},
                   p.argocd_namespace, p.hub_namespace, people=people,
                   egress={e: tuple(json.dumps(r, sort_keys=True) for r in egress_rules(p, e)) for e in envs},
                   team_kinds=layout.team_kinds(p), ingress_class=p.ingress.class_name if p.ingress else None,
                   domains={e: p.environments[e].domain for e in envs if p.environments[e].domain})

    def teams_of(self, kind: str, name: str) -> frozenset[str]:
        """The teams of the overlay's environment that name this user (as an owner) or group (as a member group)."""
        return self.people.get(self.env, {}).get((kind, name), frozenset())

    def at(self, overlay: str) -> Context:
        return replace(self, overlay=overlay)

    @cached_property
    def env(self) -> str:
        parts = self.overlay.split("/")
        return parts[1] if len(parts) > 1 and parts[0] == "overlays" else ""

    @cached_property
    def team(self) -> str | None:
        """The team of a team overlay (`overlays/<env>/teams/<team>/...`), else None."""
        parts = self.overlay.split("/")
        return parts[3] if len(parts) > 3 and parts[2] == "teams" else None

    @property
    def platform_owned(self) -> bool:
        return self.overlay.endswith(("/platform", "/argocd"))

    @property
    def team_owned(self) -> bool:
        return self.overlay.endswith("/workloads")

    @cached_property
    def team_namespaces(self) -> dict[str, str]:
        """{team: namespace} of the overlay's environment."""
        return self.teams.get(self.env, {})

    @cached_property
    def known_namespaces(self) -> frozenset[str]:
        """Argo CD's, the hub's and every team's namespace in the overlay's environment."""
        return frozenset({self.argocd_namespace, self.hub_namespace, *self.team_namespaces.values()})

    def team_of_project(self, project: str) -> str | None:
        """The team whose AppProject in this environment is named `project` (`<env>-<team>`), else None."""
        team = project.removeprefix(f"{self.env}-") if project.startswith(f"{self.env}-") else None
        return team if team in self.team_namespaces else None


class Policy(Protocol):
    CODE: str
    TITLE: str

    def check(self, obj: dict, ctx: Context) -> Iterator[Finding]: ...


# --- what the rules share: JSON pointers, object identity, pod templates and their containers --------------------

def ptr(*parts) -> str:
    """A JSON pointer (RFC 6901): ptr('spec', 'nvidia.com/gpu') -> '/spec/nvidia.com~1gpu'."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def identity(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{meta.get('name', '?')}"


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"})


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(pointer, pod spec) of every pod template: Pod, PodTemplate, the WORKLOADS, CronJob, and the replica
    templates of Kubeflow jobs (PyTorchJob, TFJob, MPIJob, ...)."""
    spec = _dict(obj.get("spec"))
    if obj.get("kind") == "Pod":
        yield "/spec", spec
    elif obj.get("kind") == "PodTemplate":
        yield "/template/spec", _dict(_dict(obj.get("template")).get("spec"))
    elif obj.get("kind") == "CronJob":
        yield "/spec/jobTemplate/spec/template/spec", \
            _dict(_dict(_dict(_dict(spec.get("jobTemplate")).get("spec")).get("template")).get("spec"))
    elif obj.get("kind") in WORKLOADS:
        yield "/spec/template/spec", _dict(_dict(spec.get("template")).get("spec"))
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs") and str(obj.get("apiVersion", "")).startswith("kubeflow.org/"):
            for role, r in sorted(_dict(replicas).items()):
                yield ptr("spec", key, role, "template", "spec"), _dict(_dict(_dict(r).get("template")).get("spec"))


def containers(pod: dict, at: str, fields=("initContainers", "containers", "ephemeralContainers")):
    """(pointer, container) of a pod spec's containers; ephemeral containers cannot set resources or ports."""
    for f in fields:
        for i, c in enumerate(pod.get(f) or []):
            yield f"{at}/{f}/{i}", _dict(c)


def all_containers(obj: dict, fields=("initContainers", "containers", "ephemeralContainers")):
    for at, pod in pod_specs(obj):
        yield from containers(pod, at, fields)


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    """One character of a [class] in Go's filepath.Match: `\\c` is c; an unescaped `-` or `]` is malformed."""
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        return (pattern[i + 1], i + 2) if i + 1 < len(pattern) else (None, i)
    return pattern[i], i + 1


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match on '/'-separated names: `*`, `?`, `[a-z]`, `[^a-z]`, `\\c`. A malformed pattern
    matches nothing, as Argo CD treats the error (`ok && err == nil`)."""
    rx, i, n = [], 0, len(pattern)
    while i < n:
        c, i = pattern[i], i + 1
        if c in "*?":
            rx.append("[^/]*" if c == "*" else "[^/]")
        elif c == "\\":
            if i == n:
                return False
            rx.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            negate = i < n and pattern[i] == "^"
            i += negate
            items: list[str] = []
            while not (i < n and pattern[i] == "]" and items):
                lo, i = _class_char(pattern, i)
                hi = lo
                if lo is not None and i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                if lo is None or hi is None:
                    return False
                items.append(re.escape(lo) + ("-" + re.escape(hi) if hi > lo else "") if hi >= lo else "(?!)")
            i += 1
            ranges = [r for r in items if r != "(?!)"]
            rx.append(("[^%s]" if negate else "[%s]") % "".join(ranges) if ranges else ("[^/]" if negate else "(?!)"))
        else:
            rx.append(re.escape(c))
    return re.fullmatch("".join(rx), name, re.DOTALL) is not None


# --- the registry -----------------------------------------------------------------------------------------------
# Imported here, after the helpers above, because the rule modules use them.
from kflowgen.checks.policy import (
    applications,
    appprojects,
    cluster_scoped,
    gpu_limits,
    host_access,
    image_tags,
    network,
    pod_security,
    rbac,
    registries,
    resources,
    routes,
    sync_options,
    team_namespace,
)

# name -> policy module, in code order
POLICIES: dict[str, Policy] = {
    "pod-security-restricted": pod_security,
    "requests-and-limits": resources,
    "gpu-limits-equal-requests": gpu_limits,
    "image-tag": image_tags,
    "allowed-registries": registries,
    "no-host-access": host_access,
    "team-namespace": team_namespace,
    "cluster-scoped-platform-only": cluster_scoped,
    "appproject-tenancy": appprojects,
    "keep-namespaces-and-volumes": sync_options,
    "application-project": applications,
    "rbac-bindings": rbac,
    "network-isolation": network,
    "exposed-routes": routes,
}


def parse(built: dict[str, str]) -> dict[str, list[dict]]:
    """Each overlay's built YAML (as `kustomize build` prints it) as a list of objects."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {overlay: [d for d in yaml.load_all(text, Loader=loader) if isinstance(d, dict)]
            for overlay, text in built.items()}


def run(built: dict[str, list[dict]], ctx: Context) -> list[Diagnostic]:
    """Every policy over every object of every overlay; one error per finding, named by overlay and object. A policy
    with a check_overlay(objects, ctx) also judges each overlay as a whole (what must be there)."""
    out: list[Diagnostic] = []
    whole = [p for p in POLICIES.values() if hasattr(p, "check_overlay")]
    for overlay, objects in sorted(built.items()):
        octx = ctx.at(overlay)
        for obj in objects:
            for policy in POLICIES.values():
                for pointer, message, hint in policy.check(obj, octx):
                    out.append(error(overlay, (0, 0), policy.CODE, f"{identity(obj)}: {pointer}: {message}", hint))
        for policy in whole:
            for _, message, hint in policy.check_overlay(objects, octx):
                out.append(error(overlay, (0, 0), policy.CODE, message, hint))
    return out
