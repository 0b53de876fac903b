"""A team's two overlays in an environment: the platform-owned one (namespace, quota, NAS, RBAC, network policy, and
where Kueue queues training its LocalQueue), built on the platform's bases/team, and the team's own (its served models
and training Jobs)."""
from __future__ import annotations

from kflowgen.specs import layout, quantity
from kflowgen.specs.layout import BASES, KEEP, LABEL_MODEL, LABEL_TEAM, LOCAL_QUEUE, SYNC_OPTIONS
from kflowgen.specs.model import Platform, Team, specs_of
from kflowgen.targets import queueing
from kflowgen.targets.common import kustomization, meta, placed
from kflowgen.targets.emit import document, nothing
from kflowgen.targets.serving import callers_policy, render_model, server_ports
from kflowgen.targets.training import render_experiment


# --- per team, platform-owned ---------------------------------------------------------------------------------

def platform_overlay(p: Platform, t: Team, env: str, served: list = ()) -> dict[str, bytes]:
    src = [t.source.path, p.source.path]
    q = t.quota[env]
    objs: dict[str, dict] = {}
    minor = ".".join(p.kubernetes_version.split(".")[:2])
    objs["namespace.yaml"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(
        t.namespace,
        labels={"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": f"v{minor}",
                "pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/warn": "restricted",
                "hub.jupyter.org/network-access-hub": "true"},
        annotations={SYNC_OPTIONS: KEEP})}
    sized = queueing.sizing(p, t, env, served)
    objs["resourcequota.team.yaml"] = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("team"),
                                       "spec": {"hard": quota_hard(p, q, sized)}}
    if sized:
        objs[f"localqueue.{LOCAL_QUEUE}.yaml"] = queueing.local_queue(t)
    objs["persistentvolumeclaim.nas.yaml"] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": meta("nas", annotations={SYNC_OPTIONS: KEEP}),
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": p.storage_class,
                 "resources": {"requests": {"storage": str(t.storage_size)}}}}
    if t.offboarding:  # step 1 of leaving: everyone reads, no one writes (a RoleBinding's roleRef never changes, so
        # this is a binding of its own name and Argo CD prunes the others)
        objs["rolebinding.offboarding-view.yaml"] = _rolebinding(
            "offboarding-view", "view", [("User", o) for o in t.owners] + [("Group", g) for g, _ in t.members])
    else:
        objs["rolebinding.owners.yaml"] = _rolebinding("owners", "admin", [("User", o) for o in t.owners])
        for role in ("admin", "edit", "view"):
            groups = [g for g, r in t.members if r == role]
            if groups:
                objs[f"rolebinding.members-{role}.yaml"] = _rolebinding(f"members-{role}", role,
                                                                        [("Group", g) for g in groups])
    objs["rolebinding.jupyterhub-spawner.yaml"] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("jupyterhub-spawner"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jupyterhub-spawner"},
        "subjects": [{"kind": "ServiceAccount", "name": "hub", "namespace": p.hub_namespace}]}
    hub_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": p.hub_namespace}}}
    objs["networkpolicy.allow-jupyterhub.yaml"] = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-jupyterhub"),
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
        kustomization(["../../../../../" + BASES] + list(objs), layout.labels(env, t.name), t.namespace), src)
    return out


def quota_hard(p: Platform, q, sized: queueing.Sizing | None = None) -> dict[str, str]:
    """The ResourceQuota's hard limits: the team's quota, and where Kueue queues training, the quota plus what the
    team may borrow (queueing.Sizing: then nothing Kueue admits for the team is refused by the ResourceQuota)."""
    gpus = dict(q.gpu)
    hard = {"requests.cpu": quantity.cpu(q.cpu), "requests.memory": str(q.memory), "requests.storage": str(q.storage)}
    if sized:
        for what in ("cpu", "memory"):
            if sized.borrowing[what]:
                hard[f"requests.{what}"] = queueing.show(what, sized.ceiling[what])
        gpus = {g: int(sized.ceiling[f"gpu/{g}"]) for g in p.gpu_types}
    for resource, n in gpu_requests(p, gpus).items():
        hard[f"requests.{resource}"] = str(n)
    return hard


def network_policies(p: Platform, env: str) -> dict[str, dict]:
    """What every team's pods may reach besides DNS, their namespace and the hub: the platform's egress allow-list of
    this environment, and the model servers of team namespaces (gRPC and REST, and where KServe serves models its
    servers' ports; each model's own policy says which callers it admits)."""
    out: dict[str, dict] = {}
    rules = egress_rules(p, env)
    if rules:
        out["networkpolicy.allow-egress.yaml"] = {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-egress"),
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}}
    out["networkpolicy.allow-model-servers.yaml"] = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-model-servers"),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchExpressions": [{"key": LABEL_TEAM, "operator": "Exists"}]},
            "podSelector": {"matchExpressions": [{"key": LABEL_MODEL, "operator": "Exists"}]}}],
            "ports": [{"port": port, "protocol": "TCP"} for backend in ("deployment", "kserve")
                      if backend == "deployment" or p.kserve_in(env) for port in server_ports(backend)]}]}}
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
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": clusterrole},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects]}


# --- per team, workloads ----------------------------------------------------------------------------------------

def workloads_overlay(p: Platform, t: Team, served: list, experiments, env: str, known: dict | None = None
                      ) -> tuple[dict[str, bytes], dict[str, dict | None], dict[tuple[str, str], dict[str, bytes]]]:
    """The team's own Application: served models and training Jobs, each in the team's namespace with the standard
    labels (see _placed): its files, the object of each file rendered here, and each experiment's files by the path
    and sha256 of its spec file. A plain directory of manifests, synced as is (like overlays/<env>/argocd): no
    kustomization, whose resource list costs kustomize time quadratic in its length, and a team accumulates Jobs. A
    team with nothing here in the environment gets one file that holds no object (None), so that the folder its
    Application syncs exists in Git.

    An experiment's files are a function of its spec file, the team's and the platform's, and the environment: known
    gives, by its spec's path and sha256, those of experiments rendered before with the same team and platform files
    in this environment (a team of thousands of experiments, one changed: one rendered). experiments: objects made
    when asked for (model.Deferred), so that a known experiment's is not made."""
    base = layout.team_overlay(env, t.name, layout.WORKLOADS_PART)
    files: dict[str, bytes] = {}
    objects: dict[str, dict | None] = {}
    labels = layout.labels(env, t.name)
    for m in served:
        if env in m.environments:
            for name, obj in render_model(m, t, p, env).items():
                path = f"{base}/{name}"
                objects[path] = placed(obj, t.namespace, labels)
                files[path] = document(objects[path], [m.source.path, p.source.path])
    parts: dict[tuple[str, str], dict[str, bytes]] = {}
    for i, spec in enumerate(specs_of(experiments)):
        k = (spec.path, spec.digest)
        made = (known or {}).get(k) if spec.digest else None
        if made is None:
            made = {}
            e = experiments[i]
            if env in e.environments:
                for name, obj in render_experiment(e, t, p, env).items():
                    path = f"{base}/{name}"
                    objects[path] = placed(obj, t.namespace, labels)
                    made[path] = document(objects[path], [e.source.path, t.source.path])
        else:  # no object: a later file of the same path is not this object's
            for path in made:
                objects.pop(path, None)
        if spec.digest:
            parts[k] = made
        files.update(made)
    if not files:
        files[f"{base}/{layout.NOTHING}"] = nothing([t.source.path], t.name, env)
        objects[f"{base}/{layout.NOTHING}"] = None
    return files, objects, parts
