"""Server-side dry-run of built manifests: install the CRDs the objects use, then per environment create its
Namespaces and apply every other object with server-side apply, `dryRun=All` and `fieldValidation=Strict`. Every
rejection becomes a KF405 error and every API server warning a KF406 warning, per object.

Each object is sent as the YAML text it was built as (so that the API server also sees duplicate fields); the
objects, already parsed by the build, only say where to send it and name it in the findings."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kflowgen.checks.objects import identity
from kflowgen.checks.server.client import Client, Response
from kflowgen.checks.server.errors import ControlPlaneError
from kflowgen.diagnostics import Diagnostic, error, warning

if TYPE_CHECKING:
    from kflowgen.build import Built

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF405": "built object rejected by the API server (server-side dry-run)",
    "KF406": "API server warning for a built object (server-side dry-run)",
}

Document = tuple[str, dict]  # an object's own YAML text, and the object
_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.M)
_CONTENT = re.compile(r"^[ \t]*[^\s#]", re.M)  # a line that is neither blank nor a comment


def documents(stream: str) -> list[Document]:
    """The documents of a YAML stream, each as its own text and parsed; empty documents are skipped."""
    out = []
    for chunk in _SEPARATOR.split(stream):
        if not chunk.strip():
            continue
        obj = yaml.load(chunk, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if isinstance(obj, dict):
            out.append((chunk, obj))
    return out


def paired(stream: str, objects: list[dict]) -> list[Document]:
    """documents(stream) without parsing it again: its texts paired with its objects, already parsed in the same
    order (Built.objects). When they do not line up (a document that is not a mapping, a separator the split does
    not see), the stream is parsed as documents() does."""
    chunks = [c for c in _SEPARATOR.split(stream) if _CONTENT.search(c)]
    if len(chunks) == len(objects) and all(str(o.get("kind", "")) in c for c, o in zip(chunks, objects)):
        return list(zip(chunks, objects))
    return documents(stream)


def built_documents(built: "Built", overlays: list[str] | None = None) -> tuple[dict[str, list[Document]],
                                                                               list[Diagnostic]]:
    """The documents of built overlays (all, or those given), from the objects the build parsed; an overlay whose
    output is not YAML is a KF405 error."""
    out: dict[str, list[Document]] = {}
    diags: list[Diagnostic] = []
    for overlay in sorted(built.overlays if overlays is None else overlays):
        text = built.overlays[overlay]
        try:
            try:
                objects = built.objects(overlay)
            except yaml.YAMLError:
                out[overlay] = documents(text)  # the error as documents() words it
            else:
                out[overlay] = paired(text, objects)
        except yaml.YAMLError as e:
            diags.append(error(overlay, (0, 0), "KF405", f"built output is not valid YAML: {e}"))
    return out, diags


def dry_run(client: Client, overlays: dict[str, list[Document]], crd_files: list[Path], jobs: int = 4,
            all_crds: bool = False) -> list[Diagnostic]:
    """Install the CRDs, then per environment: create its Namespaces for real, and apply every other object
    with server-side dry-run and strict field validation. Returns KF405 errors and KF406 warnings.

    Only the CRDs defining a kind the built objects use are installed, unless `all_crds` (establishing a large
    CRD takes seconds: Argo CD's ApplicationSet alone is 1.4 MB)."""
    diags: list[Diagnostic] = []
    used = {(str(obj.get("apiVersion", "")).rpartition("/")[0], obj.get("kind"))
            for docs in overlays.values() for _, obj in docs}
    crds = []
    for f in crd_files:
        try:
            docs = documents(Path(f).read_text())
        except (OSError, yaml.YAMLError) as e:
            diags.append(error(str(f), (0, 0), "KF903", f"CRD file cannot be read: {e}"))
            continue
        crds += [(str(f), text, obj) for text, obj in docs if obj.get("kind") == "CustomResourceDefinition"
                 and (all_crds or _defines(obj) in used)]
    by_name = {str((obj.get("metadata") or {}).get("name")): item for item in crds for obj in [item[2]]}
    diags += _apply_crds(client, list(by_name.values()))  # a later file wins for a CRD two files define
    by_env: dict[str, list[str]] = {}
    for overlay in sorted(overlays):
        by_env.setdefault(environment_of(overlay), []).append(overlay)
    for env in sorted(by_env):
        diags += _dry_run_environment(client, {o: overlays[o] for o in by_env[env]}, jobs)
    return diags


def _apply_crds(client: Client, crds: list[tuple[str, str, dict]]) -> list[Diagnostic]:
    diags, names = [], []
    client.stats["crds"] += len(crds)
    for where, text, obj in crds:
        r = client.apply(obj, text)
        diags += _diagnostics(where, obj, r)
        if r.ok:
            names.append(obj["metadata"]["name"])
    try:
        client.wait_established(names)
    except ControlPlaneError as e:
        diags.append(error(crds[0][0] if crds else "CRDs", (0, 0), "KF405", str(e)))
    return diags


def _dry_run_environment(client: Client, overlays: dict[str, list[Document]], jobs: int) -> list[Diagnostic]:
    """One environment. Only CRDs and Namespaces are persisted; a Namespace is applied again, with the same
    field manager, by each environment that has it, so its labels are that environment's."""
    diags: list[Diagnostic] = []
    items = [(overlay, text, obj) for overlay, docs in overlays.items() for text, obj in docs]
    diags += _apply_crds(client, [i for i in items if i[2].get("kind") == "CustomResourceDefinition"])
    namespaces = [i for i in items if i[2].get("kind") == "Namespace" and i[2].get("apiVersion") == "v1"]
    declared = {(i[2].get("metadata") or {}).get("name") for i in namespaces}
    rest = [i for i in items if i[2].get("kind") not in ("CustomResourceDefinition", "Namespace")]
    client.stats["namespaces"] += len(namespaces)
    client.stats["objects"] += len(rest)
    for overlay, text, obj in namespaces:
        diags += _diagnostics(overlay, obj, client.apply(obj, text))
    referenced = sorted({ns for _, _, obj in rest if (ns := (obj.get("metadata") or {}).get("namespace"))
                         and isinstance(ns, str)} - declared)
    for ns in referenced:  # e.g. argocd: exists in the real cluster, not declared by the overlays
        client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def one(item: tuple[str, str, dict]) -> list[Diagnostic]:
        overlay, text, obj = item
        if not (obj.get("metadata") or {}).get("name"):
            return [error(overlay, (0, 0), "KF405", f"{identity(obj)}: object has no metadata.name")]
        return _diagnostics(overlay, obj, client.apply(obj, text, dry_run=True))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for found in pool.map(one, rest):
            diags += found
    return diags


def environment_of(overlay: str) -> str:
    parts = overlay.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "overlays" else overlay


def _defines(crd: dict) -> tuple[str, str]:
    spec = crd.get("spec") or {}
    return str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))


_TYPED_PATCH = "failed to create typed patch object"


def _diagnostics(where: str, obj: dict, r: Response) -> list[Diagnostic]:
    ident = identity(obj)
    out = [warning(where, (0, 0), "KF406", f"{ident}: {w}", "the API server warns about this object")
           for w in r.warnings]
    if r.ok:
        return out
    message = " ".join(r.message.split())
    if r.status >= 500 and message.startswith(_TYPED_PATCH):
        # a field the schema does not declare, in server-side apply: the API server answers 500, not 400
        # (kubernetes/kubernetes#122480, #139253); it is the object's fault, not the server's
        out.append(error(where, (0, 0), "KF405", f"{ident}: {message}",
                         "rejected by the API server (strict field validation: field not in the schema)"))
    elif r.status >= 500:
        out.append(error(where, (0, 0), "KF902", f"{ident}: the local API server failed: {message}",
                         f"HTTP {r.status}; an API server problem, not necessarily the object's"))
    else:
        out.append(error(where, (0, 0), "KF405", f"{ident}: {message}",
                         f"rejected by the API server (HTTP {r.status}{' ' + r.reason if r.reason else ''})"))
    return out
