"""The renderer: a pure function from the model to the generated files, {repo-relative path: bytes}."""
from __future__ import annotations

from collections.abc import Callable

from kflowgen.targets import jupyterhub
from kflowgen.specs import layout, quantity
from kflowgen.targets.emit import document
from kflowgen.specs.model import Deferred, Model, Platform, Team
from kflowgen.targets.training import render_experiment
from kflowgen.targets.serving import GRPC_PORT, HTTP_PORT, callers_policy, render_model
from kflowgen.specs.layout import BASES, KEEP, LABEL_MODEL, LABEL_TEAM, SYNC_OPTIONS

IN_CLUSTER = "https://kubernetes.default.svc"



def render(model: Model) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for env, team in units(model):
        files.update(unit_files(model, env, team))
    return dict(sorted(files.items()))


def units(model: Model) -> list[tuple[str, str]]:
    """The (environment, team) pieces render() is the union of; team "" is what the environment's teams share."""
    return [(env, name) for env in model.platform.environments for name in ["", *(t.name for t in model.teams_in(env))]]


def unit_files(model: Model, env: str, team: str, objects: dict | None = None) -> dict[str, bytes]:
    """One unit's files, rendered from exactly the inputs unit_sources names. With objects, the object of each file
    of a plain directory of manifests (overlays/<env>/argocd) is also put there, by path: what the file reads as."""
    kind, args, _ = _unit(model, env, team)
    return shared_files(*args(), objects=objects) if kind == "shared" else team_files(*args(), objects=objects)


def unit_sources(model: Model, env: str, team: str) -> list:
    """The spec files a unit's files are a function of (with kflowgen's code): what the result cache keys them on."""
    return _unit(model, env, team)[2]


def _unit(model: Model, env: str, team: str) -> tuple[str, Callable[[], tuple], list]:
    """A unit's renderer, its arguments (made when called: the objects of experiments and models are made only for
    units that are rendered), and the spec files those arguments are made from: one place, so the cache key can
    name no fewer inputs than the renderer reads."""
    p = model.platform
    if not team:
        teams = model.teams_in(env)
        return "shared", lambda: (p, teams, env), [p.source] + [t.source for t in teams]
    t = model.team(env, team)
    served, experiments = model.members(team, env)
    return ("team", lambda: (p, t, [model.served[i] for i in served], [model.experiments[i] for i in experiments], env),
            [p.source, t.source] + [_source(model.served, i) for i in served]
            + [_source(model.experiments, i) for i in experiments])


def _source(seq, i: int):
    return seq.specs[i] if isinstance(seq, Deferred) else seq[i].source


def shared_files(p: Platform, teams: list[Team], env: str, objects: dict | None = None) -> dict[str, bytes]:
    """What all teams of an environment share, from exactly these inputs: the JupyterHub values and the Argo CD
    bootstrap."""
    out = {layout.hub_values(env): document(jupyterhub.values(p, teams), _sources(p, teams))}
    out.update(_documents(_argocd_shared(p, teams, env), objects))
    return out


def team_files(p: Platform, t: Team, served: list, experiments: list, env: str,
               objects: dict | None = None) -> dict[str, bytes]:
    """Everything one team adds to an environment, from exactly these inputs (the result cache keys on their spec
    files): its platform overlay, its workloads overlay, and its Argo CD project and Applications."""
    out = _team_platform(p, t, env, served)
    out.update(_team_workloads(p, t, served, experiments, env))
    out.update(_documents(_argocd_team(p, t, env), objects))
    return out


def _documents(docs: dict[str, tuple[dict, list[str]]], objects: dict | None) -> dict[str, bytes]:
    """{path: (object, sources)} as files; the objects also go to objects, when given."""
    if objects is not None:
        objects.update((path, obj) for path, (obj, _) in docs.items())
    return {path: document(obj, src) for path, (obj, src) in docs.items()}


def _sources(p: Platform, teams) -> list[str]:
    return [p.source.path] + ([t.source.path for t in teams] if len(teams) <= 3 else ["specs/teams/*.yaml"])


def _meta(name: str, namespace: str | None = None, **extra) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def _kustomization(resources: list[str], labels: dict[str, str] | None = None, namespace: str | None = None) -> dict:
    k: dict = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        k["namespace"] = namespace
    if labels:
        k["labels"] = [{"pairs": labels, "includeSelectors": False}]
    k["resources"] = resources
    return k


def _placed(obj: dict, namespace: str, labels: dict[str, str]) -> dict:
    """obj as a kustomization's `namespace` and `labels` (includeSelectors: false) fields would build it: in namespace,
    with labels added to (and overriding) its own metadata.labels. Written into the file instead, the overlay needs
    neither transformer, which is most of what kustomize spends on a workloads overlay."""
    meta = obj["metadata"]
    placed = {"name": meta["name"], "namespace": namespace, "labels": {**meta.get("labels", {}), **labels}}
    placed.update((k, v) for k, v in meta.items() if k not in placed)
    return {**obj, "metadata": placed}


# --- per team, platform-owned ---------------------------------------------------------------------------------

def _team_platform(p: Platform, t: Team, env: str, served: list = ()) -> dict[str, bytes]:
    src = [t.source.path, p.source.path]
    q = t.quota[env]
    objs: dict[str, dict] = {}
    minor = ".".join(p.kubernetes_version.split(".")[:2])
    objs["namespace.yaml"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(
        t.namespace,
        labels={"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": f"v{minor}",
                "pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/warn": "restricted",
                "hub.jupyter.org/network-access-hub": "true"},
        annotations={SYNC_OPTIONS: KEEP})}
    hard = {"requests.cpu": quantity.cpu(q.cpu), "requests.memory": str(q.memory), "requests.storage": str(q.storage)}
    for resource, n in gpu_requests(p, q.gpu).items():
        hard[f"requests.{resource}"] = str(n)
    objs["resourcequota.team.yaml"] = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta("team"),
                                       "spec": {"hard": hard}}
    objs["persistentvolumeclaim.nas.yaml"] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": _meta("nas", annotations={SYNC_OPTIONS: KEEP}),
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": p.storage_class,
                 "resources": {"requests": {"storage": str(t.storage_size)}}}}
    objs["rolebinding.owners.yaml"] = _rolebinding("owners", "admin", [("User", o) for o in t.owners])
    for role in ("admin", "edit", "view"):
        groups = [g for g, r in t.members if r == role]
        if groups:
            objs[f"rolebinding.members-{role}.yaml"] = _rolebinding(f"members-{role}", role, [("Group", g) for g in groups])
    objs["rolebinding.jupyterhub-spawner.yaml"] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta("jupyterhub-spawner"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jupyterhub-spawner"},
        "subjects": [{"kind": "ServiceAccount", "name": "hub", "namespace": p.hub_namespace}]}
    hub_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": p.hub_namespace}}}
    objs["networkpolicy.allow-jupyterhub.yaml"] = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("allow-jupyterhub"),
        "spec": {"podSelector": {"matchLabels": {"component": "singleuser-server"}}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{**hub_ns, "podSelector": {"matchExpressions": [
                     {"key": "component", "operator": "In", "values": ["hub", "proxy"]}]}}],
                     "ports": [{"port": 8888, "protocol": "TCP"}]}],
                 "egress": [{"to": [{**hub_ns, "podSelector": {"matchLabels": {"component": "hub"}}}],
                             "ports": [{"port": 8081, "protocol": "TCP"}]}]}}
    objs.update(network_policies(p, env))
    sources = {name: src for name in objs}
    for m in served:
        if env in m.environments:
            policy = callers_policy(m, t, p, env)
            if policy["spec"]["ingress"]:
                objs[f"networkpolicy.{policy['metadata']['name']}.yaml"] = policy
                sources[f"networkpolicy.{policy['metadata']['name']}.yaml"] = [m.source.path, p.source.path]
    base = layout.team_overlay(env, t.name, layout.PLATFORM_PART)
    out = {f"{base}/{name}": document(obj, sources[name]) for name, obj in objs.items()}
    out[f"{base}/kustomization.yaml"] = document(
        _kustomization(["../../../../../" + BASES] + list(objs), layout.labels(env, t.name), t.namespace), src)
    return out


def network_policies(p: Platform, env: str) -> dict[str, dict]:
    """What every team's pods may reach besides DNS, their namespace and the hub: the platform's egress allow-list of
    this environment, and the model servers of team namespaces (gRPC and REST; each model's own policy says which
    callers it admits)."""
    out: dict[str, dict] = {}
    rules = egress_rules(p, env)
    if rules:
        out["networkpolicy.allow-egress.yaml"] = {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("allow-egress"),
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}}
    out["networkpolicy.allow-model-servers.yaml"] = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("allow-model-servers"),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchExpressions": [{"key": LABEL_TEAM, "operator": "Exists"}]},
            "podSelector": {"matchExpressions": [{"key": LABEL_MODEL, "operator": "Exists"}]}}],
            "ports": [{"port": GRPC_PORT, "protocol": "TCP"}, {"port": HTTP_PORT, "protocol": "TCP"}]}]}}
    return out


def egress_rules(p: Platform, env: str) -> list[dict]:
    """The platform's egress allow-list of an environment as NetworkPolicy egress rules, in the platform file's order."""
    out = []
    for r in p.egress_in(env):
        if r.namespace:
            peer: dict = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": r.namespace}}}
            if r.pod_labels:
                peer["podSelector"] = {"matchLabels": dict(sorted(r.pod_labels.items()))}
        else:
            peer = {"ipBlock": {"cidr": r.cidr, **({"except": list(r.excepted)} if r.excepted else {})}}
        out.append({"to": [peer], "ports": [{"port": port, "protocol": "TCP"} for port in r.ports]})
    return out


def gpu_requests(p: Platform, gpus: dict[str, int]) -> dict[str, int]:
    """GPUs by extended resource name. Every resource the platform knows is listed, 0 when the team has none:
    a ResourceQuota does not limit a resource it does not name."""
    out = {g.resource: 0 for g in p.gpu_types.values()}
    for gpu, n in gpus.items():
        if gpu in p.gpu_types:
            out[p.gpu_types[gpu].resource] += n
    return dict(sorted(out.items()))


def _rolebinding(name: str, clusterrole: str, subjects: list[tuple[str, str]]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": clusterrole},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects]}


# --- per team, workloads ----------------------------------------------------------------------------------------

def _team_workloads(p: Platform, t: Team, served: list, experiments: list, env: str) -> dict[str, bytes]:
    """The team's own Application: served models and training Jobs, each in the team's namespace with the standard
    labels (see _placed)."""
    base = layout.team_overlay(env, t.name, layout.WORKLOADS_PART)
    out: dict[str, bytes] = {}
    sources = [t.source.path]
    labels = layout.labels(env, t.name)
    for m in served:
        if env in m.environments:
            sources.append(m.source.path)
            for name, obj in render_model(m, t, p, env).items():
                out[f"{base}/{name}"] = document(_placed(obj, t.namespace, labels), [m.source.path, p.source.path])
    for e in experiments:
        if env in e.environments:
            sources.append(e.source.path)
            for name, obj in render_experiment(e, t, p, env).items():
                out[f"{base}/{name}"] = document(_placed(obj, t.namespace, labels), [e.source.path, t.source.path])
    resources = sorted(path.rsplit("/", 1)[1] for path in out)
    out[f"{base}/kustomization.yaml"] = document(_kustomization(resources), sources)
    return out


# --- Argo CD ----------------------------------------------------------------------------------------------------

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
            "metadata": _meta(name, p.argocd_namespace, labels=layout.labels(env, team)), "spec": spec}


def _app(p: Platform, env: str, name, project_name, server, destination_ns, source=None, sources=None, team=None,
         allow_empty=False, options=(), ignore=None) -> dict:
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
    spec["syncPolicy"] = {"automated": automated, "syncOptions": ["FailOnSharedResource=true", *options]}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": _meta(name, p.argocd_namespace, labels=layout.labels(env, team),
                              finalizers=["resources-finalizer.argocd.argoproj.io/foreground"]), "spec": spec}


def _git(p: Platform, path: str) -> dict:
    return {"repoURL": p.repo_url, "targetRevision": p.revision, "path": path}


def _argocd_shared(p: Platform, teams: list[Team], env: str) -> dict[str, tuple[dict, list[str]]]:
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
    docs["appproject.platform.yaml"] = (_project(
        p, env, layout.project(env, "platform"),
        f"{env}: platform-owned objects (namespaces, quotas, RBAC, network policy, storage, JupyterHub)",
        [p.repo_url, p.hub_chart_repo], [(cluster, p.hub_namespace)] + [(cluster, t.namespace) for t in teams],
        [("", "Namespace")], [("*", "*")]), _sources(p, teams))
    root_source = {**_git(p, base), "directory": {"recurse": False, "include": "*.yaml"}}
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
    return {f"{base}/{name}": doc for name, doc in docs.items()}


def _argocd_team(p: Platform, t: Team, env: str) -> dict[str, tuple[dict, list[str]]]:
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
            [p.repo_url], [(cluster, t.namespace)], [], layout.team_kinds(p), roles, t.name), src),
        f"{base}/application.{t.name}-platform.yaml": (_app(
            p, env, platform_app, layout.project(env, "platform"), cluster, t.namespace,
            source=_git(p, layout.team_overlay(env, t.name, layout.PLATFORM_PART)), team=t.name), src),
        f"{base}/application.{t.name}-workloads.yaml": (_app(
            p, env, workloads_app, layout.project(env, t.name), cluster, t.namespace,
            source=_git(p, layout.team_overlay(env, t.name, layout.WORKLOADS_PART)), team=t.name, allow_empty=True), src),
    }
