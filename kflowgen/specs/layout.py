"""Names kflowgen gives things that share one space across teams and environments: notebook profile slugs (one hub
per environment) and Argo CD Applications and AppProjects (one Argo CD namespace, possibly one Argo CD for every
environment). The renderer names objects with these, and the rules check them for collisions with the same
functions, so the two can never disagree."""
from __future__ import annotations


def profile_slug(team: str, profile: str) -> str:
    """The JupyterHub profile slug of a team's notebook profile."""
    return f"{team}-{profile}"


def project(env: str, team: str) -> str:
    """A team's AppProject; the platform's own are project(env, 'bootstrap') and project(env, 'platform')."""
    return f"{env}-{team}"


def team_applications(env: str, team: str) -> tuple[str, str]:
    """A team's platform and workloads Applications."""
    return f"{env}-{team}-platform", f"{env}-{team}-workloads"


def shared_applications(env: str) -> tuple[str, str]:
    """An environment's app of apps and its JupyterHub Application."""
    return f"{env}-root", f"{env}-jupyterhub"


SHARED_PROJECTS = ("bootstrap", "platform")


# What a team's own Application may create in its namespace (its AppProject's namespaceResourceWhitelist, and all a
# workloads overlay may hold). Platform-owned kinds (quota, limits, RBAC, network policy, namespaces) are absent.
TEAM_KINDS = (("batch", "Job"), ("kubeflow.org", "PyTorchJob"), ("kubeflow.org", "TFJob"), ("apps", "Deployment"),
              ("", "Service"), ("", "ConfigMap"), ("policy", "PodDisruptionBudget"),
              ("autoscaling", "HorizontalPodAutoscaler"))
INGRESS = ("networking.k8s.io", "Ingress")


def team_kinds(platform) -> tuple[tuple[str, str], ...]:
    """TEAM_KINDS, and Ingress where the platform has an ingress controller for exposed models."""
    return TEAM_KINDS + ((INGRESS,) if platform.ingress else ())


# All a team's platform overlay may hold: what kflowgen renders there and what bases/team may add to every team
# namespace.
PLATFORM_KINDS = (("", "Namespace"), ("", "ResourceQuota"), ("", "LimitRange"), ("", "PersistentVolumeClaim"),
                  ("", "ServiceAccount"), ("", "ConfigMap"), ("networking.k8s.io", "NetworkPolicy"),
                  ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "RoleBinding"))
# All an environment's Argo CD folder may hold.
ARGOCD_KINDS = (("argoproj.io", "Application"), ("argoproj.io", "AppProject"))


def group_kind(obj: dict) -> tuple[str, str]:
    """(API group, kind) of an object: ('', 'Service') for v1, ('apps', 'Deployment') for apps/v1."""
    api = str(obj.get("apiVersion", ""))
    return (api.rpartition("/")[0], str(obj.get("kind", "")))
