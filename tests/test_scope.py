"""What a change touches: the teams whose experiments and spec files (and generated files) a pull request's paths
change, or nothing when any path is of another kind (tested path by path, hostile paths among them, and on real
commits through git); what main's render --check vouches for; and what validate keeps beside main's side."""
from __future__ import annotations

import subprocess

import pytest

from kflowgen.flow.scope import ABSENT, NO_ID, Change, committed, touched


@pytest.mark.parametrize("path, expected", [
    ("specs/experiments/nlp/bert.yaml", ({"nlp"}, set(), set())),
    ("specs/experiments/nlp/sweeps/bert.yaml", ({"nlp"}, set(), set())),
    ("overlays/dev/teams/nlp/workloads/job.bert-1.yaml", ({"nlp"}, {"dev"}, set())),
    ("overlays/dev/teams/nlp/workloads/sub/job.yaml", ({"nlp"}, {"dev"}, set())),  # (its folder: the drift check's)
    ("overlays/evil/teams/nlp/workloads/job.yaml", ({"nlp"}, {"evil"}, set())),  # (an environment the caller refuses)
    ("specs/teams/nlp.yaml", ({"nlp"}, set(), {"nlp"})),  # (whether it still defines nlp: the caller's to see)
])
def test_an_experiment_a_team_spec_or_a_workloads_file_touches_its_team(path, expected):
    assert touched([path]) == expected


def test_a_teams_platform_files_are_touched_with_its_spec_only():
    quota = "overlays/prod/teams/nlp/platform/resourcequota.team.yaml"
    assert touched(["specs/teams/nlp.yaml", quota, "overlays/dev/teams/nlp/platform/sub/x.yaml"]) == \
        ({"nlp"}, {"prod", "dev"}, {"nlp"})
    assert touched([quota]) == (set(), set(), set())  # (a generated file edited by hand: the whole gate's drift)
    assert touched(["specs/teams/vision.yaml", quota]) == (set(), set(), set())  # (another team's spec)
    assert touched(["specs/experiments/nlp/bert.yaml", quota]) == (set(), set(), set())


@pytest.mark.parametrize("path", [
    "specs/platform.yaml",
    "specs/teams/nlp.yml",  # a team spec kflowgen reads, but not by the name a gate in scope knows it by
    "specs/teams/.yaml",
    "specs/models/vision/resnet.yaml",  # a served model: its host is checked across teams
    "bases/team/kustomization.yaml",
    "schemas/crds/x.yaml",
    "specs/teams/sub/nlp.yaml",  # a file where kflowgen does not read specs
    "specs/experiments/bert.yaml",  # an experiment in no team's folder
    "specs/experiments/nlp",  # a file where a team's folder goes
    "specs/notes.yaml",
    "overlays/kustomization.yaml",
    "overlays/dev",
    "overlays/dev/kustomization.yaml",  # beside the environment's folders
    "overlays/dev/argocd/appproject.nlp.yaml",  # a shared folder
    "overlays/staging/jupyterhub/values.yaml",
    "overlays/dev/teams",
    "overlays/dev/teams/evil.yaml",  # beside the teams' folders
    "overlays/prod/teams/nlp/stray.yaml",  # beside the team's own folders
    "overlays/prod/teams/nlp/other/x.yaml",  # a part of a team's folder kflowgen does not write
    "overlays/prod/teams/nlp/platform",  # (a file where a folder goes)
    "overlays/dev/teams//workloads/job.yaml",  # no team
    "README.md",
    ".github/CODEOWNERS",
    "crds/kueue.yaml",  # (a CRD file the platform may name)
])
def test_any_other_path_touches_what_no_gate_in_scope_covers(path):
    assert touched([path]) == (set(), set(), set())
    assert touched(["specs/experiments/nlp/bert.yaml", path]) == (set(), set(), set())  # (with one it covers, too)
    assert touched(["specs/teams/nlp.yaml", path]) == (set(), set(), set())


def test_a_change_across_teams_names_each_team_once():
    assert touched(["overlays/dev/teams/b/workloads/j.yaml", "specs/experiments/a/x.yaml", "specs/experiments/b/y.yaml",
                    "overlays/prod/teams/b/workloads/k.yaml"]) == ({"a", "b"}, {"dev", "prod"}, set())


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    for rel, text in {"specs/experiments/a/x.yaml": "x\n", "specs/experiments/b/y.yaml": "y\n",
                      "overlays/dev/teams/a/workloads/job.x.yaml": "j\n", "README.md": "r\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def test_committed_paths_come_from_git_with_a_rename_as_both_its_paths(repo):
    (repo / "specs/experiments/c").mkdir()
    _git(repo, "mv", "specs/experiments/a/x.yaml", "specs/experiments/c/x.yaml")  # a team's file moved to another's
    (repo / "specs/experiments/b/y.yaml").unlink()
    (repo / "overlays/dev/teams/a/workloads/job.x.yaml").write_text("j2\n")
    (repo / "specs/experiments/b/new file.yaml").write_text("n\n")  # (a space: paths are read NUL-separated)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "head")
    paths = committed(repo, "HEAD~1")
    assert sorted(paths) == ["overlays/dev/teams/a/workloads/job.x.yaml", "specs/experiments/a/x.yaml",
                             "specs/experiments/b/new file.yaml", "specs/experiments/b/y.yaml",
                             "specs/experiments/c/x.yaml"]
    assert touched(paths)[0] == {"a", "b", "c"}

    def blob(rev, path):
        return _git(repo, "rev-parse", f"{rev}:{path}").strip()
    job = "overlays/dev/teams/a/workloads/job.x.yaml"
    assert paths[job] == Change("100644", "100644", blob("HEAD~1", job), blob("HEAD", job))
    assert paths["specs/experiments/b/y.yaml"] == Change("100644", ABSENT, blob("HEAD~1", "specs/experiments/b/y.yaml"),
                                                         NO_ID)
    assert paths["specs/experiments/b/new file.yaml"] == Change(ABSENT, "100644", NO_ID,
                                                                blob("HEAD", "specs/experiments/b/new file.yaml"))


def test_committed_paths_are_of_the_commits_not_of_the_work_tree(repo):
    (repo / "specs/experiments/b/y.yaml").write_text("edited, not committed\n")
    (repo / "specs/experiments/d").mkdir()
    (repo / "specs/experiments/d/z.yaml").write_text("untracked\n")
    assert committed(repo, "HEAD") == {}


def test_committed_paths_do_not_read_the_index(repo):
    """diff-tree reads git's index before comparing two trees (0.1 s to 0.3 s of a gate at 10,000 teams): committed
    points it at none. A change staged and not committed is not among the paths, and an index git cannot read does
    not stop the answer (git itself would die on it: "index file corrupt")."""
    (repo / "specs/experiments/a/x.yaml").write_text("x2\n")
    _git(repo, "commit", "-qam", "head")
    (repo / "specs/experiments/b/y.yaml").write_text("staged\n")
    _git(repo, "add", "-A")
    assert list(committed(repo, "HEAD~1")) == ["specs/experiments/a/x.yaml"]
    (repo / ".git/index").write_bytes(b"DIRC not an index")
    assert list(committed(repo, "HEAD~1")) == ["specs/experiments/a/x.yaml"]
    assert subprocess.run(["git", "-C", str(repo), "diff-tree", "-r", "--name-only", "HEAD~1", "HEAD"],
                          capture_output=True).returncode != 0  # (what the test stands on: plain diff-tree reads it)


def test_committed_paths_are_those_below_the_folder_given(repo):
    (repo / "README.md").write_text("r2\n")
    (repo / "specs/experiments/a/x.yaml").write_text("x2\n")
    _git(repo, "commit", "-qam", "head")
    assert list(committed(repo / "specs", "HEAD~1")) == ["experiments/a/x.yaml"]


@pytest.mark.parametrize("base", ["no-such-ref", "--output=/tmp/x", "HEAD~5"])
def test_no_paths_when_git_cannot_say(repo, base):
    assert committed(repo, base) is None


# --- what validate keeps with main's side for a gate in scope: the base's facts --------------------------------

def test_validate_keeps_with_the_side_each_overlays_count_the_files_generated_its_warnings_and_tools(tmp_path,
                                                                                                     monkeypatch):
    from conftest import PROJECT, copy_repo
    from kflowgen import cache, tools
    from kflowgen.diagnostics import Diagnostic
    from kflowgen.flow import gitref, pipeline
    from kflowgen.flow.side import facts, kustomize_id, named, recall
    from kflowgen.options import Options

    if isinstance(tools.find("kustomize", PROJECT), Diagnostic):
        pytest.skip("needs kustomize")
    root = copy_repo(PROJECT, tmp_path / "repo")
    (root / ".github/CODEOWNERS").unlink()  # a warning (KF317), which the side keeps
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                                                 "-qm", "base"]):
        _git(root, *args)
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    opts = Options.at(root, 2, True)
    done = pipeline.checked(opts)
    pipeline.head_side(opts, done)
    assert not done.report.errors and {d.code for d in done.report.diagnostics} == {"KF317"}

    store = cache.Cache(tmp_path / "cache")
    trees = gitref.trees_at(root, gitref.commit_of(root, "HEAD"))
    k = named(store, kustomize_id(root), trees)
    side, kept = recall(store, k), facts(store, k)
    assert kept.sizes == done.built.sizes and set(kept.sizes) == set(side.built)
    for env, n in done.built.counts.items():  # the summary's count per environment is the sum of its overlays'
        assert sum(c for o, c in kept.sizes.items() if o.startswith(f"overlays/{env}/")) == n
    on_disk = [p for p in (root / "overlays").rglob("*") if p.is_file()]
    assert kept.generated == len(done.rendered.files) == len(on_disk)
    assert kept.warnings == sorted(done.report.diagnostics)
    assert kept.tools == done.tools and set(kept.tools) >= {"kustomize", "kubeconform"}
    assert f"({', '.join(f'{t} {v}' for t, v in sorted(kept.tools.items()))};" in done.report.summary[0]


def _clean_repo(tmp_path, monkeypatch):
    from conftest import PROJECT, copy_repo

    root = copy_repo(PROJECT, tmp_path / "repo")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                                                 "-qm", "base"]):
        _git(root, *args)
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return root


def _clean_of_head(root, tmp_path) -> bool:
    from kflowgen import cache
    from kflowgen.flow import gitref, scope as scopes

    trees = gitref.trees_at(root, "HEAD", ("specs", "overlays"))
    return scopes.clean(cache.Cache(tmp_path / "cache"), trees["specs"], trees["overlays"])


def _check(root, use_cache=True):
    from kflowgen.flow import pipeline
    from kflowgen.options import Options

    return pipeline.render_to_disk(Options.at(root, 2, use_cache), check_only=True)


def test_a_render_check_that_finds_nothing_on_heads_files_vouches_for_heads_trees(tmp_path, monkeypatch):
    root = _clean_repo(tmp_path, monkeypatch)
    assert not _clean_of_head(root, tmp_path)
    assert not _check(root).diagnostics
    assert _clean_of_head(root, tmp_path)


@pytest.mark.parametrize("change", ["edited-and-rendered", "untracked", "ignored", "drift", "no-cache", "autocrlf",
                                    "assume-unchanged", "assume-unchanged-first", "skip-worktree"])
def test_no_vouching_when_the_work_tree_is_not_heads_or_the_check_finds_something(tmp_path, monkeypatch, change):
    from kflowgen.flow import pipeline
    from kflowgen.options import Options

    root = _clean_repo(tmp_path, monkeypatch)
    spec = root / "specs/teams/vision.yaml"
    if change == "edited-and-rendered":  # the check passes, on files that are not HEAD's
        spec.write_text(spec.read_text().replace("gpu: {a100: 16}", "gpu: {a100: 12}"))
        assert not pipeline.render_to_disk(Options.at(root, 2, True), check_only=False).errors
    elif change in ("untracked", "ignored"):  # a file the check does not judge (a spec kflowgen does not read)
        (root / "specs/notes.txt").write_text("x\n")
        if change == "ignored":
            (root / ".gitignore").write_text("notes.txt\n")
            _git(root, "add", ".gitignore")
            _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "ignore")
    elif change == "autocrlf":  # git converts line ends: the bytes checked are not the blobs'
        _git(root, "config", "core.autocrlf", "true")
    elif change == "assume-unchanged":  # git does not look at the file: it may not be the blob
        _git(root, "update-index", "--assume-unchanged", "specs/teams/vision.yaml")
    elif change == "assume-unchanged-first":  # the first file git lists of the folders the gate reads
        from kflowgen.flow import scope as scopes

        first = _git(root, "ls-files", "--", *scopes.JUDGED).split("\n")[0]
        _git(root, "update-index", "--assume-unchanged", first)
    elif change == "skip-worktree":
        _git(root, "update-index", "--skip-worktree", "specs/teams/vision.yaml")
    elif change == "drift":
        spec.write_text(spec.read_text().replace("gpu: {a100: 16}", "gpu: {a100: 12}"))
        _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "specs only")
    report = _check(root, use_cache=change != "no-cache")
    assert bool(report.errors) is (change == "drift")
    assert not _clean_of_head(root, tmp_path)


def test_a_render_check_that_finds_something_stops_gits_listings_unread(tmp_path, monkeypatch):
    """git's listings beside a render --check are read only to keep a check that found nothing: one that finds drift
    stops them instead of waiting for them (at 10,000 teams, 2 s); one that finds nothing reads them to the end."""
    import signal

    from kflowgen import survey
    from kflowgen.flow import scope as scopes

    root = _clean_repo(tmp_path, monkeypatch)
    spec = root / "specs/teams/vision.yaml"
    spec.write_text(spec.read_text().replace("gpu: {a100: 16}", "gpu: {a100: 12}"))
    started = []
    real = scopes.status

    def status(root, **kw):  # git's answers, behind a command that takes long to finish
        started.append(survey.start([["sleep", "30"]], behind=True) + real(root, **kw)[1:])
        return started[-1]

    monkeypatch.setattr(scopes, "status", status)
    assert _check(root).errors
    assert started[0][0][0].returncode == -signal.SIGTERM
    assert not _clean_of_head(root, tmp_path)
