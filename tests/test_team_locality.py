"""What the rules find in one team's experiment and model files is a function of those files, every team spec and
the platform file, not of other teams' experiments and models: a gate that loads only the teams a change touches
(kflowgen.flow.scope) finds the same there. Checked on every example folder that has a team's experiments or models,
and on the project's example repository, with every other team's removed. The one finding that depends on another
team's files is a host another team's model holds (KF344, what serving.across finds): such a gate needs every team's
served models for it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import PROJECT, copy_repo  # tests/ is on sys.path: pytest imports tests/conftest.py in prepend mode
from kflowgen.flow import pipeline
from kflowgen.options import Options
from test_examples import EXAMPLES, make_repo

FOLDERS = ("specs/experiments", "specs/models")
ACROSS_TEAMS = {"KF344"}  # a host another team's model holds


def _teams(root: Path) -> list[str]:
    return sorted({p.name for f in FOLDERS if (root / f).is_dir() for p in (root / f).iterdir() if p.is_dir()})


def _cases() -> list:
    out = [pytest.param(name, team, id=f"{name}-{team}") for name in [None, *HOSTILE] for team in _teams(PROJECT)]
    for kind in ("invalid", "valid"):
        for example in sorted(p for p in (EXAMPLES / kind).iterdir() if p.is_dir()):
            out += [pytest.param(example, team, id=f"{example.name}-{team}") for team in _teams(example)]
    return out


# Pull requests that reach across teams, laid over the project's example repository: {path: (the file it is a copy
# of, old, new: its one edit)}. Each is refused (KF324, KF321, KF334, KF332), in the team's own files.
HOSTILE = {
    "same-experiment-name-in-two-teams": {"specs/experiments/vision/bert-random.yaml": (
        "specs/experiments/nlp/bert-random.yaml", "team: nlp", "team: vision")},
    "experiment-filed-under-another-team": {"specs/experiments/nlp/stolen.yaml": (
        "specs/experiments/vision/resnet-sweep.yaml", "name: resnet-sweep", "name: stolen")},
    "model-copied-to-another-team": {"specs/models/recsys/resnet.yaml": (
        "specs/models/vision/resnet.yaml", "team: vision", "team: recsys")},
    "model-copied-to-a-team-without-quota-there": {"specs/models/nlp/resnet.yaml": (
        "specs/models/vision/resnet.yaml", "team: vision", "team: nlp")},
}


def _hostile(name: str, root: Path) -> Path:
    for rel, (src, old, new) in HOSTILE[name].items():
        text = (root / src).read_text("utf-8")
        assert old in text, (src, old)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.replace(old, new, 1), "utf-8")
    return root


def _found(root: Path, team: str) -> set[tuple[str, str, str]]:
    """What validate's load finds in the team's experiment and model files."""
    return {(d.code, d.path, d.message) for d in pipeline.load(Options(root))[1]
            if d.path.startswith(tuple(f"{f}/{team}/" for f in FOLDERS))}


@pytest.mark.parametrize("example, team", _cases())
def test_a_teams_findings_do_not_depend_on_other_teams_experiments_and_models(example, team, tmp_path):
    root = (make_repo(example, tmp_path) if isinstance(example, Path) else copy_repo(PROJECT, tmp_path / "repo")
            if example is None else _hostile(example, copy_repo(PROJECT, tmp_path / "repo")))
    whole = _found(root, team)
    for folder in FOLDERS:
        for other in (root / folder).iterdir() if (root / folder).is_dir() else ():
            if other.name != team:
                shutil.rmtree(other) if other.is_dir() else other.unlink()
    alone = _found(root, team)
    assert alone <= whole
    assert {code for code, _, _ in whole - alone} <= ACROSS_TEAMS


def test_the_cases_include_findings_in_team_files_and_one_across_teams(tmp_path):
    """(so that the comparison above is not of nothing)"""
    found = [_found(make_repo(example, tmp_path / f"{n}"), team)
             for n, (example, team) in enumerate(c.values for c in _cases() if isinstance(c.values[0], Path))]
    assert len(found) >= 50 and sum(1 for f in found if f) >= 20
    assert any(code in ACROSS_TEAMS for f in found for code, _, _ in f)
