"""One layout: the renderer names folders, labels and Argo CD objects with kflowgen.specs.layout, and the rules,
checks and diff read them back with the same functions. Held here against everything the example repository and
the golden cases render, so a renderer that writes a path or a name another way fails."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import PROJECT
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.specs import layout
from kflowgen.specs.layout import Place, place
from kflowgen.targets import render

REPOSITORIES = [PROJECT, *sorted(p for p in (PROJECT / "tests" / "golden").iterdir() if (p / "specs").is_dir())]


def _rendered(root: Path):
    model, diags = pipeline.load(Options.at(root))
    assert model is not None, diags
    return model, render(model)


@pytest.fixture(scope="module", params=REPOSITORIES, ids=lambda p: p.name)
def repo(request):
    return _rendered(request.param)


@pytest.mark.parametrize("path, expected", [
    ("overlays/dev/teams/nlp/platform/kustomization.yaml", Place("dev", "nlp", "platform")),
    ("overlays/dev/teams/nlp/workloads", Place("dev", "nlp", "workloads")),
    ("overlays/dev/teams/nlp", Place("dev", "nlp", None)),
    ("overlays/prod/argocd/application.root.yaml", Place("prod", None, "argocd")),
    ("overlays/prod/jupyterhub/values.yaml", Place("prod", None, "jupyterhub")),
    ("overlays/prod", Place("prod", None, None)),
    ("overlays/staging/teams", Place("staging", None, "teams")),
    ("overlays", None),
    ("overlays/", None),
    ("specs/teams/nlp.yaml", None),
    ("bases/team/kustomization.yaml", None),
])
def test_what_a_path_says(path, expected):
    assert place(path) == expected


@pytest.mark.parametrize("folder, plain", [
    ("overlays/dev/argocd", True), ("overlays/dev/argocd/x", False), ("overlays/dev/teams/a/platform", False),
    ("overlays/dev/jupyterhub", False), ("specs/argocd", False), ("x/dev/argocd", False),
    ("overlays/dev/queueing", True), ("overlays/dev/queueing/x", False), ("overlays/dev/teams/queueing", False),
])
def test_only_an_environments_argocd_and_queueing_folders_are_plain_directories(folder, plain):
    assert layout.is_directory_source(folder) is plain


def test_the_folder_makers_and_place_agree():
    assert place(layout.team_overlay("qa", "t", layout.WORKLOADS_PART)) == Place("qa", "t", "workloads")
    assert place(layout.team_overlay("qa", "t", layout.PLATFORM_PART)) == Place("qa", "t", "platform")
    assert place(layout.argocd_folder("qa")) == Place("qa", None, "argocd")
    assert place(layout.hub_values("qa")) == Place("qa", None, "jupyterhub")
    assert layout.is_directory_source(layout.argocd_folder("qa"))
    assert place(layout.queueing_folder("qa")) == Place("qa", None, "queueing")
    assert layout.is_directory_source(layout.queueing_folder("qa"))
    assert place(layout.environment_folder("qa")) == Place("qa")


def test_every_rendered_file_is_in_a_place_of_a_known_environment_and_team(repo):
    model, files = repo
    teams = {t.name for t in model.teams}
    for path in files:
        where = place(path)
        assert where is not None and where.env in model.platform.environments, path
        if where.team is not None:
            assert where.team in teams and where.part in (layout.PLATFORM_PART, layout.WORKLOADS_PART), path
        else:
            assert where.part in ("argocd", "jupyterhub", layout.QUEUEING_PART), path
            assert where.part != layout.QUEUEING_PART or model.platform.queueing_in(where.env), path


def _objects(files, path):
    return [d for d in yaml.safe_load_all(files[path]) if d] if path.endswith(".yaml") else []


@pytest.fixture(scope="module")
def built():
    """The example repository's overlays, built (the golden cases have no bases/ to build with)."""
    done = pipeline.checked(Options.at(PROJECT))
    assert done.built is not None, done.report.diagnostics
    return done.built


def test_every_built_object_of_a_team_overlay_carries_the_teams_labels(built):
    """Labels come from the overlay's kustomization as it builds: checked on what Argo CD would apply."""
    seen = 0
    for overlay in built.overlays:
        where = place(overlay)
        if where.team is None:
            continue
        for obj in built.objects(overlay):
            seen += 1
            labels = obj["metadata"].get("labels", {})
            assert layout.labels(where.env, where.team).items() <= labels.items(), (overlay, obj["metadata"])
            assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == where.team, (overlay, obj["metadata"])
    assert seen


def test_argocd_objects_are_named_by_the_layout_and_point_at_its_folders(repo):
    model, files = repo
    for env in model.platform.environments:
        folder = layout.argocd_folder(env)
        objs = [o for p in files if p.startswith(folder + "/") for o in _objects(files, p)]
        apps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Application"}
        projects = {o["metadata"]["name"] for o in objs if o["kind"] == "AppProject"}
        assert set(layout.shared_applications(env)) <= set(apps)
        assert {layout.project(env, p) for p in layout.SHARED_PROJECTS} <= projects
        root = apps[layout.shared_applications(env)[0]]
        assert root["spec"]["source"]["path"] == folder
        for team in (t for t in model.teams if env in t.quota):
            platform_app, workloads_app = layout.team_applications(env, team.name)
            assert layout.project(env, team.name) in projects
            for name, part in ((platform_app, layout.PLATFORM_PART), (workloads_app, layout.WORKLOADS_PART)):
                source = apps[name]["spec"]["source"]["path"]
                assert place(source) == Place(env, team.name, part) and any(p.startswith(source + "/") for p in files)
                assert apps[name]["spec"]["destination"]["namespace"] == team.name


def test_queues_are_named_by_the_layout_and_the_queueing_application_syncs_their_folder(repo):
    model, files = repo
    for env in model.platform.environments:
        folder = layout.queueing_folder(env)
        objs = {o["kind"] + " " + o["metadata"]["name"]: o for p in files if p.startswith(folder + "/")
                for o in _objects(files, p)}
        apps = [o for p in files if p.startswith(layout.argocd_folder(env) + "/") for o in _objects(files, p)
                if o["kind"] == "Application" and o["metadata"]["name"] == layout.queueing_application(env)]
        if not model.platform.queueing_in(env):
            assert objs == {} and apps == []
            continue
        assert [a["spec"]["source"]["path"] for a in apps] == [folder]
        assert f"Cohort {layout.COHORT}" in objs
        for team in model.teams_in(env):
            queue = objs[f"ClusterQueue {layout.cluster_queue(team.name)}"]
            assert queue["spec"]["cohortName"] == layout.COHORT
            local = _objects(files, f"{layout.team_overlay(env, team.name, layout.PLATFORM_PART)}/"
                                    f"localqueue.{layout.LOCAL_QUEUE}.yaml")
            assert [(q["metadata"]["name"], q["spec"]["clusterQueue"]) for q in local] == \
                [(layout.LOCAL_QUEUE, layout.cluster_queue(team.name))]


def test_profile_slugs_in_the_hub_values_are_the_layouts(repo):
    model, files = repo
    for env in model.platform.environments:
        values = yaml.safe_load(files[layout.hub_values(env)])
        slugs = {p["slug"] for p in values["singleuser"]["profileList"]}
        expected = {layout.profile_slug(t.name, p.name) for t in model.teams if env in t.quota for p in t.profiles}
        assert slugs == expected
