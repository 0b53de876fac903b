"""The offline Kubernetes schema folder (kflowgen.checks.schemas), checked against the real kubeconform binary."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import mutations
from kflowgen.checks import schemas as kschemas
from kflowgen.checks.schemas import SCHEMA_LOCATIONS, SchemaError, crd_files_in, kubeconform_args, schema_dir
from kflowgen.build import build
from kflowgen.build import overlays_of
from kflowgen.options import Options
from kflowgen.specs import layout
from kflowgen.targets.cached import render_cached

K8S = "1.34.0"
UPSTREAM_CRDS = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "crds"
_BUNDLED = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "kubeconform"
KUBECONFORM = str(_BUNDLED) if _BUNDLED.is_file() else shutil.which("kubeconform")
needs_kubeconform = pytest.mark.skipif(
    KUBECONFORM is None, reason=f"kubeconform binary not found at {_BUNDLED} nor on PATH"
)
needs_crds = pytest.mark.skipif(not UPSTREAM_CRDS.is_dir(), reason=f"upstream CRDs missing at {UPSTREAM_CRDS}")

POD_SPEC = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
                                                        "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}

# kind -> (valid object, path of the mapping that gets an unknown field, as kubeconform reports it)
CASES: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {
    "Namespace": ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"a": "b"}}},
                  ("metadata",)),
    "Job": ({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "namespace": "team-a"},
             "spec": {"backoffLimit": 2, "template": {"spec": POD_SPEC}}},
            ("spec", "template", "spec", "containers", 0)),
    "RoleBinding": ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "edit", "namespace": "team-a"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                     "subjects": [{"kind": "Group", "name": "team-a", "apiGroup": "rbac.authorization.k8s.io"}]},
                    ("subjects", 0)),
    "NetworkPolicy": ({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "same-ns", "namespace": "team-a"},
                       "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                                "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}]}},
                      ("spec", "ingress", 0, "from", 0)),
    "Application": ({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                     "metadata": {"name": "team-a", "namespace": "argocd"},
                     "spec": {"project": "default",
                              "source": {"repoURL": "https://git.example.com/ml.git", "path": "overlays/team-a",
                                         "targetRevision": "HEAD"},
                              "destination": {"server": "https://kubernetes.default.svc", "namespace": "team-a"},
                              "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}},
                    ("spec", "source")),
    "AppProject": ({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                    "metadata": {"name": "ml", "namespace": "argocd"},
                    "spec": {"sourceRepos": ["*"],
                             "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "team-a"}]}},
                   ("spec", "destinations", 0)),
    "PyTorchJob": ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                    "metadata": {"name": "ddp", "namespace": "team-a"},
                    "spec": {"pytorchReplicaSpecs": {
                        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": POD_SPEC}},
                        "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": {"spec": POD_SPEC}}}}},
                   ("spec", "pytorchReplicaSpecs", "Worker", "template", "spec", "containers", 0)),
}


def run_kubeconform(folder: Path, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """kubeconform -strict -summary -output json <schema locations>, manifests on stdin."""
    assert KUBECONFORM is not None
    cmd = [KUBECONFORM, "-strict", "-summary", "-output", "json", *kubeconform_args(folder)]
    proc = subprocess.run(cmd, input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=300)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def with_unknown_field(obj: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    bad: dict[str, Any] = json.loads(json.dumps(obj))
    node: Any = bad
    for step in path:
        node = node[step]
    node["bogusField"] = 1
    return bad


def files_of(folder: Path) -> dict[str, bytes]:
    """The schemas of a folder (not its manifest, which records this copy's file times)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != kschemas.MANIFEST}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return schema_dir(K8S, crd_files_in([UPSTREAM_CRDS]), tmp_path_factory.mktemp("cache"))


def test_kubeconform_args_point_into_folder(tmp_path: Path) -> None:
    args = kubeconform_args(tmp_path)
    assert args[0::2] == ["-schema-location"] * len(SCHEMA_LOCATIONS)
    assert args[1::2] == [str(tmp_path / tpl) for tpl in SCHEMA_LOCATIONS]


@needs_crds
def test_crd_files_in_upstream() -> None:
    files = crd_files_in([UPSTREAM_CRDS])
    assert files == sorted(files)
    assert UPSTREAM_CRDS / "argoproj.io" / "appproject-crd.yaml" in files
    assert UPSTREAM_CRDS / "kubeflow.org" / "kubeflow.org_pytorchjobs.yaml" in files


def _crd(group: str, kind: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{kind.lower()}s.{group}"},
            "spec": {"group": group, "scope": "Namespaced", "versions": versions,
                     "names": {"kind": kind, "plural": f"{kind.lower()}s", "singular": kind.lower()}}}


def test_crd_files_in_expands_and_filters(tmp_path: Path) -> None:
    crd = _crd("example.io", "Thing", [{"name": "v1", "served": True, "storage": True,
                                        "schema": {"openAPIV3Schema": {"type": "object"}}}])
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "nested" / "deeper" / "b.yml").write_text(yaml.safe_dump_all([deploy, crd]))
    (tmp_path / "a.json").write_text(json.dumps(crd))
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deploy))
    (tmp_path / "crd.txt").write_text(yaml.safe_dump(crd))
    single = tmp_path / "elsewhere.yaml"
    single.write_text(yaml.safe_dump(crd))
    expected = [tmp_path / "a.json", single, tmp_path / "nested" / "deeper" / "b.yml"]
    assert crd_files_in([tmp_path / "nested", tmp_path, single]) == expected


def test_crd_files_in_does_not_parse_other_files(tmp_path: Path) -> None:
    (tmp_path / "chart.yaml").write_text("kind: {{ .Values.kind }\n  - [unclosed\n")
    looks_like_crd = tmp_path / "broken.yaml"
    looks_like_crd.write_text("kind: CustomResourceDefinition\nspec: [unclosed\n")
    assert crd_files_in([tmp_path]) == [looks_like_crd]  # the parse error surfaces in schema_dir
    with pytest.raises(SchemaError, match="missing.yaml"):
        crd_files_in([tmp_path / "missing.yaml"])


def test_schema_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"'1\.99' is not in kubernetes-validate"):
        schema_dir("1.99", [], tmp_path)
    with pytest.raises(SchemaError, match="banana"):
        schema_dir("banana", [], tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: {unclosed\n")
    with pytest.raises(SchemaError, match="broken.yaml"):
        schema_dir(K8S, [broken], tmp_path / "cache")  # "cannot parse CRD file .../broken.yaml: ..."
    with pytest.raises(SchemaError, match="missing.yaml"):
        schema_dir(K8S, [tmp_path / "missing.yaml"], tmp_path / "cache")
    assert not any((tmp_path / "cache" / "schemas").iterdir()), "failed builds must leave nothing behind"


def test_versions_normalise_and_cache_is_reused(tmp_path: Path) -> None:
    first = schema_dir("1.34", [], tmp_path)
    assert first.parent == tmp_path / "schemas" and len(first.name) == 16
    made = (first / "pod-v1.json").stat().st_mtime_ns
    assert schema_dir("1.34.0", [], tmp_path) == first
    assert schema_dir("v1.34.0", [], tmp_path) == first
    assert (first / "pod-v1.json").stat().st_mtime_ns == made, "reused, not made again"
    assert [p.name for p in (tmp_path / "schemas").iterdir()] == [first.name], "no temp dirs left"
    assert schema_dir("1.33", [], tmp_path) != first


@pytest.mark.parametrize("tamper", ["edit", "truncate", "add", "remove", "manifest"])
def test_a_schema_folder_changed_after_it_was_made_is_made_again(tmp_path: Path, tamper: str) -> None:
    """The folder lives in the cache, outside the repository; a schema edited there would pass or fail objects it
    should not, so a folder that is not exactly as made is never used."""
    folder = schema_dir("1.34", [], tmp_path)
    pod = folder / "pod-v1.json"
    original = pod.read_bytes()
    if tamper == "edit":
        pod.write_bytes(original.replace(b"false", b"true ", 1))  # same size: the modification time tells
    elif tamper == "truncate":
        pod.write_bytes(b"{}")
    elif tamper == "add":
        (folder / "service-v1.json").rename(folder / "service-v1.json.bak")
        (folder / "service-v1.json").write_text("{}")
    elif tamper == "remove":
        pod.unlink()
    else:
        (folder / kschemas.MANIFEST).write_text("{}")
    again = schema_dir("1.34", [], tmp_path)
    assert again == folder and pod.read_bytes() == original
    assert not (folder / "service-v1.json.bak").exists() and (folder / "service-v1.json").read_bytes() != b"{}"


@needs_crds
def test_output_is_standalone(folder: Path) -> None:
    files = files_of(folder)
    assert "namespace-v1.json" in files and "kubeflow.org/pytorchjob_v1.json" in files
    # kubernetes-validate names this one -apiserverinternal-, kubeconform looks for the group's first label
    assert "storageversion-internal-v1alpha1.json" in files
    for name, data in files.items():
        assert data.endswith(b"\n") and b"/api/_definitions.json" not in data, name
        doc = json.loads(data)
        assert "$id" not in doc, name
        refs = {ref for ref in _walk_refs(doc)}
        assert refs <= {f"#/$defs/{d}" for d in doc.get("$defs", {})}, name


def _walk_refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for item in node for r in _walk_refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
    return own + [r for v in node.values() for r in _walk_refs(v)]


@needs_crds
def test_build_is_deterministic_and_keyed_on_crd_content(folder: Path, tmp_path: Path) -> None:
    again = schema_dir(K8S, crd_files_in([UPSTREAM_CRDS]), tmp_path / "other")
    assert again.name == folder.name
    assert files_of(again) == files_of(folder)

    crd = tmp_path / "appproject.yaml"
    shutil.copy(UPSTREAM_CRDS / "argoproj.io" / "appproject-crd.yaml", crd)
    before = schema_dir(K8S, [crd], tmp_path / "keyed")
    crd.write_text(crd.read_text().replace("description: AppProject", "description: Changed AppProject", 1))
    after = schema_dir(K8S, [crd], tmp_path / "keyed")
    assert before != after and before.is_dir() and after.is_dir()


@needs_kubeconform
@needs_crds
@pytest.mark.parametrize("kind", sorted(CASES))
def test_valid_object_passes(folder: Path, kind: str) -> None:
    report = run_kubeconform(folder, [CASES[kind][0]])
    assert report["summary"] == {"valid": 1, "invalid": 0, "errors": 0, "skipped": 0}, report


@needs_kubeconform
@needs_crds
@pytest.mark.parametrize("kind", sorted(CASES))
def test_unknown_field_is_invalid_with_its_path(folder: Path, kind: str) -> None:
    obj, path = CASES[kind]
    report = run_kubeconform(folder, [with_unknown_field(obj, path)])
    assert report["summary"]["invalid"] == 1, report
    [result] = report["resources"]
    assert result["status"] == "statusInvalid" and result["kind"] == kind
    pointer = "/" + "/".join(str(step) for step in path)
    assert f"at '{pointer}': additional properties 'bogusField' not allowed" in result["msg"], result["msg"]


@needs_kubeconform
@needs_crds
def test_kind_without_schema_is_an_error(folder: Path) -> None:
    docs = [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
            {"apiVersion": "argoproj.io/v1beta9", "kind": "Application", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Affinity", "metadata": {"name": "not-a-kind"}}]
    report = run_kubeconform(folder, docs)
    assert report["summary"] == {"valid": 0, "invalid": 0, "errors": 3, "skipped": 0}, report
    for result in report["resources"]:
        assert result["status"] == "statusError"
        assert result["msg"] == f"could not find schema for {result['kind']}"


@needs_kubeconform
@needs_crds
def test_every_schema_compiles_in_kubeconform(folder: Path) -> None:
    docs = []
    for path in sorted(folder.rglob("*.json")):
        if path.parent == folder:
            gvk = json.loads(path.read_text())["x-kubernetes-group-version-kind"][0]
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            docs.append({"apiVersion": api, "kind": gvk["kind"], "metadata": {"name": "x"}})
        else:
            kind, version = path.stem.split("_")
            docs.append({"apiVersion": f"{path.parent.name}/{version}", "kind": kind, "metadata": {"name": "x"}})
    report = run_kubeconform(folder, docs)
    assert report["summary"]["errors"] == 0, [r for r in report["resources"] if r["status"] == "statusError"]
    assert report["summary"]["valid"] + report["summary"]["invalid"] == len(docs)


GADGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {  # no apiVersion/kind declared: they must be added
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "maybePort": {"x-kubernetes-int-or-string": True, "nullable": True},
            "note": {"type": "string", "nullable": True},
            "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
            "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                      "properties": {"known": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "object",
                                                                  "properties": {"v": {"type": "string"}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                         "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
            "choice": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                       "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        }},
    },
}


@pytest.fixture(scope="module")
def gadget_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("gadget")
    crd = _crd("example.kflowgen.io", "Gadget", [
        {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": GADGET_SCHEMA}},
        {"name": "v0", "served": False, "storage": False, "schema": {"openAPIV3Schema": GADGET_SCHEMA}},
    ])
    (base / "gadget.yaml").write_text(yaml.safe_dump_all([{"apiVersion": "v1", "kind": "ConfigMap"}, crd]))
    return schema_dir(K8S, crd_files_in([base]), base / "cache")


def test_crd_versions_written(gadget_folder: Path) -> None:
    assert (gadget_folder / "example.kflowgen.io" / "gadget_v1.json").is_file()
    assert not (gadget_folder / "example.kflowgen.io" / "gadget_v0.json").exists(), "unserved version"


GOOD_GADGET_SPEC = {"port": 80, "maybePort": None, "note": None, "mode": None, "count": 1,
                    "extra": {"known": "k", "anything": {"goes": 1}}, "labels": {"x": {"v": "1"}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"any": 1}},
                    "choice": {"a": "x"}}


@needs_kubeconform
@pytest.mark.parametrize(("change", "error"), [
    ({}, None),
    ({"port": "http", "maybePort": 8080, "mode": "a", "note": "a note"}, None),
    ({"bogusField": 1}, "at '/spec': additional properties 'bogusField' not allowed"),
    ({"port": 1.5}, "at '/spec/port'"),
    ({"note": 3}, "at '/spec/note'"),
    ({"mode": "c"}, "at '/spec/mode'"),
    ({"count": 0}, "at '/spec/count'"),
    ({"extra": {"known": 1}}, "at '/spec/extra/known'"),
    ({"labels": {"x": {"w": "1"}}}, "at '/spec/labels/x': additional properties 'w' not allowed"),
    ({"template": {"kind": "Pod", "bogus": 1}}, "at '/spec/template': additional properties 'bogus' not allowed"),
    ({"choice": {}}, "at '/spec/choice'"),
])
def test_crd_conversion_semantics(gadget_folder: Path, change: dict[str, Any], error: str | None) -> None:
    gadget = {"apiVersion": "example.kflowgen.io/v1", "kind": "Gadget",
              "metadata": {"name": "g", "labels": {"a": "b"}}, "spec": {**GOOD_GADGET_SPEC, **change}}
    report = run_kubeconform(gadget_folder, [gadget])
    if error is None:
        assert report["summary"]["valid"] == 1, report
    else:
        assert report["summary"]["invalid"] == 1, report
        assert error in report["resources"][0]["msg"], report["resources"][0]["msg"]


@needs_kubeconform
def test_crd_metadata_is_checked_as_object_meta(gadget_folder: Path) -> None:
    gadget = {"apiVersion": "example.kflowgen.io/v1", "kind": "Gadget", "metadata": {"name": "g", "lables": {}}}
    report = run_kubeconform(gadget_folder, [gadget])
    assert report["summary"]["invalid"] == 1, report
    assert "at '/metadata': additional properties 'lables' not allowed" in report["resources"][0]["msg"]


# --- the prechecker: jsonschema-rs vouches only for what kubeconform passes ------------------------------------------

def kubeconform_verdicts(folder: Path, docs: list[Any], tmp_path: Path, emitted: bool = False) -> list[str]:
    """kubeconform -strict's status for each document, each from its own file: written as JSON, which kubeconform
    reads as YAML with the very values Python holds, or (emitted) as kflowgen's emitter writes rendered files."""
    from kflowgen.targets import emit

    assert KUBECONFORM is not None
    suffix = ".yaml" if emitted else ".json"
    for i, doc in enumerate(docs):
        (tmp_path / f"{i:06d}{suffix}").write_text(emit.dump(doc) if emitted else json.dumps(doc), encoding="utf-8")
    cmd = [KUBECONFORM, "-strict", "-verbose", "-output", "json", "-n", "2", *kubeconform_args(folder), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    status = {Path(r["filename"]).name: r["status"] for r in json.loads(proc.stdout)["resources"]}
    return [status[f"{i:06d}{suffix}"] for i in range(len(docs))]


def assert_prechecker_agrees(folder: Path, docs: list[Any], tmp_path: Path, emitted: bool = False) -> tuple[int, int]:
    from kflowgen.checks.prechecker import Prechecker

    checker = Prechecker(folder)
    verdicts = kubeconform_verdicts(folder, docs, tmp_path, emitted)
    vouched = [checker.passes(doc) for doc in docs]
    wrong = [(doc, v) for doc, v, ok in zip(docs, verdicts, vouched) if ok and v != "statusValid"]
    assert not wrong, f"the prechecker passed {len(wrong)} objects kubeconform refuses, e.g. {wrong[:2]}"
    # and it is not merely cautious: what kubeconform passes, it passes too (kubeconform is then not needed)
    missed = [doc for doc, v, ok in zip(docs, verdicts, vouched) if not ok and v == "statusValid"]
    assert not missed, f"{len(missed)} objects kubeconform passes were left to it, e.g. {missed[:2]}"
    return sum(vouched), len(docs) - sum(vouched)


@needs_kubeconform
@needs_crds
def test_prechecker_agrees_with_kubeconform_on_every_case_and_its_mutations(folder: Path, tmp_path: Path) -> None:
    docs = [doc for obj, path in CASES.values() for doc in [obj, with_unknown_field(obj, path), *mutations(obj)]]
    docs += [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},  # no schema
             {"apiVersion": "v1", "kind": "Affinity", "metadata": {"name": "not-a-kind"}},
             {"kind": "Namespace", "metadata": {"name": "no-api-version"}}]
    good, bad = assert_prechecker_agrees(folder, docs, tmp_path)
    assert good > 200 and bad > 250, (good, bad)  # both verdicts well represented


@needs_kubeconform
def test_prechecker_agrees_with_kubeconform_on_crd_semantics(gadget_folder: Path, tmp_path: Path) -> None:
    gadget = {"apiVersion": "example.kflowgen.io/v1", "kind": "Gadget",
              "metadata": {"name": "g", "labels": {"a": "b"}}, "spec": GOOD_GADGET_SPEC}
    docs = [gadget, *mutations(gadget), {**gadget, "apiVersion": "example.kflowgen.io/v0"}]
    good, bad = assert_prechecker_agrees(gadget_folder, docs, tmp_path)
    assert good > 60 and bad > 40, (good, bad)


@needs_kubeconform
@needs_crds
def test_prechecker_agrees_with_kubeconform_on_the_example_repository(folder: Path, tmp_path: Path) -> None:
    """Every object the example repository builds (as kflowgen-kbuild gives them), and the mutations of one object
    of each kind."""
    from kflowgen import cache, tools
    from kflowgen.flow import pipeline

    if tools.find_batch() is None:
        pytest.skip("kflowgen-kbuild is not installed (kflowgen tools install)")
    root = Path(__file__).resolve().parents[1]
    model, _ = pipeline.load(Options(root))
    rendered = render_cached(model, Options(root, 2, cache.Cache(None)))
    built, diags = build(Options(root, 2), rendered, overlays_of(rendered.files))
    assert not diags and built.parsed
    objects = [o for overlay in sorted(built.parsed) for o in built.parsed[overlay]]
    assert {"Application", "AppProject"} <= {o["kind"] for o in objects}  # the Argo CD folders, as rendered
    one_each = {(o["apiVersion"], o["kind"]): o for o in objects}
    docs = objects + [m for o in one_each.values() for m in mutations(o)]
    good, bad = assert_prechecker_agrees(folder, docs, tmp_path)
    assert good >= len(objects) and bad > 1000, (good, bad)
    # objects the renderer holds are vouched for as kubeconform reads the files kflowgen's emitter writes of them
    emitted = [o for overlay in sorted(built.parsed) if layout.is_directory_source(overlay)
               for o in built.parsed[overlay]]
    emitted += [m for o in emitted[:1] + [o for o in emitted if o["kind"] == "AppProject"][:1] for m in mutations(o)]
    (tmp_path / "emitted").mkdir()
    assert_prechecker_agrees(folder, emitted, tmp_path / "emitted", emitted=True)


# Patterns RE2 and jsonschema-rs read differently (or that RE2 refuses), and numbers a float64 rounds: schemas holding
# them are left to kubeconform, and so are objects holding such numbers.
ODD_PATTERNS = [r"^a\sb$", r"^[[:alpha:]]+$", r"^(?!-)[a-z-]+$", r"^(a)\1$", r"^\u00e9$", r"^\d+$", r"^\w+$",
                r"^a{1001}$", r"^[]a]+$", r"^a{2}{3}$", r"^(a{2}){501}$", r"^((x{10}){10}){11}$"]
ODD_VALUES = ["a\u00a0b", "a b", "a]", "abc", "-a", "aa", "\u00e9", "\u0663", "x" * 1001, "]", "aaaaaa", ""]
BIG = 2 ** 53 + 1


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("odd")
    crds = [_crd("odd.kflowgen.io", f"Pat{i}", [{"name": "v1", "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "v": {"type": "string", "pattern": pattern}}}}}}}]) for i, pattern in enumerate(ODD_PATTERNS)]
    crds.append(_crd("odd.kflowgen.io", "Big", [{"name": "v1", "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "max": {"type": "integer", "maximum": 2 ** 63 - 1}, "one": {"type": "integer", "enum": [BIG]},
            "set": {"type": "array", "uniqueItems": True, "items": {"type": "integer"}}}}}}}}]))
    crds.append(_crd("odd.kflowgen.io", "LIST", [{"name": "v1", "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}}]))
    (base / "odd.yaml").write_text(yaml.safe_dump_all(crds))
    return schema_dir(K8S, crd_files_in([base]), base / "cache")


@needs_kubeconform
def test_prechecker_leaves_odd_patterns_and_big_numbers_to_kubeconform(odd_folder: Path, tmp_path: Path) -> None:
    from kflowgen.checks.prechecker import Prechecker

    def obj(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "odd.kflowgen.io/v1", "kind": kind, "metadata": {"name": "o"}, "spec": spec}

    docs = [obj(f"Pat{i}", {"v": v}) for i in range(len(ODD_PATTERNS)) for v in ODD_VALUES]
    docs += [obj(f"Pat{i}", {}) for i in range(len(ODD_PATTERNS))]  # no pattern to match: still not vouched for
    # a kind named "list" in any letter case: kubeconform checks the items (here an unknown field)
    docs.append({"apiVersion": "odd.kflowgen.io/v1", "kind": "LIST", "metadata": {"name": "l"}, "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "bogus": 1}]})
    docs += [obj("Big", spec) for spec in ({"max": 2 ** 63 - 1}, {"one": BIG}, {"set": [BIG, BIG - 1]},
                                           {"max": 7, "one": BIG, "set": [1, 2]})]
    verdicts = kubeconform_verdicts(odd_folder, docs, tmp_path)
    checker = Prechecker(odd_folder)
    vouched = [doc for doc in docs if checker.passes(doc)]
    assert vouched == [], vouched
    # why: jsonschema-rs on its own takes objects of each sort that kubeconform refuses
    import jsonschema_rs

    def raw(doc: dict[str, Any]) -> bool:
        path = odd_folder / "odd.kflowgen.io" / f"{doc['kind'].lower()}_v1.json"
        try:
            return jsonschema_rs.Draft202012Validator(json.loads(path.read_text()), validate_formats=False).is_valid(doc)
        except ValueError:
            return False

    taken = {doc["kind"] for doc, verdict in zip(docs, verdicts) if raw(doc) and verdict != "statusValid"}
    assert {"Big", "Pat0", "Pat1", "Pat2", "Pat3", "Pat10", "Pat11", "LIST"} <= taken, taken
    assert checker.passes(obj("Big", {"max": 7, "set": [1, 2]}))  # small numbers are vouched for
