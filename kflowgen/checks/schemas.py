"""Owns the offline JSON-schema folder that kubeconform -strict uses to validate every emitted object.

Kubernetes kinds come from the ``kubernetes-validate`` package (its ``v<X.Y.0>-local-strict``
folder), rewritten as standalone files named the way kubeconform's ``{{.KindSuffix}}`` expects.
CustomResourceDefinitions become ``<group>/<kind>_<version>.json`` files whose object schemas are
closed (``additionalProperties: false``) like the API server's unknown-field handling.
The folder is built once per cache key, atomically, and then reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import functools
import importlib.util
from pathlib import Path
from typing import Any

import yaml

CONVERTER_VERSION = "1"
# CRD location first: it names the exact API group, whereas KindSuffix keeps only the group's
# first label, so a CRD kind can never be checked against a look-alike core file.
SCHEMA_LOCATIONS: tuple[str, ...] = (
    "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
    "{{.ResourceKind}}{{.KindSuffix}}.json",
)
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_OBJECT_META = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_REF = re.compile(r"(?:/api/_definitions\.json)?#/\$defs/(.+)")
# A top-level `kind: CustomResourceDefinition` line (YAML) or member (JSON): cheap, no parsing.
_CRD_KIND = re.compile(rb'^kind:\s*["\']?CustomResourceDefinition\b|"kind"\s*:\s*"CustomResourceDefinition"', re.M)
_TYPE_META: dict[str, Any] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
Defs = dict[str, tuple[Any, set[str]]]  # definition name -> (localised schema, names it refers to)


class SchemaError(Exception):
    """A Kubernetes version or a CRD file cannot be turned into schemas."""


def kubeconform_args(folder: Path) -> list[str]:
    """['-schema-location', str(folder/tpl), ...] for each template."""
    return [arg for tpl in SCHEMA_LOCATIONS for arg in ("-schema-location", str(folder / tpl))]


def schema_paths(folder: Path, kind: str, api_version: str) -> list[Path]:
    """The files kubeconform tries for a kind, in order: SCHEMA_LOCATIONS filled as its registry fills them
    (group = apiVersion before the first "/", version = after the last, KindSuffix = "-<group's first label>"
    and "-<version>", all lower case but the group)."""
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower() + ("-" + parts[1].lower() if len(parts) > 1 else "")
    fill = {"{{.Group}}": parts[0], "{{.ResourceKind}}": kind.lower(), "{{.ResourceAPIVersion}}": parts[-1],
            "{{.KindSuffix}}": suffix}
    return [folder / re.sub(r"\{\{\.\w+\}\}", lambda m: fill[m[0]], tpl) for tpl in SCHEMA_LOCATIONS]


def crd_files_in(paths: list[Path]) -> list[Path]:
    """Expand files and folders (recursively, *.yaml/*.yml/*.json, sorted) to the CRD files they hold."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
        elif path.is_file():
            found.add(path)
        else:
            raise SchemaError(f"CRD path {path} is neither a file nor a folder")
    return [p for p in sorted(found) if _CRD_KIND.search(_read(p))]


def crd_kinds(files: list[Path], group: str) -> set[str]:
    """The kinds of one API group the CRD files define."""
    return {(crd.get("spec") or {}).get("names", {}).get("kind") for path in files for crd in _crds(path)
            if (crd.get("spec") or {}).get("group") == group}


@functools.cache
def _package() -> tuple[Path, str]:
    """kubernetes-validate's folder and version, found without importing it (it imports jsonschema: 50 ms a run)."""
    from kflowgen.cache import dist_version

    spec = importlib.util.find_spec("kubernetes_validate")
    if spec and spec.submodule_search_locations:
        return Path(spec.submodule_search_locations[0]), dist_version("kubernetes_validate")
    import kubernetes_validate  # an unusual install: ask the package itself

    return Path(kubernetes_validate.__file__).parent, kubernetes_validate.__version__


def schema_dir(kubernetes_version: str, crd_files: list[Path], cache_root: Path) -> Path:
    """Return a folder (created once, cached under cache_root, reused when the key matches) holding the schemas. A
    later CRD file wins over an earlier one for a kind both define."""
    version, source = _k8s_source(kubernetes_version)
    digest = hashlib.sha256(f"{CONVERTER_VERSION}\0{_package()[1]}\0{version}\0".encode())
    for path in crd_files:
        data = _read(path)
        digest.update(len(data).to_bytes(8, "big") + data)
    final = cache_root / "schemas" / digest.hexdigest()[:16]
    if final.is_dir():
        if _intact(final):
            return final
        shutil.rmtree(final, ignore_errors=True)  # edited, truncated or added to since it was made: made again
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        defs = _write_kubernetes(source, tmp)
        for path in crd_files:
            for crd in _crds(path):
                _write_crd(crd, defs, tmp)
        (tmp / MANIFEST).write_text(json.dumps(_stat(tmp), sort_keys=True))
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():  # otherwise a concurrent build won the rename race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


MANIFEST = ".kflowgen-manifest"  # {file: [size, mtime_ns]} of every schema file, written when the folder is made


def _stat(folder: Path) -> dict[str, list[int]]:
    out = {}
    for path in folder.rglob("*"):
        if path.name != MANIFEST and not path.is_dir():
            st = path.lstat()
            out[path.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _intact(folder: Path) -> bool:
    """The folder holds exactly the files it was made with, unchanged (size and modification time, as git's index
    vouches for a file): a schema edited in the cache would otherwise pass or fail objects it should not."""
    try:
        return json.loads((folder / MANIFEST).read_text()) == _stat(folder)
    except (OSError, ValueError):
        return False


def _k8s_source(version: str) -> tuple[str, Path]:
    """Normalise "1.34", "1.34.0", "v1.34.0" to "1.34.0" (patch releases share the X.Y.0 schemas)."""
    root = _package()[0] / "kubernetes-json-schema"
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version.strip())
    normalised = f"{match[1]}.{match[2]}.0" if match else version
    if not match or not (root / f"v{normalised}-local-strict").is_dir():
        known = sorted((p.name[1:].removesuffix("-local-strict") for p in root.glob("v*-local-strict")),
                       key=lambda v: tuple(map(int, v.split("."))))
        raise SchemaError(f"Kubernetes version {version!r} is not in kubernetes-validate "
                          f"{_package()[1]} (it has {', '.join(known)})")
    return normalised, root / f"v{normalised}-local-strict"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"cannot read CRD file {path}: {exc}") from exc


def _crds(path: Path) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.load_all(_read(path), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as exc:
        raise SchemaError(f"cannot parse CRD file {path}: {exc}") from exc
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]


def _localise(node: Any, refs: set[str]) -> Any:
    """Copy node, dropping $id and pointing definition refs at the file's own $defs; collect the names."""
    if isinstance(node, list):
        return [_localise(item, refs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _localise(v, refs) for k, v in node.items() if not (k == "$id" and isinstance(v, str))}
    if isinstance(node.get("$ref"), str) and (match := _REF.fullmatch(node["$ref"])):
        refs.add(match[1])
        out["$ref"] = f"#/$defs/{match[1]}"
    return out


def _standalone(doc: dict[str, Any], defs: Defs) -> dict[str, Any]:
    """doc plus, in its own $defs, every definition it reaches transitively."""
    refs: set[str] = set()
    out = _localise(doc, refs)
    todo = list(refs)
    while todo:
        new = defs[todo.pop()][1] - refs
        refs |= new
        todo += new
    return {**out, "$defs": {name: defs[name][0] for name in sorted(refs)}}


def _dump(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_kubernetes(source: Path, out: Path) -> Defs:
    """Write one standalone file per group/version/kind; return the localised definitions."""
    defs: Defs = {}
    for name, schema in json.loads((source / "_definitions.json").read_bytes())["$defs"].items():
        refs: set[str] = set()
        defs[name] = (_localise(schema, refs), refs)
    for file in sorted(source.glob("*.json")):
        doc = json.loads(file.read_bytes())
        for gvk in doc.get("x-kubernetes-group-version-kind", []) if isinstance(doc, dict) else []:
            group = gvk["group"].split(".")[0]  # all that kubeconform's KindSuffix keeps of the group
            name = out / f"{gvk['kind'].lower()}{'-' + group if group else ''}-{gvk['version']}.json"
            if not name.exists():  # first (sorted) file wins on the rare clash
                _dump(name, _standalone(doc, defs))
    return defs


def _strict(node: Any, structural: bool = True) -> Any:
    """Close structural object schemas; map nullable, int-or-string and draft-4 bounds to 2020-12."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: _strict(v, structural) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = _strict(node[key], structural)
    for key in ("allOf", "anyOf", "oneOf"):  # value validations only: never closed
        if isinstance(node.get(key), list):
            out[key] = [_strict(v, structural=False) for v in node[key]]
    if "not" in node:
        out["not"] = _strict(node["not"], structural=False)
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
            out[bound] = out.pop(limit)
    if out.get("x-kubernetes-int-or-string") is True:
        out["type"] = ["integer", "string"]
        if all(isinstance(b, dict) and set(b) == {"type"} for b in out.get("anyOf", [None])):
            del out["anyOf"]  # the usual [{type: integer}, {type: string}]; it would refuse null
    if out.get("nullable") is True:
        if "type" in out:
            out["type"] = [*(out["type"] if isinstance(out["type"], list) else [out["type"]]), "null"]
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    if structural and out.get("x-kubernetes-embedded-resource") is True and "properties" in out:
        out["properties"] = {**_TYPE_META, "metadata": {"type": "object"}, **out["properties"]}
    if (structural and "properties" in out and "additionalProperties" not in out
            and out.get("x-kubernetes-preserve-unknown-fields") is not True):
        out["additionalProperties"] = False
    return out


def _write_crd(crd: dict[str, Any], defs: Defs, out: Path) -> None:
    spec = crd.get("spec") or {}
    for version in spec.get("versions") or []:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not version.get("served") or not isinstance(schema, dict):
            continue
        props = dict(schema.get("properties") or {})
        # The API server checks metadata as ObjectMeta; a CRD may only add constraints on top.
        meta = _strict(props.pop("metadata", {"type": "object"}), structural=False)
        root = _strict({**schema, "properties": props})
        root["properties"] = {**_TYPE_META, **root["properties"], "metadata": {"allOf": [meta, {"$ref": _OBJECT_META}]}}
        path = out / spec["group"] / f"{spec['names']['kind'].lower()}_{version['name']}.json"
        _dump(path, _standalone({**root, "$schema": DRAFT}, defs))
