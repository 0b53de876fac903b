"""The rules that look at each team's own specs (rules.LOCAL: served models, notebook profiles, quantities and paths
in team specs and served models) run team by team, each team's findings cached under its team spec, its served
models and the platform file. Every change gives exactly what a run without the cache finds, and only the team
names whose inputs changed are checked again; what is found across teams (a host taken twice, a caller that is no
team) is found whatever the cache holds."""
from __future__ import annotations

from pathlib import Path

import pytest

from kflowgen import cache, rules
from kflowgen.flow import pipeline
from kflowgen.options import Options


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return cache.Cache(tmp_path / "cache")


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The team names whose LOCAL part ran, in the order they ran (one entry per team name and rule)."""
    ran: list[str] = []
    for name, (rule, local, across) in list(rules.LOCAL.items()):
        def spy(model, teams, served, local=local):
            names = {t.name for t in teams} | {m.team for m in served}
            ran.extend(sorted(names))
            return local(model, teams, served)
        monkeypatch.setitem(rules.LOCAL, name, (rule, spy, across))
    return ran


def findings(repo: Path, store, ran: list[str]) -> tuple[set, list[str]]:
    """(what the cached run finds, the team names checked again), after asserting a run without the cache finds the
    same."""
    ran.clear()
    found = set(pipeline.load(Options(repo, store=store))[1])
    again = sorted(set(ran))
    assert found == set(pipeline.load(Options(repo))[1])
    return {(d.code, d.path, d.message) for d in found}, again


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_a_change_to_one_team_checks_that_team_again(example_repo, store, checked):
    repo = example_repo
    assert findings(repo, store, checked) == (set(), ["nlp", "recsys", "vision"])
    assert findings(repo, store, checked) == (set(), [])  # all from the cache (the rules' whole result, here)

    resnet = repo / "specs/models/vision/resnet.yaml"
    edit(resnet, "replicas: 3", "replicas: 30")  # 31 servers of one A100 each: over prod's 16
    found, again = findings(repo, store, checked)
    assert found == {("KF334", "specs/models/vision/resnet.yaml", "prod: servers of team vision request 31 a100 GPUs "
                      "(resnet 31; replicas or maxReplicas plus one pod during a rollout) but the team's prod quota "
                      "is 16")}
    assert again == ["vision"]
    edit(repo / "specs/teams/nlp.yaml", "cpu: 16", "cpu: 12")
    assert findings(repo, store, checked) == (found, ["nlp"])  # vision's finding from its entry
    edit(resnet, "replicas: 30", "replicas: 3")
    assert findings(repo, store, checked) == (set(), [])  # vision as in the first run: its entry from then

    edit(repo / "specs/platform.yaml", "kubernetesVersion:", "# a comment\nkubernetesVersion:")
    assert findings(repo, store, checked)[1] == ["nlp", "recsys", "vision"]  # the platform file: every team


def test_a_served_model_moved_between_teams_is_checked_under_both(example_repo, store, checked):
    repo = example_repo
    findings(repo, store, checked)
    edit(repo / "specs/models/vision/resnet.yaml", "team: vision", "team: nlp")  # in vision's folder, for nlp
    found, again = findings(repo, store, checked)
    assert ("KF330", "specs/models/vision/resnet.yaml", "model 'nlp/resnet' is in specs/models/vision/resnet.yaml") \
        in found
    assert again == ["nlp", "vision"]


def test_team_specs_gone_or_taken_twice_are_checked_as_a_cold_run_does(example_repo, store, checked):
    repo = example_repo
    findings(repo, store, checked)
    (repo / "specs/teams/recsys.yaml").unlink()  # its served model now names no team
    found, again = findings(repo, store, checked)
    assert ("KF331", "specs/models/recsys/ranker.yaml", "team 'recsys' is not defined in specs/teams/") in found
    assert "recsys" in again and "vision" not in again
    edit(repo / "specs/teams/nlp.yaml", "name: nlp", "name: recsys-nlp")  # a team named close to the one gone
    (repo / "specs/teams/nlp.yaml").rename(repo / "specs/teams/recsys-nlp.yaml")
    found, again = findings(repo, store, checked)  # the hint of recsys's model names it (the cold run's does)
    assert "recsys" in again and "vision" not in again
    copy = repo / "specs/teams/recsys.yaml"
    copy.write_text((repo / "specs/teams/vision.yaml").read_text())  # a second file naming vision
    found, again = findings(repo, store, checked)
    assert any(c == "KF301" for c, _, _ in found)
    assert "vision" in again and "nlp" not in again


def test_what_is_found_across_teams_is_found_when_each_team_comes_from_the_cache(example_repo, store, checked):
    """Two teams' parts are cached; a pull request to a third names a host one of them has, and a caller that is no
    team: both are found, though only the third team's part runs (the other side of the host is told too)."""
    repo = example_repo
    findings(repo, store, checked)
    model = repo / "specs/models/nlp/tagger.yaml"
    model.parent.mkdir(parents=True)
    model.write_text((repo / "specs/models/recsys/ranker.yaml").read_text()
                     .replace("team: recsys", "team: nlp").replace("name: ranker", "name: tagger")
                     .replace("callers: [vision]", "callers: [vision, finance]"))
    found, again = findings(repo, store, checked)
    assert again == ["nlp"]
    assert found == {("KF332", "specs/models/nlp/tagger.yaml", "team nlp has no quota in staging"),  # nlp's own
                     ("KF344", "specs/models/nlp/tagger.yaml", "caller 'finance' is not a team"),
                     # in model order (team, name) nlp's tagger is first to name the host: recsys's ranker is told
                     ("KF344", "specs/models/recsys/ranker.yaml",
                      "prod: host 'ranker.ml.example.com' is already model nlp/tagger's")}


def test_damaged_or_reshaped_entries_are_not_trusted(example_repo, store, checked):
    repo = example_repo
    edit(repo / "specs/models/vision/resnet.yaml", "replicas: 3", "replicas: 30")
    found, _ = findings(repo, store, checked)
    assert found
    entries = [e for e in (store.folder / "rules").rglob("*") if e.is_file()]
    for entry in entries:  # a finding's count set to none, a finding renamed: each entry's checksum fails
        entry.write_bytes(entry.read_bytes().replace(b" 1", b" 0").replace(b"KF33", b"KF99"))
    assert findings(repo, store, checked) == (found, ["nlp", "recsys", "vision"])


def test_a_rule_replaced_runs_on_the_whole_model(example_repo, store, monkeypatch):
    """A test's spy in place of a rule of LOCAL: the rule runs as registered, once, on the whole model."""
    seen = []
    real = rules.RULES["profiles-fit-quota"]
    monkeypatch.setitem(rules.RULES, "profiles-fit-quota", lambda m: seen.append(len(m.teams)) or real(m))
    assert pipeline.load(Options(example_repo, store=store))[1] == []
    assert seen == [3]
