"""CODEOWNERS: GitHub's pattern rules (last match wins), and the gate's KF317 warnings when a team's experiments and
models or a platform-owned path have no owner of their own."""
from __future__ import annotations

import shutil

import pytest

from conftest import PROJECT
from kflowgen import codeowners, pipeline
from kflowgen.codeowners import Owners, parse

# GitHub's documented examples (docs: "About code owners", example CODEOWNERS file)
GITHUB = """\
*       @global-owner1 @global-owner2
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/*  docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
/content/ @octocat
/content/github @doctocat
"""


@pytest.mark.parametrize("path, owners", [
    ("README.md", ("@global-owner1", "@global-owner2")),
    ("src/app.js", ("@js-owner",)),
    ("main.go", ("docs@example.com",)),
    ("notes/a.txt", ("@octo-org/octocats",)),
    ("build/logs/x.log", ("@octocat",)),  # **/logs, later, wins
    ("docs/getting-started.md", ("@doctocat",)),  # /docs/ is later than docs/*
    ("other/docs/getting-started.md", ("@global-owner1", "@global-owner2")),  # a '/' inside anchors docs/*
    ("other/docs/build-app/troubleshooting.md", ("@global-owner1", "@global-owner2")),  # * is one level
    ("x/apps/y.py", ("@octocat",)),
    ("apps/y.py", ("@octocat",)),
    ("apps/github/y.py", ()),  # a pattern without owners: nobody
    ("scripts/deploy.sh", ("@doctocat", "@octocat")),
    ("deeply/nested/logs/x", ("@octocat",)),
    ("content/github/x.md", ("@doctocat",)),
])
def test_github_documented_patterns(path, owners):
    rule = Owners(parse(GITHUB)).rule(path)
    assert rule is not None and rule.owners == owners


def test_a_folder_pattern_owns_what_is_below_it_not_a_file_of_that_name():
    owners = Owners(parse("/specs/teams/ @platform\n"))
    assert owners.rule("specs/teams/x.yaml").owners == ("@platform",) and owners.rule("specs/teams") is None


def repo(tmp_path, text: str | None):
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "specs", root / "specs")
    if text is not None:
        (root / ".github").mkdir()
        (root / ".github/CODEOWNERS").write_text(text)
    model, diags = pipeline.load(root)
    assert model is not None, diags
    return root, model


def found(root, model):
    return [(d.path, d.line, d.severity, d.message) for d in codeowners.check(root, model)]


def test_the_example_repository_gives_every_team_its_own_files(tmp_path):
    assert found(*repo(tmp_path, (PROJECT / ".github/CODEOWNERS").read_text())) == []


def test_no_codeowners_file_is_one_warning(tmp_path):
    (where, line, severity, message), = found(*repo(tmp_path, None))
    assert (where, line, severity) == ("specs/platform.yaml", 1, "warning") and message.startswith("no CODEOWNERS file")


def test_teams_falling_to_the_platforms_catch_all_are_named(tmp_path):
    out = found(*repo(tmp_path, "*  @acme/ml-platform\n/specs/experiments/vision/ @acme/vision\n"
                                "/specs/models/vision/ @acme/vision\n/specs/experiments/nlp/ @acme/nlp\n"))
    assert out == [
        ("specs/teams/nlp.yaml", 2, "warning", "specs/models/nlp/ has no owner of their own in .github/CODEOWNERS: team "
         "nlp is not asked to review changes to its experiments and models"),
        ("specs/teams/recsys.yaml", 2, "warning", "specs/experiments/recsys/ and specs/models/recsys/ have no owner of "
         "their own in .github/CODEOWNERS: team recsys is not asked to review changes to its experiments and models"),
    ]


def test_platform_paths_without_owners_are_named(tmp_path):
    text = "".join(f"/specs/{k}/{t}/ @acme/{t}\n" for t in ("nlp", "recsys", "vision") for k in ("experiments", "models"))
    out = found(*repo(tmp_path, "/bases/ @acme/ml-platform\n" + text))
    assert [m.split(" in ")[0] for _, _, _, m in out] == [
        "no owner for specs/platform.yaml", "no owner for specs/teams/", "no owner for schemas/",
        "no owner for .github/workflows/"]


def test_new_team_adds_its_lines_for_the_same_organisation(tmp_path):
    root, _ = repo(tmp_path, (PROJECT / ".github/CODEOWNERS").read_text())
    from kflowgen import scaffold
    assert scaffold.new_team(root, "speech") == []
    text = (root / ".github/CODEOWNERS").read_text()
    assert text.endswith("".join(f"{p:<40}@acme/speech\n" for p in (
        "/specs/experiments/speech/", "/specs/models/speech/", "/overlays/*/teams/speech/workloads/")))
    model, diags = pipeline.load(root)
    assert diags == [] and found(root, model) == []
