"""Where kflowgen puts things and what it calls them, in one place: the overlay folders of overlays/ and what a path
there says (environment, team, part); the labels and annotations kflowgen sets; and the names that share one space
across teams and environments: notebook profile slugs (one hub per environment) and Argo CD Applications and
AppProjects (one Argo CD namespace, possibly one Argo CD for every environment). The renderer names objects with
these, and the rules and checks read them back with the same functions, so the two can never disagree."""
from __future__ import annotations

from dataclasses import dataclass

# --- overlays/ ------------------------------------------------------------------------------------------------------

OVERLAYS = "overlays"  # the folder kflowgen owns: every generated file lives here
PLATFORM_PART, WORKLOADS_PART = "platform", "workloads"
QUEUEING_PART = "queueing"
DIRECTORY_PARTS = ("argocd", QUEUEING_PART)  # overlays/<env>/<part> synced as plain directories of manifests
BASES = "bases/team"  # the platform's own manifests for every team namespace, built into each team's platform overlay


def environment_folder(env: str) -> str:
    return f"{OVERLAYS}/{env}"


def argocd_folder(env: str) -> str:
    """An environment's Argo CD objects: a plain directory of manifests, synced as is by its root Application."""
    return f"{OVERLAYS}/{env}/argocd"


def queueing_folder(env: str) -> str:
    """An environment's cluster-scoped Kueue objects (flavors, cohort, a ClusterQueue per team): a plain directory of
    manifests, synced as is by its queueing Application in the platform's project."""
    return f"{OVERLAYS}/{env}/{QUEUEING_PART}"


def hub_values(env: str) -> str:
    """An environment's values for the Zero to JupyterHub chart."""
    return f"{OVERLAYS}/{env}/jupyterhub/values.yaml"


def team_overlay(env: str, team: str, part: str) -> str:
    """A team's platform-owned (PLATFORM_PART) or own (WORKLOADS_PART) overlay."""
    return f"{OVERLAYS}/{env}/teams/{team}/{part}"


@dataclass(frozen=True)
class Place:
    """What a path under overlays/ says: its environment, and for a team overlay the team and the part."""

    env: str
    team: str | None = None
    part: str | None = None  # "platform", "workloads" (a team's), "argocd", "queueing", "jupyterhub", or another


def place(path: str) -> Place | None:
    """The Place of a folder or file under overlays/ (None outside overlays/): overlays/<env>/teams/<team>/<part>/...,
    overlays/<env>/argocd, overlays/<env>/jupyterhub/values.yaml."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != OVERLAYS or not parts[1]:
        return None
    if len(parts) >= 4 and parts[2] == "teams":
        return Place(parts[1], parts[3], parts[4] if len(parts) > 4 else None)
    return Place(parts[1], None, parts[2] if len(parts) > 2 else None)


def is_directory_source(folder: str) -> bool:
    """overlays/<env>/argocd, overlays/<env>/queueing and every team's workloads folder are synced by Argo CD as
    plain directories of manifests (no kustomization)."""
    parts = folder.split("/")
    return parts[0] == OVERLAYS and (len(parts) == 3 and parts[2] in DIRECTORY_PARTS
                                     or len(parts) == 5 and parts[2] == "teams" and parts[4] == WORKLOADS_PART)


NOTHING = "nothing.yaml"  # the one file of a team's workloads folder when nothing of the team runs there


# --- labels and annotations ------------------------------------------------------------------------------------------

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ENV = "kflowgen.dev/environment"
LABEL_TEAM = "kflowgen.dev/team"
LABEL_EXPERIMENT = "kflowgen.dev/experiment"
LABEL_TRIAL = "kflowgen.dev/trial"
LABEL_MODEL = "kflowgen.dev/model"
LABEL_VERSION = "kflowgen.dev/model-version"
PARAMETERS = "kflowgen.dev/trial-parameters"  # a Job's trial values, as JSON
ANNOTATION_CONFIG = "kflowgen.dev/config-sha256"  # a model server's configuration, rolled on change
ANNOTATION_VALUES = "kflowgen.dev/values-sha256"  # the hub's values, rolled on change
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
KEEP = "Prune=false,Delete=false"  # Argo CD never prunes or cascades these away; a person removes them on purpose
# a training Job: kept when it leaves Git, and not reported out of sync (docs/training.md, "Life cycle of a training Job")
JOB_KEEP = {SYNC_OPTIONS: KEEP, COMPARE_OPTIONS: "IgnoreExtraneous"}
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"  # the LocalQueue (of its own namespace) a Job waits in
LOCAL_QUEUE = "default"  # every team namespace's one LocalQueue: Kueue's default name, used also for Jobs without a label
COHORT = "platform"  # the Kueue Cohort of an environment's ClusterQueues (a name no team can take: KF302)


def labels(env: str, team: str | None = None) -> dict[str, str]:
    """The labels every object kflowgen writes carries (per team, the team's too)."""
    out = {LABEL_MANAGED_BY: "kflowgen", LABEL_ENV: env}
    if team:
        out[LABEL_TEAM] = team
    return out


# --- shared names ----------------------------------------------------------------------------------------------------


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


def queueing_application(env: str) -> str:
    """The Application syncing an environment's queueing folder (where queueing is on)."""
    return f"{env}-{QUEUEING_PART}"


def cluster_queue(team: str) -> str:
    """A team's ClusterQueue (cluster-scoped; one cluster per environment): the team's name."""
    return team


SHARED_PROJECTS = ("bootstrap", "platform")


# What a team's own Application may create in its namespace (its AppProject's namespaceResourceWhitelist, and all a
# workloads overlay may hold). Platform-owned kinds (quota, limits, RBAC, network policy, namespaces) are absent.
TEAM_KINDS = (("batch", "Job"), ("kubeflow.org", "PyTorchJob"), ("kubeflow.org", "TFJob"), ("apps", "Deployment"),
              ("", "Service"), ("", "ConfigMap"), ("policy", "PodDisruptionBudget"),
              ("autoscaling", "HorizontalPodAutoscaler"))
INGRESS = ("networking.k8s.io", "Ingress")
# A team may create InferenceServices where the platform serves with KServe, never a ServingRuntime (namespaced: it
# would pick any image and command for its servers, which the platform installs with KServe) nor a
# ClusterServingRuntime (cluster-scoped: no team project may create one).
INFERENCE_SERVICE = ("serving.kserve.io", "InferenceService")


TRAINJOB = ("trainer.kubeflow.org", "TrainJob")  # where the platform runs Kubeflow Trainer; never its runtimes
# Kubeflow Trainer's runtimes: platform-owned, never a team's (a runtime is the pod template every TrainJob naming it
# runs with). TrainingRuntime is namespaced, ClusterTrainingRuntime cluster-scoped.
TRAINER_RUNTIMES = (("trainer.kubeflow.org", "TrainingRuntime"), ("trainer.kubeflow.org", "ClusterTrainingRuntime"))


def team_kinds(platform, env: str | None = None) -> tuple[tuple[str, str], ...]:
    """TEAM_KINDS, TrainJob where the platform runs Kubeflow Trainer, Ingress where the platform has an ingress
    controller for exposed models, and InferenceService where KServe serves models in env."""
    return (TEAM_KINDS + ((TRAINJOB,) if platform.trainer else ()) + ((INGRESS,) if platform.ingress else ())
            + ((INFERENCE_SERVICE,) if env and platform.kserve_in(env) else ()))


# All a team's platform overlay may hold: what kflowgen renders there and what bases/team may add to every team
# namespace.
PLATFORM_KINDS = (("", "Namespace"), ("", "ResourceQuota"), ("", "LimitRange"), ("", "PersistentVolumeClaim"),
                  ("", "ServiceAccount"), ("", "ConfigMap"), ("networking.k8s.io", "NetworkPolicy"),
                  ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "RoleBinding"),
                  ("kueue.x-k8s.io", "LocalQueue"))
# All an environment's queueing folder may hold: Kueue's cluster-scoped kinds kflowgen renders, owned by the platform's
# AppProject (and whitelisted there only where queueing is on).
QUEUEING_KINDS = (("kueue.x-k8s.io", "ResourceFlavor"), ("kueue.x-k8s.io", "Cohort"), ("kueue.x-k8s.io", "ClusterQueue"))
# All an environment's Argo CD folder may hold.
ARGOCD_KINDS = (("argoproj.io", "Application"), ("argoproj.io", "AppProject"))


def group_kind(obj: dict) -> tuple[str, str]:
    """(API group, kind) of an object: ('', 'Service') for v1, ('apps', 'Deployment') for apps/v1."""
    api = str(obj.get("apiVersion", ""))
    return (api.rpartition("/")[0], str(obj.get("kind", "")))
