"""The orchestrator (kflowgen.flow.pipeline) called directly, feature by feature, on a scratch copy of the example
repository: validate, checked, gate, render_to_disk, build_environment and head_side, with the diff's sides. Asserts
on the values they return (diagnostics, summaries, changes, files), and that nothing but render writes."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent import futures
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, copy_repo, plant_base_binding
from kflowgen import packed, parallel, survey, tools
from kflowgen.build import overlays_of
from kflowgen.diagnostics import Diagnostic
from kflowgen.flow import diff, pipeline
from kflowgen.options import Options
from kflowgen.report.changes import Change

pytestmark = pytest.mark.skipif(isinstance(tools.find("kustomize", PROJECT), Diagnostic), reason="needs kustomize")

VISION = "specs/teams/vision.yaml"
QUOTA = "overlays/prod/teams/vision/platform/resourcequota.team.yaml"  # the one file a100 16 -> 12 changes
JOB = "overlays/dev/teams/vision/workloads/job.resnet-sweep-dropout0p3-lr0p01-6753564d.yaml"
STALE = "overlays/dev/teams/vision/workloads/job.retired.yaml"  # carries kflowgen's header, no spec renders it
EVIL = "overlays/dev/argocd/appproject.evil.yaml"  # hand-written: no header
EVIL_TEXT = ("apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: evil, namespace: argocd}\n"
             "spec: {destinations: [{server: '*', namespace: '*'}], clusterResourceWhitelist: [{group: '*', kind: '*'}]}\n")
SUMMARY = ["3 teams, 3 environments, 205 objects built and validated",
           "  dev      3 teams    83 objects  GPU quota/capacity: a100 6/8  t4 6/16",
           "  staging  2 teams    50 objects  GPU quota/capacity: a100 2/8  t4 2/8",
           "  prod     3 teams    72 objects  GPU quota/capacity: a100 28/32  t4 12/16"]
OVERLAYS = 20  # per environment its argocd folder, a platform and a workloads overlay per team (3 + 2 + 3 teams);
#               and dev's queueing folder
QUOTA_CHANGES = [
    Change("prod", "vision", "quota", "vision, prod: GPU quota a100 16 → 12 (prod capacity 32, allocated 28 → 24)"),
    Change("prod", "vision", "changed", "vision, prod: ResourceQuota vision/team changed (spec.hard)")]


# --- helpers and fixtures ---------------------------------------------------------------------------------------

def opts(root: Path, jobs: int = 2, use_cache: bool = False) -> Options:
    return Options.at(root, jobs, use_cache)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root but .git: a file by the sha256 of its bytes, a link by its target, a folder as such."""
    out = {}
    for top, dirs, files in os.walk(root):
        if top == str(root):
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            out[rel] = ("link " + os.readlink(path) if os.path.islink(path) else "dir" if os.path.isdir(path)
                        else hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return out


def on_disk(root: Path) -> dict[str, bytes]:
    """{path: bytes} of every file under overlays/."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "overlays").rglob("*"))
            if p.is_file()}


def edit(root: Path, rel: str, old: str, new: str) -> None:
    text = (root / rel).read_text()
    assert text.count(old) == 1, (rel, old)
    (root / rel).write_text(text.replace(old, new))


def less_a100(root: Path) -> None:
    """vision's prod quota a100 16 -> 12: one generated file changes (QUOTA)."""
    edit(root, VISION, "gpu: {a100: 16}", "gpu: {a100: 12}")


def drift(root: Path) -> None:
    """A spec change not rendered, a generated file deleted, and a stale generated file."""
    less_a100(root)
    shutil.copy(root / JOB, root / STALE)
    (root / JOB).unlink()


def found(report) -> list[tuple[str, int, int, str, str]]:
    return sorted((d.path, d.line, d.col, d.code, d.severity) for d in report.diagnostics)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                           "-c", "init.defaultBranch=main", "-C", str(root), *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(example_repo, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the example repository, with a result cache of its own (a cached run starts cold)."""
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return example_repo


@pytest.fixture
def committed(repo) -> Path:
    """The copy as the one commit of a git repository: HEAD is the gate's base."""
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "example")
    return repo


# --- validate -----------------------------------------------------------------------------------------------------

def test_validate_a_clean_example_finds_nothing_and_summarises(repo):
    before = snapshot(repo)
    report = pipeline.validate(opts(repo))
    assert report.diagnostics == [] and report.exit_code == 0
    assert report.summary[0].startswith(SUMMARY[0] + " (") and report.summary[1:] == SUMMARY[1:]
    done = pipeline.checked(opts(repo))
    # what validate built is every overlay the specs render, and the committed overlays are exactly those files
    assert done.rendered.files == on_disk(repo)
    assert sorted(done.built.overlays) == overlays_of(done.rendered.files) and len(done.built.overlays) == OVERLAYS
    assert snapshot(repo) == before


@pytest.mark.parametrize("old, new, where", [
    ("    cpu: 64\n", "    cpu: -1\n", (VISION, "cpu: -1", 10, "KF204")),  # one file against its schema
    ("gpu: {a100: 16}", "gpu: {a100: 30}", (VISION, "gpu: {a100: 30}", 17, "KF306")),  # across files
])
def test_a_spec_error_is_a_located_diagnostic_and_nothing_is_built(repo, monkeypatch, old, new, where):
    edit(repo, VISION, old, new)
    path, text, col, code = where
    lines = [i for i, s in enumerate((repo / path).read_text().splitlines(), 1) if s.strip().startswith(text)]
    assert len(lines) == 1
    line = lines[0]
    builds = []
    monkeypatch.setattr(pipeline, "build", lambda *a: builds.append(a) or pytest.fail("built with spec errors"))
    done = pipeline.checked(opts(repo))
    assert found(done.report) == [(path, line, col, code, "error")]
    assert (done.model, done.rendered, done.built, done.report.summary, builds) == (None, None, None, [], [])
    assert pipeline.head_side(opts(repo), done) is None
    assert pipeline.validate(opts(repo)).diagnostics == done.report.diagnostics


def test_a_policy_error_is_found_after_the_build(repo):
    plant_base_binding(repo, "cluster-admin", "system:authenticated")
    done = pipeline.checked(opts(repo))
    assert done.built is not None and len(done.built.overlays) == OVERLAYS  # the build ran; policy judged what it built
    assert {d.code for d in done.report.diagnostics} == {"KF612"} and len(done.report.errors) == 16
    assert all(d.path.startswith("overlays/") and "/platform" in d.path for d in done.report.errors)
    assert done.report.summary == []  # no "built and validated" line for a failing run


def test_an_unknown_environment_is_one_error(repo):
    report = pipeline.validate(opts(repo), env="qa")
    assert [(d.path, d.code) for d in report.diagnostics] == [("specs/platform.yaml", "KF303")]
    staging = pipeline.validate(opts(repo), env="staging")
    assert (staging.diagnostics, staging.summary[1:]) == ([], [SUMMARY[2]])


# --- render and render --check ------------------------------------------------------------------------------------

def test_render_writes_exactly_the_generated_tree(repo):
    drift(repo)
    report = pipeline.render_to_disk(opts(repo), check_only=False)
    assert report.diagnostics == []
    assert report.summary == ["168 generated files: 1 added, 1 changed, 1 removed, 166 unchanged"]
    want = pipeline.checked(opts(repo)).rendered.files
    assert on_disk(repo) == want and len(want) == 168
    assert sorted(os.listdir(repo)) == [".github", "bases", "overlays", "specs"]  # no scratch tree left beside it
    again = pipeline.render_to_disk(opts(repo), check_only=True)
    assert (again.diagnostics, again.summary) == ([], ["168 generated files checked: up to date"])


def test_render_check_reports_drift_and_writes_nothing(repo):
    drift(repo)
    before = snapshot(repo)
    report = pipeline.render_to_disk(opts(repo), check_only=True)
    assert found(report) == [(JOB, 1, 1, "KF502", "error"), (STALE, 1, 1, "KF503", "error"),
                             (QUOTA, 1, 1, "KF501", "error")]
    assert report.summary == ["168 generated files checked: 1 missing, 1 different, 1 extra"]
    assert snapshot(repo) == before
    # validate leaves drift to render --check and the gate: right after a spec change it is expected
    assert pipeline.validate(opts(repo)).diagnostics == []
    assert snapshot(repo) == before


def test_render_writes_nothing_while_a_hand_written_file_is_in_overlays(repo):
    less_a100(repo)
    (repo / EVIL).write_text(EVIL_TEXT)
    before = snapshot(repo)
    refused = pipeline.render_to_disk(opts(repo), check_only=False)
    assert (found(refused), refused.summary) == ([(EVIL, 1, 1, "KF504", "error")], [])  # no "written" line
    assert snapshot(repo) == before
    checked = pipeline.render_to_disk(opts(repo), check_only=True)
    assert found(checked) == [(EVIL, 1, 1, "KF504", "error"), (QUOTA, 1, 1, "KF501", "error")]
    assert checked.summary == ["168 generated files checked: 0 missing, 1 different, 0 extra"]
    assert snapshot(repo) == before


def test_render_refuses_bad_specs_and_writes_nothing(repo):
    (repo / VISION).write_text("name: [\n")
    before = snapshot(repo)
    report = pipeline.render_to_disk(opts(repo), check_only=False)
    assert [(d.path, d.code) for d in report.errors] == [(VISION, "KF101")] and report.summary == []
    assert snapshot(repo) == before


# --- gate ---------------------------------------------------------------------------------------------------------

def test_gate_reports_the_spec_change_and_its_drift(committed):
    report, changes = pipeline.gate(opts(committed), "HEAD")
    assert (report.diagnostics, report.summary[-1]) == ([], "168 generated files checked: up to date")
    assert (changes.changes, changes.diagnostics) == ([], [])
    less_a100(committed)
    before = snapshot(committed)
    report, changes = pipeline.gate(opts(committed), "HEAD")
    assert found(report) == [(QUOTA, 1, 1, "KF501", "error")]
    assert report.summary == ["168 generated files checked: 0 missing, 1 different, 0 extra"]
    assert (changes.changes, changes.dangerous, changes.diagnostics) == (QUOTA_CHANGES, [], [])
    assert snapshot(committed) == before
    assert pipeline.render_to_disk(opts(committed), check_only=False).diagnostics == []
    report, changes = pipeline.gate(opts(committed), "HEAD")  # rendered: the change is what remains
    assert (report.diagnostics, changes.changes) == ([], QUOTA_CHANGES)
    assert report.summary[-1] == "168 generated files checked: up to date"


def test_gate_never_passes_a_file_kflowgen_did_not_write(committed):
    (committed / EVIL).write_text(EVIL_TEXT)
    shutil.copy(committed / JOB, committed / STALE)
    before = snapshot(committed)
    report, changes = pipeline.gate(opts(committed), "HEAD")
    assert found(report) == [(EVIL, 1, 1, "KF504", "error"), (STALE, 1, 1, "KF503", "error")]
    assert report.summary == ["168 generated files checked: 0 missing, 0 different, 1 extra"]
    assert changes.changes == []  # the specs did not change: what is wrong is on disk only
    assert found(pipeline.validate(opts(committed))) == [(EVIL, 1, 1, "KF504", "error")]  # the stale file is drift
    assert snapshot(committed) == before
    git(committed, "add", "-A")
    git(committed, "commit", "-qm", "plant")  # committed or not: the same findings
    assert found(pipeline.gate(opts(committed), "HEAD")[0]) == found(report)


def test_gate_on_a_head_that_does_not_load_gives_its_errors_and_no_diff(committed):
    (committed / VISION).write_text("name: [\n")
    report, changes = pipeline.gate(opts(committed), "HEAD")
    assert changes is None and [(d.path, d.code) for d in report.errors] == [(VISION, "KF101")]


def test_gate_against_a_ref_that_is_not_a_commit(committed):
    report, changes = pipeline.gate(opts(committed), "no-such-branch")
    assert report.diagnostics == [] and changes.changes == []
    assert [(d.path, d.code) for d in changes.diagnostics] == [("git", "KF902")]
    assert changes.diagnostics == diff.diff_git(opts(committed), "no-such-branch").diagnostics


def test_a_base_that_reads_as_an_option_reaches_no_git_command_but_the_check(committed, monkeypatch, tmp_path):
    """The gate starts the base's listing early, before the ref is checked: a ref that reads as an option is given to
    no command but the check (rev-parse --verify), which refuses it."""
    calls = []
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda argv, *a, **k: calls.append(list(argv)) or real(argv, *a, **k))
    ref = f"--output={tmp_path / 'x'}"
    _, changes = pipeline.gate(opts(committed), ref)
    assert [(d.path, d.code) for d in changes.diagnostics] == [("git", "KF902")]
    given = [argv for argv in calls if any(ref in a for a in argv)]
    assert given and all(argv[3:5] == ["rev-parse", "--verify"] for argv in given), given
    assert diff.changed_paths(committed, ref) is None and not (tmp_path / "x").exists()


def test_the_gate_lists_the_base_while_it_checks_the_head(committed, monkeypatch):
    """The base's git listing starts before the head is checked, and the diff reads that one: the changes are the
    ones `diff --base` gives, which starts its own, from the working tree's folder or one below the git top."""
    from kflowgen.flow import gitref

    less_a100(committed)
    events = []
    real_started, real_checked, real_diff = gitref.started, pipeline.checked, diff.diff_git
    monkeypatch.setattr(gitref, "started", lambda *a: events.append("started") or real_started(*a))
    monkeypatch.setattr(pipeline, "checked", lambda *a, **k: events.append("head") or real_checked(*a, **k))
    monkeypatch.setattr(diff, "diff_git", lambda *a, started=None, **k: events.append(started is not None)
                        or real_diff(*a, started=started, **k))
    _, changes = pipeline.gate(opts(committed), "HEAD")
    assert events == ["started", "head", True]
    alone = real_diff(opts(committed), "HEAD")
    assert changes.changes == alone.changes != [] and changes.diagnostics == alone.diagnostics == []


# --- the diff's sides ---------------------------------------------------------------------------------------------

def fields(side: diff.Side) -> tuple:
    return side.envs, side.quotas, side.sweeps, side.built, side.values


def test_the_gates_head_is_the_side_the_diff_makes(repo):
    done = pipeline.checked(opts(repo))
    head = pipeline.head_side(opts(repo), done, keep=False)
    made, diags = diff._side(opts(repo), None)
    assert diags == [] and fields(head) == fields(made)
    assert len(head.built) == OVERLAYS and set(head.values) == {"dev", "staging", "prod"}
    # a side made in this run names, by each text's digest, the overlay of its build (or holds a values file's bytes):
    # no function or text of its own per overlay (60,000 at 10,000 teams); it gives the build's texts and objects
    assert {type(v) for v in head.made.values()} == {str, bytes} and head.output is done.built
    for overlay, digest in head.built.items():
        assert head.text(digest) == done.built.overlays[overlay] and head.data(digest) == head.text(digest).encode()
        assert head.given(digest) == (done.built.objects(overlay) if overlay in done.built.parsed else None)
    assert sum(head.given(d) is not None for d in head.built.values()) > OVERLAYS // 2
    for env, digest in head.values.items():
        data = done.rendered.files[f"overlays/{env}/jupyterhub/values.yaml"]
        assert head.data(digest) == data and head.text(digest) == data.decode()


def test_diff_of_identical_trees_is_empty_and_one_change_gives_exactly_its_objects(repo, tmp_path):
    other = copy_repo(PROJECT, tmp_path / "head")
    same = diff.diff_trees(opts(repo), opts(other))
    assert (same.changes, same.dangerous, same.diagnostics) == ([], [], [])
    less_a100(other)
    changed = diff.diff_trees(opts(repo), opts(other))
    assert (changed.changes, changed.diagnostics) == (QUOTA_CHANGES, [])
    head = pipeline.head_side(opts(other), pipeline.checked(opts(other)), keep=False)  # the gate's head: the same
    assert diff.diff_trees(opts(repo), opts(other), head=head).changes == QUOTA_CHANGES
    backwards = diff.diff_trees(opts(other), opts(repo))
    assert [c.text for c in backwards.changes] == [
        "vision, prod: GPU quota a100 12 → 16 (prod capacity 32, allocated 24 → 28)", QUOTA_CHANGES[1].text]


def test_gate_recalls_the_base_validate_remembered_and_diffs_the_same(committed, monkeypatch):
    sides = []
    real = diff._side
    monkeypatch.setattr(diff, "_side", lambda *a, **k: sides.append(a[1]) or real(*a, **k))
    less_a100(committed)
    cold = pipeline.gate(opts(committed), "HEAD")
    assert sides == ["HEAD"]  # without a cache the base is loaded, rendered and built; the head is validate's
    git(committed, "stash", "-q")
    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []  # main, validated: its side kept
    git(committed, "stash", "pop", "-q")
    sides.clear()
    warm = pipeline.gate(opts(committed, use_cache=True), "HEAD")
    assert sides == []  # neither side made again: the head is the one validated, the base was recalled
    assert warm == cold and warm[1].changes == QUOTA_CHANGES


def test_the_gate_finds_the_side_main_kept_by_its_folders_tree_ids(committed, monkeypatch):
    """validate on main names its side by the git tree ids of specs/, bases/ and schemas/: a pull request's gate
    finds it by them, without parsing the base's listing or keying its spec files (0.3 s at 10,000 teams)."""
    less_a100(committed)
    cold = pipeline.gate(opts(committed), "HEAD")
    git(committed, "stash", "-q")
    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []
    git(committed, "stash", "pop", "-q")
    keyed, sides, real_key, real_side = [], [], diff.listed_key, diff._side
    monkeypatch.setattr(diff, "listed_key", lambda *a: keyed.append(a) or real_key(*a))
    monkeypatch.setattr(diff, "_side", lambda *a, **k: sides.append(a[1]) or real_side(*a, **k))
    warm = pipeline.gate(opts(committed, use_cache=True), "HEAD")
    assert (keyed, sides) == ([], []) and warm == cold and warm[1].changes == QUOTA_CHANGES


def test_the_side_named_by_heads_trees_is_heads_not_the_working_trees(committed, monkeypatch):
    """A validate of a working tree that differs from HEAD keeps the working tree's side, and names by HEAD's trees
    the key of HEAD's own listing, never that side: a gate against HEAD then makes the base from git, and says what
    changed."""
    less_a100(committed)
    cold = pipeline.gate(opts(committed), "HEAD")
    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []  # (the working tree's side kept)
    sides, real = [], diff._side
    monkeypatch.setattr(diff, "_side", lambda *a, **k: sides.append(a[1]) or real(*a, **k))
    warm = pipeline.gate(opts(committed, use_cache=True), "HEAD")
    assert sides == ["HEAD"] and warm == cold and warm[1].changes == QUOTA_CHANGES


def test_a_validate_lists_heads_files_to_name_its_side_only_once(committed, monkeypatch):
    """Naming HEAD's side by its folders' tree ids lists HEAD's files (the recursive ls-tree, 0.2 s at 10,000 teams)
    only when HEAD is not named yet: a validate of a commit named before asks git for the tree ids alone."""
    from kflowgen.flow import gitref

    listed, real = [], gitref.ids_at
    monkeypatch.setattr(gitref, "ids_at", lambda *a: listed.append(a) or real(*a))
    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []
    assert len(listed) == 1
    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []
    assert len(listed) == 1


def test_the_base_is_listed_at_one_commit_whatever_its_ref_names_later(committed):
    """The gate resolves the base once: its listing and its folders' tree ids (what finds its side) are of that
    commit, even if the ref moves while the head is checked."""
    from kflowgen.flow import gitref

    commit = git(committed, "rev-parse", "HEAD").strip()
    runs = gitref.started(committed, "HEAD")
    git(committed, "commit", "-q", "--allow-empty", "-m", "the ref moves")
    try:
        listings = [run.args for run, *_ in runs if "ls-tree" in run.args]
        assert len(listings) == 2 and all(f"{commit}:./" in argv for argv in listings), listings
    finally:
        survey.finish(runs)
    assert gitref.started(committed, "no-such-branch") == [(None, None)] * 4  # nothing listed by a name that may
    # name another commit by the time it runs (the check, asked when the results are read, refuses it)


def more_epochs(root: Path) -> None:
    """vision's sweep trains 12 epochs instead of 10: its Jobs change, the hub values do not."""
    edit(root, "specs/experiments/vision/resnet-sweep.yaml", "epochs: 10", "epochs: 12")


@pytest.mark.parametrize("change, data_gone", [(less_a100, False), (more_epochs, False), (more_epochs, True)],
                         ids=["quota", "experiment", "experiment, files gone from the cache"])
def test_the_gate_lets_the_heads_model_go_before_it_reads_the_base(committed, monkeypatch, tmp_path, change,
                                                                   data_gone):
    """The gate's head, once checked, is a side of the diff that holds on to no model (nor the specs it is made of):
    at 10,000 teams that is 300 MB of the gate's peak. Also when its units come from the cache (whose files it reads
    when the diff asks for them, from the cache only), and when a cached unit's files were gone, so the check
    rendered it again (the shared unit: the hub values' renderer kept the teams it was given)."""
    import gc
    import weakref

    assert pipeline.validate(opts(committed, use_cache=True)).diagnostics == []  # its units, cached
    for path in _data_entries(tmp_path / "cache") if data_gone else ():
        path.unlink()
    change(committed)
    models, alive = [], []
    real_checked, real_diff = pipeline.checked, diff.diff_git
    monkeypatch.setattr(pipeline, "checked", lambda *a, **k: models.extend(map(weakref.ref, [
        (done := real_checked(*a, **k)).model, done.model.platform, *done.model.teams])) or done)

    def diffed(*a, **k):  # (the hub values' renderer keeps the last teams it was given only while it renders)
        alive.append(any(m() is not None for m in models))
        return real_diff(*a, **k)

    monkeypatch.setattr(diff, "diff_git", diffed)
    gc.collect()
    gc.disable()  # as the command line runs (kflowgen.cli.main): what is let go is freed as its last use ends
    try:
        report, changes = pipeline.gate(opts(committed, use_cache=True), "HEAD")
    finally:
        gc.enable()
    assert alive == [False] and changes.diagnostics == []
    assert (changes.changes == QUOTA_CHANGES) == (change is less_a100) and changes.changes


def _data_entries(cache_folder: Path) -> list[Path]:
    """The result cache's entries of rendered units' files (targets.cached.data_key's)."""
    from kflowgen import cache

    return [p for p in (cache_folder / "render").rglob("*") if p.is_file()
            and p.name == cache.key("render-data", hashlib.sha256(p.read_bytes()[65:]).hexdigest())]


def test_a_heads_files_gone_from_the_cache_before_the_diff_reads_them_make_the_head_again(committed, tmp_path,
                                                                                         monkeypatch):
    """The gate's head reads a file the diff asks for from the cache only (the model is let go): when the cache no
    longer holds it, the head is made again, and the gate says what it says with the cache whole. Here vision's
    Argo CD project differs from the base's, the head was validated before (its overlays' builds are known), and
    its units' files are gone: the diff reads the argocd folder's files."""
    edit(committed, VISION, "group: vision-ds", "group: vision-scientists")
    whole = pipeline.gate(opts(committed), "HEAD")
    assert any("appproject" in c.text.lower() for c in whole[1].changes), whole[1].changes
    assert pipeline.validate(opts(committed, use_cache=True)).errors == []
    gone = _data_entries(tmp_path / "cache")
    assert gone
    for path in [*gone, *(tmp_path / "cache/side").rglob("*")]:  # (the head validate kept, too)
        if path.is_file():
            path.unlink()
    sides, lost = [], []
    real_side, real_diff_git = diff._side, diff._diff_git
    monkeypatch.setattr(diff, "_side", lambda *a, **k: sides.append(a[1]) or real_side(*a, **k))

    def diffed(opts, base, head, started):
        try:
            return real_diff_git(opts, base, head, started)
        except Exception as e:
            lost.append(type(e).__name__)
            raise

    monkeypatch.setattr(diff, "_diff_git", diffed)
    again = pipeline.gate(opts(committed, use_cache=True), "HEAD")
    assert lost == ["Released"] and None in sides  # the head, made again
    assert again == whole
    kept = [p for p in (tmp_path / "cache/side").rglob("*") if p.is_file()]
    assert len(kept) == 1  # the base's (made from git), not the head's: the gate keeps no head


def test_a_failing_validate_keeps_no_side(repo, tmp_path):
    plant_base_binding(repo, "cluster-admin", "system:authenticated")
    assert pipeline.validate(opts(repo, use_cache=True)).errors
    assert not (tmp_path / "cache/side").exists()
    (repo / "bases/team/rolebinding.planted.yaml").unlink()
    edit(repo, "bases/team/kustomization.yaml", "- rolebinding.planted.yaml\n", "")
    assert pipeline.validate(opts(repo, use_cache=True)).diagnostics == []
    assert len(list((tmp_path / "cache/side").rglob("*"))) == 2  # one folder, one entry


# --- cache --------------------------------------------------------------------------------------------------------

def outcome(done: pipeline.Checked) -> tuple:
    return done.report, done.rendered.files, done.built.overlays


def test_a_warm_cache_gives_the_cold_results(repo):
    drift(repo)  # findings to repeat, not only a pass
    cold = pipeline.checked(opts(repo), drift=True)
    first, second = opts(repo, use_cache=True), opts(repo, use_cache=True)
    warm1 = pipeline.checked(first, drift=True)
    warm2 = pipeline.checked(second, drift=True)
    # the first run hits nothing (dev's and prod's hub values are one file, checked once); the second is all hits
    assert (first.store.hits, second.store.misses) == (0, 0) and second.store.hits > 1
    assert outcome(cold) == outcome(warm1) == outcome(warm2)
    assert [d.code for d in cold.report.sorted()] == ["KF502", "KF503", "KF501"]


def test_an_edited_spec_is_not_answered_from_the_cache(repo):
    clean = pipeline.validate(opts(repo, use_cache=True))
    assert clean.diagnostics == [] and clean.summary[3] == SUMMARY[3]
    less_a100(repo)
    warm = pipeline.checked(opts(repo, use_cache=True))
    assert outcome(warm) == outcome(pipeline.checked(opts(repo)))
    assert warm.report.summary[3] == SUMMARY[3].replace("a100 28/32", "a100 24/32")
    assert 'requests.nvidia.com/gpu: "12"' in warm.built.overlays["overlays/prod/teams/vision/platform"]
    assert warm.rendered.files[QUOTA] != on_disk(repo)[QUOTA]
    edit(repo, VISION, "    cpu: 64\n", "    cpu: -1\n")  # an error after a cached pass comes back as an error
    assert [d.code for d in pipeline.validate(opts(repo, use_cache=True)).diagnostics] == ["KF204"]
    edit(repo, VISION, "    cpu: -1\n", "    cpu: 64\n")
    edit(repo, VISION, "gpu: {a100: 12}", "gpu: {a100: 16}")
    assert pipeline.validate(opts(repo, use_cache=True)) == clean


# --- jobs -----------------------------------------------------------------------------------------------------

def test_one_job_and_two_jobs_give_the_same_results(committed, monkeypatch):
    drift(committed)
    (committed / EVIL).write_text(EVIL_TEXT)
    one = (pipeline.gate(opts(committed, 1), "HEAD"), pipeline.render_to_disk(opts(committed, 1), True),
           outcome(pipeline.checked(opts(committed, 1))))
    pools = []
    real = futures.ProcessPoolExecutor
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)  # fork even for three teams
    monkeypatch.setattr(futures, "ProcessPoolExecutor", lambda *a, **k: pools.append(k) or real(*a, **k))
    two = (pipeline.gate(opts(committed, 2), "HEAD"), pipeline.render_to_disk(opts(committed, 2), True),
           outcome(pipeline.checked(opts(committed, 2))))
    assert pools and all(k["max_workers"] == 2 for k in pools)  # two jobs did run on forked processes
    assert one == two
    assert [d.code for d in one[0][0].sorted()] == ["KF504", "KF502", "KF503", "KF501"]


def test_a_first_run_of_many_gives_what_a_run_that_holds_everything_gives(committed, monkeypatch, tmp_path):
    """A first run of many units (forked, into an empty cache) holds little: the rendered bytes and built texts are
    left in the cache and read back, the objects handed to the checks set aside in a temporary file, the specs read
    kept as their cache entry's bytes. The real kustomize, kubeconform and policies then give the same report,
    files and builds, findings included, as a run of few that holds everything; and so do the gate and render
    --check that come after it, from that cache."""
    drift(committed)
    (committed / EVIL).write_text(EVIL_TEXT)
    def handed(done: pipeline.Checked) -> tuple:  # what the build hands the checks: counts, every unit's objects
        return done.built.counts, {u: done.built.unit_objects(u) for u in done.built.units()}

    cold = pipeline.checked(opts(committed, 2), drift=True)
    held = (outcome(cold), pipeline.gate(opts(committed, 2), "HEAD"), pipeline.render_to_disk(opts(committed, 2), True))
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    spilled, put = [], packed.Spill.put
    monkeypatch.setattr(packed.Spill, "put", lambda self, data: spilled.append(data) or put(self, data))
    done = pipeline.checked(opts(committed, 2, use_cache=True), drift=True)
    built_now = [o for o in done.built.overlays if o not in done.built.parts]
    # (the paths of a run of many were taken: objects set aside, no built text held)
    assert spilled and built_now and not any(o in done.built.overlays._texts for o in built_now)
    assert handed(done) == handed(cold)
    assert (outcome(done), pipeline.gate(opts(committed, 2, use_cache=True), "HEAD"),
            pipeline.render_to_disk(opts(committed, 2, use_cache=True), True)) == held
    assert {d.code for d in held[0][0].diagnostics} >= {"KF501"}  # (findings to repeat, not only a pass)


# --- build --------------------------------------------------------------------------------------------------------

def test_build_environment_builds_from_the_specs_not_from_disk(repo):
    want = pipeline.checked(opts(repo)).built.overlays
    shutil.rmtree(repo / "overlays")
    built, report = pipeline.build_environment(opts(repo), "prod", "vision")
    assert report.diagnostics == [] and built == {o: want[o] for o in want if o.startswith("overlays/prod/teams/vision/")}
    assert len(built) == 2 and not (repo / "overlays").exists()
    built, report = pipeline.build_environment(opts(repo), "prod", "nobody")
    assert built == {} and [(d.location(), d.code, d.message, d.hint) for d in report.errors] == [
        ("specs/teams", "KF702", "nothing to build for team 'nobody' in prod: no such team",
         "teams in prod: nlp, recsys, vision")]
    built, report = pipeline.build_environment(opts(repo), "qa", "vision")
    assert built == {} and [(d.path, d.code) for d in report.errors] == [("specs/platform.yaml", "KF303")]


def test_gate_warns_of_a_team_the_pull_request_renders_away_with_the_command_to_delete_it(committed):
    """The normal flow: the pull request deletes a team's specs and commits the render, so no namespace file of the
    team is on disk any more; the gate still says, per environment the team leaves, what Argo CD keeps and the
    command a person runs after backing up the NAS (KF505, read from the base's committed overlays)."""
    for rel in ("specs/teams/recsys.yaml", "specs/experiments/recsys", "specs/models/recsys"):
        target = committed / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert not pipeline.render_to_disk(opts(committed), check_only=False).errors
    git(committed, "add", "-A")
    git(committed, "commit", "-qm", "recsys leaves")
    report, _ = pipeline.gate(opts(committed), "HEAD~1")
    leaving = [d for d in report.diagnostics if d.code == "KF505"]
    assert [(d.path, d.severity) for d in leaving] == [
        (f"overlays/{env}/teams/recsys/platform/namespace.yaml", "warning") for env in ("dev", "staging", "prod")]
    assert "kubectl --server https://prod.k8s.example.com delete namespace recsys" in leaving[-1].hint
    assert not report.errors
    # and none for a pull request that keeps every team
    report, _ = pipeline.gate(opts(committed), "HEAD")
    assert not [d for d in report.diagnostics if d.code == "KF505"]


def test_offboarding_a_team_makes_its_people_readers_and_its_nas_read_only_then_says_step_two(committed):
    """Step 1 of the two a platform engineer takes: `offboarding: true` in the team file. Every owner and member
    group is bound to `view` (a RoleBinding of its own name: a roleRef never changes, Argo CD prunes the old ones),
    the team's notebooks mount the NAS read-only, validate warns with step 2 (KF506), and the gate's diff says it
    first, once per environment."""
    team = committed / "specs/teams/recsys.yaml"
    team.write_text(team.read_text().replace("storage:\n", "offboarding: true\nstorage:\n", 1))
    assert not pipeline.render_to_disk(opts(committed), check_only=False).errors
    platform = committed / "overlays/prod/teams/recsys/platform"
    assert sorted(p.name for p in platform.glob("rolebinding.*")) == [
        "rolebinding.jupyterhub-spawner.yaml", "rolebinding.offboarding-view.yaml"]
    binding = yaml.safe_load((platform / "rolebinding.offboarding-view.yaml").read_text())
    assert binding["roleRef"]["name"] == "view" and [(s["kind"], s["name"]) for s in binding["subjects"]] == [
        ("User", "carol@example.com"), ("User", "dave@example.com"), ("Group", "recsys-ds")]
    values = yaml.safe_load((committed / "overlays/prod/jupyterhub/values.yaml").read_text())
    mounts = {p["slug"]: p["kubespawner_override"]["volume_mounts"][0] for p in values["singleuser"]["profileList"]}
    assert mounts["recsys-small"] == {"name": "nas", "mountPath": "/workspace", "readOnly": True}
    assert mounts["vision-a100"] == {"name": "nas", "mountPath": "/workspace"}  # the other teams write as before
    report, changes = pipeline.gate(opts(committed), "HEAD")
    assert [(d.code, d.path, d.severity) for d in report.diagnostics if d.code != "KF501"] == [
        ("KF506", "specs/teams/recsys.yaml", "warning")]  # KF501: the overlays are not committed yet
    step2 = [d for d in report.diagnostics if d.code == "KF506"][0]
    assert step2.hint.startswith("step 2, once the NAS is backed up: remove specs/teams/recsys.yaml with the team's "
                                 "experiments and models, then run: kubectl --server https://dev.k8s.example.com "
                                 "delete namespace recsys; ")
    assert [c.text for c in changes.dangerous] == [
        f"recsys, {env}: recsys is being offboarded (step 1 of 2): its owners and members only read (ClusterRole "
        "view), its notebooks mount the NAS read-only" for env in ("dev", "staging", "prod")]
    assert not [c for c in changes.changes if "RoleBinding" in c.text]  # said by the line above
