"""An environment's Argo CD objects (overlays/<env>/argocd): the AppProjects that fence each team and the platform in,
and the Applications that sync the overlays, the JupyterHub chart, the Kueue queues where queueing is on and, as the
app of apps, this folder itself."""
from __future__ import annotations

from kflowgen.specs import layout
from kflowgen.specs.model import Platform, Team
from kflowgen.targets import jupyterhub
from kflowgen.targets.common import meta, sources

IN_CLUSTER = "https://kubernetes.default.svc"

# The order in which the root Application creates, and prunes, what it syncs: Argo CD applies sync waves in
# ascending order and prunes in descending order. So a new team's project exists before its Applications (an
# Application whose project is missing waits for Argo CD's next periodic refresh), and a team that leaves goes in
# this order: its workloads Application first (its Jobs and servers, while quota and network policy still hold),
# then its platform Application (quota, RBAC, network policy; Namespace and NAS are kept), and its AppProject last
# (an Application whose project is gone cannot finish its own deletion).
WAVE = {"project": "-1", "platform": "0", "workloads": "1"}

# Argo CD retries a failed automated sync (5 times by default), each time at the revision that failed, and starts no
# other sync meanwhile: a broken commit reverted at once would still hold the Application for minutes. `refresh`
# makes each retry take the latest revision, so the fix is applied at the next retry. Limit and backoff are Argo
# CD's defaults, written out.
# A team's platform objects (quota, limits, network policy, access) stay when the team leaves and its Application is
# deleted: its training Jobs stay too (layout.JOB_KEEP), and may still run, so the namespace stays fenced, and the
# team can still reach its NAS to back it up, until a person deletes the namespace on purpose (KF505 says how).
# Application-wide `Delete=false` does not stop pruning: an object removed from Git while the team stays still goes.
LEAVE_FENCED = "Delete=false"

# A plain directory of manifests (layout.is_directory_source): its .yaml files, not below it, applied as they are
DIRECTORY = {"directory": {"recurse": False, "include": "*.yaml"}}

RETRY = {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}, "refresh": True}


# --- Argo CD ----------------------------------------------------------------------------------------------------

def _wave(part: str) -> dict:
    return {"annotations": {"argocd.argoproj.io/sync-wave": WAVE[part]}}


def _project(p: Platform, env: str, name, description, sources, destinations, cluster_kinds, namespace_kinds,
             roles=None, team=None) -> dict:
    spec = {"description": description, "sourceRepos": sources,
            "destinations": [{"server": s, "namespace": n} for s, n in destinations],
            "clusterResourceWhitelist": [{"group": g, "kind": k} for g, k in cluster_kinds],
            "namespaceResourceWhitelist": [{"group": g, "kind": k} for g, k in namespace_kinds],
            "orphanedResources": {"warn": True}}
    if roles:
        spec["roles"] = roles
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": meta(name, p.argocd_namespace, labels=layout.labels(env, team), **_wave("project")),
            "spec": spec}


def _app(p: Platform, env: str, name, project_name, server, destination_ns, source=None, sources=None, team=None,
         allow_empty=False, options=(), ignore=None, wave="platform") -> dict:
    spec: dict = {"project": project_name}
    if source:
        spec["source"] = source
    if sources:
        spec["sources"] = sources
    spec["destination"] = {"server": server, "namespace": destination_ns}
    if ignore:
        spec["ignoreDifferences"] = ignore
    automated = {"prune": True, "selfHeal": True}
    if allow_empty:
        automated["allowEmpty"] = True
    spec["syncPolicy"] = {"automated": automated, "syncOptions": ["FailOnSharedResource=true", *options],
                          "retry": RETRY}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": meta(name, p.argocd_namespace, labels=layout.labels(env, team), **_wave(wave),
                              finalizers=["resources-finalizer.argocd.argoproj.io/foreground"]), "spec": spec}


def _git(p: Platform, path: str) -> dict:
    return {"repoURL": p.repo_url, "targetRevision": p.revision, "path": path}


def shared(p: Platform, teams: list[Team], env: str) -> dict[str, tuple[dict, list[str]]]:
    """overlays/<env>/argocd: a plain directory of manifests, not a kustomization. Argo CD applies the files as they
    are, and nothing has to build one list of every team's projects and Applications (kustomize's cost grows faster
    than linearly with that list). Each team's own files are written by _argocd_team."""
    cluster = p.environments[env].cluster
    ns = p.argocd_namespace
    base = layout.argocd_folder(env)
    psrc = [p.source.path]
    docs: dict[str, tuple[dict, list[str]]] = {}
    docs["appproject.bootstrap.yaml"] = (_project(
        p, env, layout.project(env, "bootstrap"), f"{env}: the root Application, which creates the projects and Applications below",
        [p.repo_url], [(IN_CLUSTER, ns)], [], [("argoproj.io", "Application"), ("argoproj.io", "AppProject")]), psrc)
    queues = p.queueing_in(env) is not None
    docs["appproject.platform.yaml"] = (_project(
        p, env, layout.project(env, "platform"),
        f"{env}: platform-owned objects (namespaces, quotas, RBAC, network policy, storage, JupyterHub"
        + (", Kueue queues)" if queues else ")"), [p.repo_url, p.hub_chart_repo],
        [(cluster, p.hub_namespace)] + [(cluster, t.namespace) for t in teams] + ([(cluster, "")] if queues else []),
        [("", "Namespace"), *(layout.QUEUEING_KINDS if queues else ())], [("*", "*")]), sources(p, teams))
    root_source = {**_git(p, base), **DIRECTORY}
    root, hub = layout.shared_applications(env)
    docs["application.root.yaml"] = (_app(p, env, root, layout.project(env, "bootstrap"), IN_CLUSTER, ns,
                                          source=root_source), psrc)
    docs["application.jupyterhub.yaml"] = (_app(
        p, env, hub, layout.project(env, "platform"), cluster, p.hub_namespace,
        sources=[{"repoURL": p.hub_chart_repo, "chart": "jupyterhub", "targetRevision": p.hub_chart_version,
                  "helm": {"releaseName": "jupyterhub",
                           "valueFiles": [f"$values/{layout.hub_values(env)}"]}},
                 {"repoURL": p.repo_url, "targetRevision": p.revision, "ref": "values"}],
        options=("CreateNamespace=true", "ServerSideApply=true", "RespectIgnoreDifferences=true"),
        ignore=[{**item, "namespace": p.hub_namespace} for item in jupyterhub.RANDOM]), psrc)
    if queues:  # cluster-scoped objects only: no destination namespace (the project's "" destination)
        docs["application.queueing.yaml"] = (_app(
            p, env, layout.queueing_application(env), layout.project(env, "platform"), cluster, "",
            source={**_git(p, layout.queueing_folder(env)), **DIRECTORY}),
            psrc)
    return {f"{base}/{name}": doc for name, doc in docs.items()}


# Fields of a queued training Job that Kueue changes (it resumes the Job when it admits it, and suspends it again when
# it preempts it): the team's Application neither reports nor undoes that.
SUSPEND = ({"group": "batch", "kind": "Job", "jsonPointers": ["/spec/suspend"]},
           {"group": "kubeflow.org", "kind": "PyTorchJob", "jsonPointers": ["/spec/runPolicy/suspend"]},
           {"group": "kubeflow.org", "kind": "TFJob", "jsonPointers": ["/spec/runPolicy/suspend"]})
# Fields of a TrainJob that others write: Trainer's webhook stamps each runtimePatches entry with a time, Kueue adds
# an entry of its own (the nodes of the flavor it admits the trial to), and Kueue resumes and suspends a queued one.
# kflowgen never changes a TrainJob in place (any change of what runs gives it a new name), so the team's Application
# takes the list as it is on the cluster; suspend only where Kueue queues it.
TRAINJOB = {"group": "trainer.kubeflow.org", "kind": "TrainJob", "jsonPointers": ["/spec/runtimePatches"]}


def ignored(p: Platform, env: str) -> list[dict]:
    """What a team's workloads Application leaves to the cluster: what Kueue and Trainer change on training objects."""
    queued = p.queueing_in(env) is not None
    out = [dict(i) for i in SUSPEND] if queued else []
    if p.trainer:
        out.append({**TRAINJOB, "jsonPointers": [*TRAINJOB["jsonPointers"], *(["/spec/suspend"] if queued else [])]})
    return out


def team(p: Platform, t: Team, env: str) -> dict[str, tuple[dict, list[str]]]:
    """A team's AppProject and its platform and workloads Applications, in overlays/<env>/argocd."""
    cluster = p.environments[env].cluster
    src = [t.source.path, p.source.path]
    groups = sorted({g for g, _ in t.members})
    project = layout.project(env, t.name)
    roles = [{"name": "members", "description": f"members of {t.name} may view and sync the team's Applications",
              "groups": groups,
              "policies": [f"p, proj:{project}:members, applications, {verb}, {project}/*, allow"
                           for verb in ("get", "sync")]}] if groups else None
    base = layout.argocd_folder(env)
    platform_app, workloads_app = layout.team_applications(env, t.name)
    return {
        f"{base}/appproject.{t.name}.yaml": (_project(
            p, env, layout.project(env, t.name), f"{env}: workloads of team {t.name}, confined to namespace {t.namespace}",
            [p.repo_url], [(cluster, t.namespace)], [], layout.team_kinds(p, env), roles, t.name), src),
        f"{base}/application.{t.name}-platform.yaml": (_app(
            p, env, platform_app, layout.project(env, "platform"), cluster, t.namespace,
            source=_git(p, layout.team_overlay(env, t.name, layout.PLATFORM_PART)), team=t.name,
            options=(LEAVE_FENCED,)), src),
        f"{base}/application.{t.name}-workloads.yaml": (_app(
            p, env, workloads_app, layout.project(env, t.name), cluster, t.namespace,
            source={**_git(p, layout.team_overlay(env, t.name, layout.WORKLOADS_PART)), **DIRECTORY},
            team=t.name, allow_empty=True,
            wave="workloads",
            **({"options": ("RespectIgnoreDifferences=true",), "ignore": ignored(p, env)}
               if ignored(p, env) else {})), src),
    }
