"""What the targets share: object metadata, kustomizations, objects placed in a namespace with kflowgen's labels, and
the spec files a generated file names in its header."""
from __future__ import annotations

from kflowgen.specs.model import Platform


def sources(p: Platform, teams) -> list[str]:
    return [p.source.path] + ([t.source.path for t in teams] if len(teams) <= 3 else ["specs/teams/*.yaml"])


def meta(name: str, namespace: str | None = None, **extra) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def kustomization(resources: list[str], labels: dict[str, str] | None = None, namespace: str | None = None) -> dict:
    k: dict = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        k["namespace"] = namespace
    if labels:
        k["labels"] = [{"pairs": labels, "includeSelectors": False}]
    k["resources"] = resources
    return k


def placed(obj: dict, namespace: str, labels: dict[str, str]) -> dict:
    """obj as a kustomization's `namespace` and `labels` (includeSelectors: false) fields would build it: in namespace,
    with labels added to (and overriding) its own metadata.labels. Written into the file instead, the overlay needs
    neither transformer, which is most of what kustomize spends on a workloads overlay."""
    meta = obj["metadata"]
    placed = {"name": meta["name"], "namespace": namespace, "labels": {**meta.get("labels", {}), **labels}}
    placed.update((k, v) for k, v in meta.items() if k not in placed)
    return {**obj, "metadata": placed}
