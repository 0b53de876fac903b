"""Rendered output held against the real consumers: kustomize, kubeconform with the pinned Kubernetes schemas and
the upstream CRDs, and the Zero to JupyterHub chart's values schema. Each check is also shown to fail."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, UPSTREAM
from kflowgen.checks import schemas as kschemas, verify
from kflowgen import tools
from kflowgen.build import Built, overlays_of

pytestmark = pytest.mark.skipif(not UPSTREAM.is_dir(), reason="needs ../shared/upstream beside the project")


def _kubeconform(text: str, tmp_path: Path) -> dict:
    tool = tools.find("kubeconform")
    assert not isinstance(tool, tools.Diagnostic), tool
    folder = kschemas.schema_dir("1.34.0", kschemas.crd_files_in([UPSTREAM / "crds"]), tmp_path)
    out = subprocess.run([*tool.argv, "-strict", "-summary", "-verbose", "-output", "json",
                          *kschemas.kubeconform_args(folder)], input=text, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_every_overlay_builds_with_the_real_kustomize(built_example):
    _, files, built = built_example
    assert set(built.overlays) == set(overlays_of(files))
    assert all(text.strip() for o, text in built.overlays.items() if not o.endswith("/workloads"))


def test_every_built_object_is_valid_none_skipped(built_example, tmp_path):
    _, _, built = built_example
    text = "".join("---\n" + t for t in built.overlays.values())
    report = _kubeconform(text, tmp_path)
    kinds = sorted({r["kind"] for r in report["resources"]})
    assert kinds == ["AppProject", "Application", "ClusterQueue", "Cohort", "ConfigMap", "Deployment",
                     "HorizontalPodAutoscaler", "Ingress", "Job", "LimitRange", "LocalQueue", "Namespace",
                     "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "ResourceFlavor",
                     "ResourceQuota", "Role", "RoleBinding", "Service", "ServiceAccount", "TrainJob"]
    assert {r["status"] for r in report["resources"]} == {"statusValid"}
    assert report["summary"]["valid"] == sum(built.counts.values()) and report["summary"]["skipped"] == 0


def test_kubeconform_rejects_what_the_api_server_would(built_example, tmp_path):
    _, _, built = built_example
    docs = list(yaml.safe_load_all(built.overlays["overlays/dev/argocd"]))
    project = next(d for d in docs if d["kind"] == "AppProject")
    project["spec"]["destinationz"] = []
    quota = next(d for d in yaml.safe_load_all(built.overlays["overlays/dev/teams/vision/platform"])
                 if d["kind"] == "ResourceQuota")
    quota["spec"]["hard"]["requests.cpu"] = {"cores": 4}
    report = _kubeconform(yaml.safe_dump_all([project, quota]), tmp_path)
    assert sorted(r["status"] for r in report["resources"]) == ["statusInvalid", "statusInvalid"]


def test_pipeline_reports_an_invalid_object_with_its_identity(built_example, tmp_path):
    model, _, built = built_example
    broken = dict(built.overlays)
    broken["overlays/dev/teams/vision/platform"] += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n" \
                                                    "  namespace: vision\ndata:\n  a: 1\n"
    diags = verify.manifests(PROJECT, model, Built(broken), 2, tmp_path)
    assert [(d.path, d.code) for d in diags] == [("overlays/dev/teams/vision/platform", "KF402")]
    assert diags[0].message.startswith("ConfigMap vision/x: ")


def test_team_project_whitelists_survive_kustomize(built_example):
    _, _, built = built_example
    for doc in yaml.safe_load_all(built.overlays["overlays/prod/argocd"]):
        if doc["kind"] == "AppProject" and doc["metadata"]["name"] not in ("prod-platform",):
            assert doc["spec"]["clusterResourceWhitelist"] == []  # explicit empty: deny all cluster-scoped kinds


def test_hub_rolebinding_keeps_the_hub_namespace(built_example):
    _, _, built = built_example
    docs = yaml.safe_load_all(built.overlays["overlays/dev/teams/nlp/platform"])
    rb = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "jupyterhub-spawner")
    assert rb["metadata"]["namespace"] == "nlp" and rb["subjects"][0]["namespace"] == "jupyterhub"


@pytest.mark.parametrize("builds", [True, False])
def test_hub_values_findings_are_reported_only_when_everything_built(example_repo, tmp_path, monkeypatch, builds):
    """The values are checked before the build (while a run holds least), and their findings reported with the other
    checks of built output: only when every overlay built, as before."""
    from kflowgen import cache
    from kflowgen.diagnostics import error
    from kflowgen.flow import pipeline
    from kflowgen.options import Options

    planted = error("overlays/dev/jupyterhub/values.yaml", (0, 0), "KF404", "/singleuser/storage: planted")
    monkeypatch.setattr(verify, "hub_values", lambda *args, **kwargs: [planted])
    if not builds:
        broken = error("overlays/dev/argocd", (0, 0), "KF401", "planted")
        monkeypatch.setattr(pipeline, "build", lambda opts, rendered, overlays: (Built(), [broken]))
    report = pipeline.validate(Options(example_repo, 1, cache.Cache(tmp_path / "cache")))
    assert [d.message for d in report.errors] == (["/singleuser/storage: planted"] if builds else ["planted"])


def test_jupyterhub_values_pass_the_chart_schema(built_example):
    model, files, _ = built_example
    assert verify.hub_values(PROJECT, model, files, list(model.platform.environments)) == []
    broken = dict(files)
    values = yaml.safe_load(files["overlays/dev/jupyterhub/values.yaml"])
    values["singleuser"]["storage"]["typo"] = 1
    broken["overlays/dev/jupyterhub/values.yaml"] = yaml.safe_dump(values).encode()
    diags = verify.hub_values(PROJECT, model, broken, ["dev"])
    assert [(d.code, d.message.split(":")[0]) for d in diags] == [("KF404", "/singleuser/storage")]
