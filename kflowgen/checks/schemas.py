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
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
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


_SIMPLE_KIND = re.compile(r"[A-Za-z0-9]+")
_SIMPLE_API = re.compile(r"(?:[a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?v[a-z0-9]+")


def schema_paths(folder: Path, kind: str, api_version: str) -> list[Path]:
    """The files kubeconform tries for a kind, in order: SCHEMA_LOCATIONS filled as its registry fills them
    (group = apiVersion before the first "/", version = after the last, KindSuffix = "-<group's first label>"
    and "-<version>", all lower case but the group)."""
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower() + ("-" + parts[1].lower() if len(parts) > 1 else "")
    fill = {"{{.Group}}": parts[0], "{{.ResourceKind}}": kind.lower(), "{{.ResourceAPIVersion}}": parts[-1],
            "{{.KindSuffix}}": suffix}
    return [folder / re.sub(r"\{\{\.\w+\}\}", lambda m: fill[m[0]], tpl) for tpl in SCHEMA_LOCATIONS]


class Prechecker:
    """Strict validation of built objects kflowgen already holds, with jsonschema-rs (compiled once per kind per
    run), for objects kubeconform would check against the same file of this folder in the same way: the file it
    would pick, draft 2020-12 (every file here declares it), formats not asserted (kubeconform asserts them only
    below draft 2019). It only vouches: an object it does not pass goes to kubeconform, whose verdict and message are
    the ones reported. It does not pass an object that is invalid, a list (kubeconform checks its items), one without
    a plain kind and apiVersion, one holding an integer beyond 2^53 (kubeconform reads numbers as float64), or one
    whose schema file is damaged (kubeconform would then try the next location) or has a regular expression outside
    the part of the syntax in which Go's regexp and jsonschema-rs agree and which Go compiles (CRDs may hold any).
    tests/test_kubernetes_schemas.py holds its verdicts to kubeconform's on valid and broken objects of every kind."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._validators: dict[tuple[str, str], Any] = {}

    @staticmethod
    def version() -> str:
        from kflowgen.cache import dist_version

        return dist_version("jsonschema_rs")

    def passes(self, obj: Any) -> bool:
        if not isinstance(obj, dict):
            return False
        kind, api = obj.get("kind"), obj.get("apiVersion")
        if not (isinstance(kind, str) and isinstance(api, str) and _SIMPLE_KIND.fullmatch(kind)
                and _SIMPLE_API.fullmatch(api)) or kind.lower() == "list":  # kubeconform checks a list's items
            return False
        validator = self._validators.get((api, kind), False)
        if validator is False:
            validator = self._validators[api, kind] = self._compile(kind, api)
        return validator is not None and validator.is_valid(obj) and _float64_exact(obj)

    def _compile(self, kind: str, api: str):
        import jsonschema_rs

        for path in schema_paths(self.folder, kind, api):
            try:
                schema = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # as kubeconform: the next location
            except (OSError, ValueError):  # kubeconform would go on to the next location: not vouched for here
                return None
            if not isinstance(schema, dict) or schema.get("$schema") != _DRAFT or not _portable_patterns(schema):
                return None
            try:
                return jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
            except ValueError:  # jsonschema_rs.ValidationError is one
                return None
        return None


_FLOAT64_EXACT = 2 ** 53
# Regular expressions read alike by Go's RE2 (kubeconform) and jsonschema-rs: printable ASCII literals, classes of
# them, groups without flags, alternation, anchors, `.` and counted repetition. Not \d, \s, \w or \b (Unicode in
# one, ASCII in the other), (?...) (RE2 refuses lookaround), back-references, escapes of code points, nested or
# [:posix:] classes, a class opening with "]", stacked quantifiers, or counts that Go refuses: above 1000, nested
# ones whose product is above 1000 (Go's repeatIsValid), or any in a pattern over 1000 characters (Go also limits
# the size of the compiled program).
_ESCAPABLE = set(".^$|()[]{}*+?\\/-")
_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def _portable_patterns(node: Any) -> bool:
    if isinstance(node, list):
        return all(map(_portable_patterns, node))
    if not isinstance(node, dict):
        return True
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str) and not _portable(value):
            return False
        if key == "patternProperties" and isinstance(value, dict) and not all(map(_portable, value)):
            return False
        if not _portable_patterns(value):
            return False
    return True


def _portable(pattern: str) -> bool:
    i, in_class, quantified = 0, False, False
    counted = [1]  # per open group: the largest product of counted repetitions inside it
    last = 1  # that product for the atom just read (1 for a plain atom)
    while i < len(pattern):
        c, was_quantified, quantified = pattern[i], quantified, False
        if c == "\\":
            if pattern[i + 1:i + 2] not in _ESCAPABLE or i + 1 == len(pattern):
                return False
            i, last = i + 2, 1
            continue
        if not " " <= c <= "~":
            return False
        if in_class:
            if c == "[":
                return False
            in_class = c != "]"
        elif c == "[":
            i += 2 if pattern[i + 1:i + 2] == "^" else 1
            if pattern[i:i + 1] in ("]", ""):
                return False
            in_class, last = True, 1
            continue
        elif c == "(" and pattern[i + 1:i + 2] == "?" or c == "}":
            return False
        elif c == "(":
            counted.append(1)
        elif c == ")":
            if len(counted) == 1:
                return False
            last = counted.pop()
            counted[-1] = max(counted[-1], last)
        elif c in "*+?{":
            if was_quantified and not (c == "?" and pattern[i - 1] != "?"):
                return False
            if c == "{":
                count = _COUNT.match(pattern, i)
                if not count or any(int(n) > 1000 for n in count.groups() if n) or len(pattern) > 1000:
                    return False
                low, high = count.groups()
                last *= int(high) if high else int(low)  # {n,}: Go counts the minimum
                if last > 1000:
                    return False
                counted[-1] = max(counted[-1], last)
                i = count.end()
                quantified = True
                continue
            quantified = True
        else:
            last = 1
        i += 1
    return not in_class and len(counted) == 1


def _float64_exact(value: Any) -> bool:
    """No integer in value that a float64 (as kubeconform reads JSON numbers) would round."""
    t = type(value)
    if t is dict:
        return all(map(_float64_exact, value.values()))
    if t is list:
        return all(map(_float64_exact, value))
    return t is not int or -_FLOAT64_EXACT <= value <= _FLOAT64_EXACT


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
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        defs = _write_kubernetes(source, tmp)
        for path in crd_files:
            for crd in _crds(path):
                _write_crd(crd, defs, tmp)
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():  # otherwise a concurrent build won the rename race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


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
        _dump(path, _standalone({**root, "$schema": _DRAFT}, defs))
