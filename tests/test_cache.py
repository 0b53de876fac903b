"""The result cache never lets a wrong result pass: any input, base, tool version or damaged entry forces a rebuild,
and output with the cache and parallelism is byte-identical to a cold single-process run."""
from __future__ import annotations

from pathlib import Path

import pytest

from kflowgen import cache, pipeline, tools
from kflowgen.render import render


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return cache.Cache(tmp_path / "cache")


def built(root: Path, store, jobs=2):
    model, diags = pipeline.load(root)
    assert model is not None, diags
    files = render(model)
    result, diags = pipeline.build(root, files, pipeline.overlays_of(files), jobs, store)
    assert diags == []
    return result


def test_second_build_comes_from_the_cache_and_is_identical(example_repo, store):
    cold = built(example_repo, cache.Cache(None), jobs=1)
    first = built(example_repo, store)
    second = built(example_repo, store)
    assert first.rebuilt == len(first.overlays) and second.rebuilt == 0
    assert cold.overlays == first.overlays == second.overlays


def test_a_spec_change_rebuilds_only_what_it_touches(example_repo, store):
    built(example_repo, store)
    team = example_repo / "specs/teams/recsys.yaml"
    team.write_text(team.read_text().replace("cpu: 64", "cpu: 60"))
    again = built(example_repo, store)
    # recsys prod platform overlay only: the quota is the one object that changed
    assert again.rebuilt == 1
    assert "requests.cpu: \"60\"" in again.overlays["overlays/prod/teams/recsys/platform"]


def test_a_base_change_rebuilds_every_overlay_that_uses_bases(example_repo, store):
    first = built(example_repo, store)
    limits = example_repo / "bases/team/limitrange.defaults.yaml"
    limits.write_text(limits.read_text().replace("memory: 256Mi", "memory: 300Mi"))
    again = built(example_repo, store)
    users = [o for o in first.overlays if "/teams/" in o and o.endswith("/platform")]
    assert again.rebuilt == len(users)
    assert all("memory: 300Mi" in again.overlays[o] for o in users)


def test_a_new_kustomize_version_rebuilds_everything(example_repo, store, monkeypatch):
    first = built(example_repo, store)
    real = tools.find

    def other_version(name, repo=None):
        tool = real(name, repo)
        return tools.Tool(tool.name, tool.argv, tool.version + "-next") if name == "kustomize" else tool

    monkeypatch.setattr(tools, "find", other_version)
    assert built(example_repo, store).rebuilt == len(first.overlays)


def test_a_damaged_entry_is_rebuilt_not_trusted(example_repo, store, tmp_path):
    first = built(example_repo, store)
    entries = sorted((tmp_path / "cache" / "build").rglob("*"))
    entries = [e for e in entries if e.is_file()]
    victim = entries[0]
    victim.write_bytes(victim.read_bytes().replace(b"kind:", b"kinx:", 1))
    again = built(example_repo, store)
    assert again.rebuilt == 1 and again.overlays == first.overlays


def test_a_planted_validation_entry_cannot_pass_a_changed_output(example_repo, store):
    """Keys cover the exact output: marking one output clean says nothing about any other."""
    k1 = cache.key("kubeconform", "v0.8.0", "schemas", "apiVersion: v1\nkind: ConfigMap\n")
    k2 = cache.key("kubeconform", "v0.8.0", "schemas", "apiVersion: v1\nkind: ConfigMap\nbad: 1\n")
    store.put("valid", k1, b"ok")
    assert store.get("valid", k1) == b"ok" and store.get("valid", k2) is None


def test_validate_reports_the_same_with_a_warm_cache(example_repo, store):
    team = example_repo / "specs/teams/nlp.yaml"
    cold = pipeline.validate(example_repo, jobs=1, use_cache=False)
    warm1 = pipeline.validate(example_repo, jobs=2)
    warm2 = pipeline.validate(example_repo, jobs=2)
    assert cold.diagnostics == warm1.diagnostics == warm2.diagnostics == [] and cold.summary == warm2.summary
    # a policy or schema failure is never cached as a pass
    spec = example_repo / "specs/models/recsys/ranker.yaml"
    spec.write_text(spec.read_text().replace("team: recsys", "team: recsys\nimage: registry.example.com/ml/tfs:latest"))
    for _ in range(2):
        report = pipeline.validate(example_repo, jobs=2)
        assert [d.code for d in report.errors] == ["KF604", "KF604"]
    assert team.exists()
