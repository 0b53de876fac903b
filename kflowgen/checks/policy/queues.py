"""KF615: Kueue queues stay within their team. In a team overlay, an object that names a queue (Kueue's queue-name
label or annotation, on the object or its pod templates) names its namespace's one LocalQueue, and only where Kueue
queues training: a Job cannot wait in another team's queue, nor in a queue kflowgen does not make. A LocalQueue (a
team's platform overlay) is that one queue and feeds the team's own ClusterQueue; a ClusterQueue (the queueing folder)
admits only its team's namespace (a namespaceSelector on the name the API server sets) and is in the environment's
Cohort."""
from __future__ import annotations

from kflowgen.checks.objects import as_dict, pod_specs, ptr
from kflowgen.specs import layout

CODE = "KF615"
TITLE = "Kueue queue another team could use, or a queue label naming a queue the namespace does not have"

NAMESPACE_NAME = "kubernetes.io/metadata.name"


def check(obj, ctx):
    group, kind = layout.group_kind(obj)
    if group == "kueue.x-k8s.io" and kind == "ClusterQueue":
        yield from _cluster_queue(obj, ctx)
    if ctx.team is None:
        return
    if group == "kueue.x-k8s.io" and kind == "LocalQueue":
        yield from _local_queue(obj, ctx)
    at = [("/metadata", as_dict(obj.get("metadata")))]
    at += [(pointer.removesuffix("/spec") + "/metadata", as_dict(_template(obj, pointer).get("metadata")))
           for pointer, _ in pod_specs(obj)]
    for where, meta in at:
        for field in ("labels", "annotations"):
            value = as_dict(meta.get(field)).get(layout.LABEL_QUEUE)
            if value is None:
                continue
            pointer = where + ptr(field, layout.LABEL_QUEUE)
            if not ctx.queues:
                yield pointer, f"names queue '{value}', but Kueue queues nothing in {ctx.env}", \
                    "remove the queue label: the platform turns queueing on per environment"
            elif value != layout.LOCAL_QUEUE:
                yield pointer, f"names queue '{value}', which is not a queue of namespace " \
                    f"{ctx.team_namespaces.get(ctx.team, ctx.team)}", \
                    f"a team's Jobs wait in its own LocalQueue '{layout.LOCAL_QUEUE}'"


def _template(obj: dict, pointer: str) -> dict:
    """The pod template (metadata and spec) whose spec is at pointer."""
    node = obj
    for part in pointer.strip("/").split("/")[:-1]:
        node = as_dict(node.get(part.replace("~1", "/").replace("~0", "~")))
    return node


def _local_queue(obj, ctx):
    name = as_dict(obj.get("metadata")).get("name")
    if not ctx.queues:
        yield "/kind", f"LocalQueue '{name}', but Kueue queues nothing in {ctx.env}", \
            "the platform turns queueing on per environment (environments.<env>.queueing)"
    elif name != layout.LOCAL_QUEUE:
        yield "/metadata/name", f"LocalQueue '{name}': a team namespace has one, '{layout.LOCAL_QUEUE}'", \
            f"name it {layout.LOCAL_QUEUE}"
    target = as_dict(obj.get("spec")).get("clusterQueue")
    if target != layout.cluster_queue(ctx.team):
        yield "/spec/clusterQueue", f"'{target}' is not team {ctx.team}'s ClusterQueue", \
            f"a team's LocalQueue feeds only {layout.cluster_queue(ctx.team)}"


def _cluster_queue(obj, ctx):
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    team = next((t for t in ctx.team_namespaces if layout.cluster_queue(t) == meta.get("name")), None)
    if team is None:
        yield "/metadata/name", f"ClusterQueue '{meta.get('name')}' is no team's of {ctx.env}", \
            "a ClusterQueue is named after the team whose namespace it admits"
        return
    own = ctx.team_namespaces[team]
    selector = as_dict(spec.get("namespaceSelector"))
    if selector != {"matchLabels": {NAMESPACE_NAME: own}}:
        yield "/spec/namespaceSelector", f"does not select exactly team {team}'s namespace '{own}'", \
            f"use namespaceSelector: {{matchLabels: {{{NAMESPACE_NAME}: {own}}}}}"
    if spec.get("cohortName") != layout.COHORT:
        yield "/spec/cohortName", f"'{spec.get('cohortName', '')}' is not the environment's Cohort " \
            f"'{layout.COHORT}'", f"set cohortName: {layout.COHORT}"
