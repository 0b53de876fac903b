"""CODEOWNERS: GitHub's pattern rules (last match wins), and the gate's KF317 warnings when a team's experiments and
models or a platform-owned path have no owner of their own."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import PROJECT
from kflowgen.checks import codeowners
from kflowgen.flow import pipeline
from kflowgen.checks.codeowners import Owners, parse
from kflowgen.options import Options

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
    shutil.copytree(PROJECT / "bases", root / "bases")
    if text is not None:
        (root / ".github").mkdir()
        (root / ".github/CODEOWNERS").write_text(text)
    model, diags = pipeline.load(Options(root))
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


TEAM_LINES = "".join(f"/specs/{k}/{t}/ @acme/{t}\n" for t in ("nlp", "recsys", "vision") for k in ("experiments", "models"))


def messages(out) -> list[str]:
    return [m for _, _, _, m in out]


def test_without_an_owner_for_the_platform_file_that_is_all_it_says(tmp_path):
    out = found(*repo(tmp_path, "/bases/ @acme/ml-platform\n" + TEAM_LINES))
    assert out == [(".github/CODEOWNERS", 1, "warning", "no owner for specs/platform.yaml in .github/CODEOWNERS: a "
                    "pull request changing it asks nobody to review")]


@pytest.mark.parametrize("line, path, who", [
    ("/specs/teams/vision.yaml @acme/vision", "specs/teams/vision.yaml", "@acme/vision can approve changes to it alone"),
    ("/specs/teams/vision.yaml", "specs/teams/vision.yaml", "nobody is asked to review it"),
    ("/.github/CODEOWNERS @acme/vision", ".github/CODEOWNERS", "@acme/vision can approve changes to it alone"),
    ("/bases/team/ @acme/nlp @acme/ml-platform", "bases/", "@acme/nlp @acme/ml-platform can approve changes to it alone"),
])
def test_platform_paths_owned_by_anyone_else_are_named(tmp_path, line, path, who):
    out = found(*repo(tmp_path, "* @acme/ml-platform\n" + TEAM_LINES + line + "\n"))
    assert messages(out) == [f"{path} is not owned by @acme/ml-platform, who own specs/platform.yaml, in "
                             f".github/CODEOWNERS: {who}"]


def test_one_line_for_every_teams_folders_is_not_a_line_of_their_own(tmp_path):
    out = found(*repo(tmp_path, "* @acme/ml-platform\n/specs/experiments/ @acme/ds\n/specs/models/ @acme/ds\n"))
    assert [(where, m.split(":")[0]) for where, _, _, m in out] == [
        (f"specs/teams/{t}.yaml", "line 2 of .github/CODEOWNERS gives its folders to the same owners as other teams' "
         "folders") for t in ("nlp", "recsys", "vision")]


@pytest.mark.parametrize("make", ["fifo", "huge"])
def test_a_codeowners_github_would_ignore_is_one_warning_and_never_waited_on(tmp_path, make):
    root, model = repo(tmp_path, "")
    target = root / ".github/CODEOWNERS"
    target.unlink()
    if make == "fifo":
        os.mkfifo(target)
    else:
        with open(target, "wb") as f:
            f.truncate(codeowners.MAX_BYTES + 1)
    assert messages(found(root, model)) == [".github/CODEOWNERS is not a plain file under 3 MB: GitHub ignores it, "
                                            "so a pull request asks nobody in particular to review"]


def test_new_team_adds_its_lines_for_the_same_organisation(tmp_path):
    root, _ = repo(tmp_path, (PROJECT / ".github/CODEOWNERS").read_text())
    from kflowgen.flow import scaffold
    assert scaffold.new_team(root, "speech") == []
    text = (root / ".github/CODEOWNERS").read_text()
    assert text.endswith("".join(f"{p:<40}@acme/speech\n" for p in (
        "/specs/experiments/speech/", "/specs/models/speech/", "/overlays/*/teams/speech/workloads/")))
    model, diags = pipeline.load(Options(root))
    assert diags == [] and found(root, model) == []
