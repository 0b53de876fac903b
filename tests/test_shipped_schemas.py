"""A clone is enough: the schemas kflowgen validates against ship with it (kflowgen/upstream, SOURCES.json), and give
the same verdicts as the upstream files beside the project (../shared/upstream, an independent copy); a repository
with no ../shared beside it validates, and so does what `kflowgen init` writes; a pinned version kflowgen has no
schema for is one clear finding."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import jsonschema_rs
import pytest
import yaml
from typer.testing import CliRunner

from conftest import PROJECT, UPSTREAM, mutations
from kflowgen.checks import schemas as kschemas, verify
from kflowgen import upstream
from kflowgen.cli import app

needs_upstream = pytest.mark.skipif(not UPSTREAM.is_dir(), reason="needs ../shared/upstream beside the project")


def run(*args, env=None):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


# --- what is shipped, and where it comes from ---------------------------------------------------------------------

def test_every_shipped_file_is_in_sources_with_its_sha256_and_licence():
    sources = upstream.sources()
    files = sorted(p.relative_to(upstream.FOLDER).as_posix() for p in upstream.FOLDER.glob("*/*/*.json"))
    assert sorted(s["file"] for s in sources) == files
    for s in sources:
        assert hashlib.sha256((upstream.FOLDER / s["file"]).read_bytes()).hexdigest() == s["sha256"], s["file"]
        assert (upstream.FOLDER / s["licence"].split(" ")[0]).is_file()
        assert s["project"] and s["version"] and s["upstream_path"] and len(s["upstream_sha256"]) == 64
    versions = {(s["project"], s["version"]) for s in sources}
    assert {("Argo CD", "v" + v) for v in upstream.ARGOCD} | {("Zero to JupyterHub", v) for v in upstream.JUPYTERHUB} \
        <= versions


@needs_upstream
def test_the_shipped_chart_schema_is_the_4_4_0_release(tmp_path):
    """The release the Applications pin, not the chart's development head (which adds proxy.chp.command)."""
    chart = UPSTREAM / "jupyterhub-chart/jupyterhub"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["version"] == "4.4.0"
    assert upstream.chart("4.4.0").schema == json.loads((chart / "values.schema.json").read_text())
    assert upstream.chart("4.4.0").values == yaml.safe_load((chart / "values.yaml").read_text())
    head = yaml.safe_load((UPSTREAM / "jupyterhub/values.schema.yaml").read_text())
    values = {**upstream.chart("4.4.0").values}
    values["proxy"] = {**values["proxy"], "chp": {**values["proxy"]["chp"], "command": ["x"]}}
    assert jsonschema.Draft7Validator(head).is_valid(values)
    assert not jsonschema.Draft7Validator(upstream.chart("4.4.0").schema).is_valid(values)


# --- the same verdicts as the upstream files ----------------------------------------------------------------------

def _validators(folder: Path, objects: list[dict]) -> dict:
    out = {}
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key not in out:
            path = next(p for p in kschemas.schema_paths(folder, obj["kind"], obj["apiVersion"]) if p.is_file())
            out[key] = jsonschema_rs.Draft202012Validator(json.loads(path.read_text()), validate_formats=False)
    return out


@needs_upstream
def test_shipped_crds_give_the_upstream_crds_verdicts(built_example, tmp_path):
    """Every custom object of the built_example, and every single-point mutation of each (unknown keys, removed keys,
    swapped types, edge values), is valid against the shipped CRDs exactly when it is against the upstream ones."""
    _, _, built = built_example
    custom = [d for text in built.overlays.values() for d in yaml.safe_load_all(text)
              if d and "/" in d["apiVersion"] and d["apiVersion"].split("/")[0].endswith((".io", ".org"))
              and d["apiVersion"].split("/")[0] not in ("networking.k8s.io", "rbac.authorization.k8s.io")]
    kinds = {(d["apiVersion"], d["kind"]) for d in custom}
    assert kinds == {("argoproj.io/v1alpha1", "Application"), ("argoproj.io/v1alpha1", "AppProject"),
                     ("trainer.kubeflow.org/v1alpha1", "TrainJob"), ("kueue.x-k8s.io/v1beta2", "ClusterQueue"),
                     ("kueue.x-k8s.io/v1beta2", "Cohort"), ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
                     ("kueue.x-k8s.io/v1beta2", "ResourceFlavor")}
    shipped = kschemas.schema_dir("1.34.0", upstream.crd_files("3.6.2"), tmp_path / "shipped")
    theirs = kschemas.schema_dir("1.34.0", kschemas.crd_files_in([UPSTREAM / "crds/argoproj.io",
                                                                  UPSTREAM / "crds/kubeflow.org",
                                                                  UPSTREAM / "crds/trainer.kubeflow.org",
                                                                  UPSTREAM / "crds/kueue.x-k8s.io"]), tmp_path / "theirs")
    samples = {k: [d for d in custom if (d["apiVersion"], d["kind"]) == k][:2] for k in kinds}
    cases = [m for docs in samples.values() for d in docs for m in [d, *mutations(d)]
             if isinstance(m, dict) and m.get("kind") and m.get("apiVersion") in {k[0] for k in kinds}]
    ours, upstream_ = _validators(shipped, custom), _validators(theirs, custom)
    verdicts = [(ours[key].is_valid(m), upstream_[key].is_valid(m)) for m in cases
                if (key := (m["apiVersion"], m["kind"])) in ours]
    assert len(verdicts) > 1000
    assert [i for i, (a, b) in enumerate(verdicts) if a != b] == []
    assert {a for a, _ in verdicts} == {True, False}  # the mutations do break some


@needs_upstream
def test_shipped_chart_gives_the_4_4_0_charts_verdicts(built_example):
    _, files, _ = built_example
    chart = UPSTREAM / "jupyterhub-chart/jupyterhub"
    theirs = jsonschema.Draft7Validator(yaml.safe_load((chart / "values.schema.yaml").read_text()))
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    shipped = upstream.chart("4.4.0")
    ours = jsonschema.Draft7Validator(shipped.schema)
    verdicts = []
    for env in ("dev", "staging", "prod"):
        values = yaml.safe_load(files[f"overlays/{env}/jupyterhub/values.yaml"])
        for v in [values, *mutations(values)[:300]]:
            verdicts.append((ours.is_valid(verify.merge_values(shipped.values, v)),
                             theirs.is_valid(verify.merge_values(defaults, v))))
    assert verdicts[0] == (True, True) and all(a == b for a, b in verdicts) and {a for a, _ in verdicts} == {True, False}


# --- a clone with nothing beside it -------------------------------------------------------------------------------

def clone(tmp_path: Path) -> Path:
    """The example repository where a user's clone is: no ../shared beside it."""
    root = tmp_path / "clone"
    for name in ("specs", "bases", "overlays", ".github"):
        shutil.copytree(PROJECT / name, root / name)
    assert not (root.parent / "shared").exists()
    return root


def test_a_clone_with_nothing_beside_it_validates(tmp_path):
    code, out = run("validate", "--no-cache", "-C", clone(tmp_path), "--format", "text")
    assert code == 0 and out.endswith("kflowgen: ok\n") and "205 objects built and validated" in out, out


def test_init_writes_a_repository_that_validates_with_no_flags(tmp_path):
    code, out = run("init", tmp_path / "new")
    assert code == 0, out
    code, out = run("validate", "-C", tmp_path / "new", "--format", "text")
    assert (code, out.splitlines()[-1]) == (0, "kflowgen: ok"), out
    assert "warning" not in out


def test_an_argocd_version_without_shipped_crds_is_one_located_error(tmp_path):
    root = clone(tmp_path)
    platform = root / "specs/platform.yaml"
    platform.write_text(platform.read_text().replace("version: 3.6.2", "version: 2.14.0"))
    code, out = run("validate", "-C", root, "--format", "text")
    line = next(i for i, t in enumerate(platform.read_text().splitlines(), 1) if "version: 2.14.0" in t)
    assert (code, out.splitlines()[0]) == (1, f"specs/platform.yaml:{line}:12: error [KF408] kflowgen ships the Argo "
                                              "CD CRDs of version 3.6.2, not 2.14.0"), out
    assert out.count("[KF4") == 1 and out.endswith("kflowgen: 1 error, 0 warnings\n")


@needs_upstream
def test_that_version_validates_with_its_crds_in_validation_crds(tmp_path):
    root = clone(tmp_path)
    (tmp_path / "shared").symlink_to(UPSTREAM.parent)
    platform = root / "specs/platform.yaml"
    platform.write_text(platform.read_text().replace("version: 3.6.2", "version: 2.14.0")
                        + "validation:\n  crds: [../shared/upstream/crds/argoproj.io]\n")
    code, out = run("validate", "-C", root, "--format", "text")
    assert code == 0, out


def test_a_chart_version_without_a_shipped_schema_is_one_warning_and_the_rest_runs(tmp_path):
    root = clone(tmp_path)
    platform = root / "specs/platform.yaml"
    platform.write_text(platform.read_text().replace("chartVersion: 4.4.0", "chartVersion: 4.3.1"))
    assert run("render", "-C", root)[0] == 0  # the Applications pin the chart version
    code, out = run("validate", "-C", root, "--format", "text")
    warnings = [line for line in out.splitlines() if "warning [" in line]
    assert code == 0 and len(warnings) == 1 and "[KF407] the generated JupyterHub values were not checked" in warnings[0]
    assert "kflowgen ships the schema of chart 4.4.0, not 4.3.1" in warnings[0]
    assert "205 objects built and validated" in out


def test_a_platforms_own_crd_wins_over_the_shipped_one(tmp_path):
    """validation.crds comes after the shipped CRDs: a stricter own Application CRD decides."""
    crd = json.loads((upstream.FOLDER / "argo-cd/v3.6.2/application-crd.json").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["required"] = [*schema["properties"]["spec"].get("required", []), "revisionHistoryLimit"]
    root = clone(tmp_path)
    (root / "crds").mkdir()
    (root / "crds/application.json").write_text(json.dumps(crd))
    platform = root / "specs/platform.yaml"
    platform.write_text(platform.read_text() + "validation:\n  crds: [crds]\n")
    code, out = run("validate", "-C", root, "--format", "text")
    assert code == 1 and "[KF402] Application argocd/dev-root: /spec: missing property 'revisionHistoryLimit'" in out
