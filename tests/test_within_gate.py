"""The gate experiment by experiment (kflowgen.flow.within) says exactly what the whole gate says: for each pull
request below, on the example repository with two more experiments of vision's, whose main was validated and checked
(as tests/test_scoped_gate.py's), `kflowgen gate` prints the same, to the byte, with the same exit code, whether it
judges the changed experiments or everything; and it judges them alone exactly when the change is one it covers
(experiments of teams of many, committed with what they render and nothing else, on a base the cache vouches for).
Every team counts as one of many here (within.WITHIN_FROM); the example repository has too few teams for the gate by
the team (flow.scoped), so what is not judged experiment by experiment is judged whole."""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from conftest import PROJECT
from kflowgen import tools
from kflowgen.diagnostics import Diagnostic
from kflowgen.flow import gitref, scope as scopes, scoped, within
from test_scoped_gate import (AFTER, BERT, RESNET, STATS, WORKLOADS, _committed, _main, _opts, a_warning, an_error,
                              as_whole, assumed_unchanged, edit, edited_elsewhere, experiment_removed,
                              fifo_in_workloads, filed_under_another_team, gate, generated_file_deleted,
                              generated_file_edited, git, handwritten_job, hyperparameter, link_in_specs,
                              link_in_workloads, new_experiment, not_rendered, readme, render, served_model,
                              stale_generated_file, team_quota, two_teams, unknown_environment, untracked_elsewhere)

pytestmark = pytest.mark.skipif(isinstance(tools.find("kustomize", PROJECT), Diagnostic), reason="needs kustomize")

STATS_A, STATS_B = "specs/experiments/vision/stats-a.yaml", "specs/experiments/vision/stats-b.yaml"
STATS_SPEC = """team: vision
name: {name}
run: python scripts/stats.py --out reports/
workdir: projects/{name}
image: quay.io/jupyter/pytorch-notebook:2025-11-24
resources: {{cpu: 2, memory: 8Gi}}
environments: [dev, staging]
"""


@pytest.fixture(autouse=True)
def every_team_of_many(monkeypatch):
    monkeypatch.setattr(within, "WITHIN_FROM", 1)


def two_more(root):
    """vision's two more experiments: CPU Jobs in dev and staging, beside its sweep (dev)."""
    for rel, name in ((STATS_A, "stats-a"), (STATS_B, "stats-b")):
        (root / rel).write_text(STATS_SPEC.format(name=name))


@pytest.fixture(scope="module")
def main_repo(tmp_path_factory):
    return _main(tmp_path_factory.mktemp("main"), warned=False, more=two_more)


@pytest.fixture(scope="module")
def warned_main(tmp_path_factory):
    return _main(tmp_path_factory.mktemp("warned"), warned=True, more=two_more)


def pull_request(main, tmp_path, change):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    shutil.copytree(main[0], root, symlinks=True)
    shutil.copytree(main[1], cache)
    git(root, "checkout", "-q", "-b", "pr")
    change(root)
    if change not in AFTER and change not in LATER:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "pr")
    return root, cache


# pull requests judged experiment by experiment (besides hyperparameter, new_experiment, two_teams and a_warning)
def renamed(root):  # the file and the name: its Jobs are new files, its old ones gone
    text = (root / STATS_A).read_text().replace("name: stats-a", "name: stats-c")
    (root / STATS_A).unlink()
    (root / STATS_A).with_name("stats-c.yaml").write_text(text)
    render(root)


def archived(root):
    edit(root, STATS_A, "environments:", "archived: true\nenvironments:")
    render(root)


def moved_out_of_staging(root):
    edit(root, STATS_A, "[dev, staging]", "[dev]")
    render(root)


def removed(root):
    (root / STATS_B).unlink()
    render(root)


def comment_only(root):  # the spec file changes, its Jobs do not
    edit(root, STATS_A, "run:", "# a note\nrun:")
    render(root)


def resnet_and_stats(root):
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    edit(root, STATS_A, "cpu: 2", "cpu: 3")
    render(root)


def sweep_renamed(root):  # vision's sweep under another name: four Jobs gone, four new
    text = (root / RESNET).read_text().replace("name: resnet-sweep", "name: resnet-grid")
    (root / RESNET).unlink()
    (root / RESNET).with_name("resnet-grid.yaml").write_text(text)
    render(root)


def bert_still_warned(root):  # on the warned main: five trials at once of nlp's four T4s, not six (KF325 again)
    edit(root, BERT, "parallelism: 6", "parallelism: 5")
    render(root)


IN = [hyperparameter, new_experiment, two_teams, a_warning, renamed, archived, moved_out_of_staging, removed,
      comment_only, resnet_and_stats, sweep_renamed]
IN_WARNED = [bert_still_warned]  # (on the warned main)


# judged whole: changes it does not cover
def other_extension(root):  # stats-a again, as stats-a.yml: a name taken twice (KF321)
    shutil.copy(root / STATS_A, root / "specs/experiments/vision/stats-a.yml")  # (which render refuses)


def job_made_executable(root):  # the same bytes, another mode
    hyperparameter(root)
    job = next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith("job.resnet-sweep-"))
    job.chmod(0o755)


def another_experiments_job_edited(root):  # a change, and a hand edit of a Job no changed experiment renders
    hyperparameter(root)
    job = next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith("job.stats-b-"))
    job.write_text(job.read_text().replace("restartPolicy: Never", "restartPolicy: OnFailure"))


def emptied(root):  # recsys's only experiment in dev: its folder gets the file of nothing
    experiment_removed(root)


def new_job_with_other_bytes(root):  # a new Job file of the change, holding another Job's bytes
    hyperparameter(root)
    new = next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith("job.resnet-sweep-"))
    new.write_bytes(next(p for p in sorted((root / WORKLOADS).iterdir())
                         if p.name.startswith("job.stats-a-")).read_bytes())


def mains_job_file_removed_too(root):  # the change, and a Job of another experiment deleted
    hyperparameter(root)
    next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith("job.stats-b-")).unlink()


def old_job_kept_edited(root):  # a Job the change no longer renders, kept and edited
    job = next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith("job.resnet-sweep-"))
    kept = job.read_text()
    hyperparameter(root)
    job.write_text(kept.replace("restartPolicy: Never", "restartPolicy: OnFailure"))


def archived_twin(root):  # stats-a again, archived, as stats-a.yml: nothing rendered, a name taken twice (KF321)
    (root / "specs/experiments/vision/stats-a.yml").write_text(STATS_SPEC.format(name="stats-a").replace(
        "environments:", "archived: true\nenvironments:"))


def emptied_by_hand(root):  # recsys's only experiment in dev and its Jobs deleted, its folder's file of nothing not
    # written (render would write it)
    (root / STATS).unlink()
    for env in ("dev", "staging"):
        for job in (root / f"overlays/{env}/teams/recsys/workloads").glob("job.feature-stats-*"):
            job.unlink()


def stats_with_an_error(root):
    edit(root, STATS_A, "cpu: 2", "cpu: 2000")


def spec_linked(root):
    (root / STATS_A).unlink()
    (root / STATS_A).symlink_to("stats-b.yaml")


def link_that_reads_as_a_spec(root):  # stats-a changed and rendered, then made a link whose target is its text (git
    # keeps a link as its target: the blob reads as the spec whose Jobs were rendered)
    edit(root, STATS_A, "cpu: 2", "cpu: 3")
    render(root)
    text = (root / STATS_A).read_text()
    (root / STATS_A).unlink()
    os.symlink(text, root / STATS_A)


def fifo_elsewhere_in_the_team(root):  # (after the commit) in the team's platform folder
    _committed(hyperparameter)(root)
    os.mkfifo(root / "overlays/dev/teams/vision/platform/x.yaml")


LATER = {fifo_elsewhere_in_the_team}
WHOLE = [experiment_removed, not_rendered, handwritten_job, generated_file_deleted, generated_file_edited,
         stale_generated_file, link_in_workloads, fifo_in_workloads, an_error, filed_under_another_team, link_in_specs,
         unknown_environment, readme, served_model, team_quota, edited_elsewhere, untracked_elsewhere,
         assumed_unchanged, other_extension, job_made_executable, another_experiments_job_edited, emptied,
         new_job_with_other_bytes, mains_job_file_removed_too, stats_with_an_error, spec_linked,
         fifo_elsewhere_in_the_team, old_job_kept_edited, archived_twin, emptied_by_hand,
         link_that_reads_as_a_spec]


def _judged(root, cache, monkeypatch) -> bool:
    """Whether the gate judged the change experiment by experiment (and said something)."""
    seen = []
    real = within.judge
    monkeypatch.setattr(within, "judge", lambda *args: seen.append(real(*args)) or seen[-1])
    judged = scoped.gate(_opts(root, cache, monkeypatch), "main")
    monkeypatch.setattr(within, "judge", real)
    assert judged is None or seen and seen[-1] is not None  # (never the gate by the team: too few teams)
    return judged is not None


def _same(main, tmp_path, monkeypatch, change) -> tuple[int, str]:
    root, cache = pull_request(main, tmp_path, change)
    assert _judged(root, cache, monkeypatch) is (change in IN or change in IN_WARNED)
    return as_whole(root, cache, main, monkeypatch)


@pytest.mark.parametrize("change", IN + WHOLE, ids=lambda c: c.__name__)
def test_the_gate_experiment_by_experiment_says_what_the_whole_gate_says(main_repo, tmp_path, monkeypatch, change):
    code, output = _same(main_repo, tmp_path, monkeypatch, change)
    assert code == 0 or change not in IN, output


@pytest.mark.parametrize("change", [hyperparameter, renamed, removed, handwritten_job, not_rendered, bert_still_warned],
                         ids=lambda c: c.__name__)
def test_warnings_on_the_base_are_said_as_the_whole_gate_says_them(warned_main, tmp_path, monkeypatch, change):
    code, output = _same(warned_main, tmp_path, monkeypatch, change)
    assert all(c in output for c in ("KF325", "KF336", "KF317", "KF506")), output


def test_a_team_of_fewer_experiments_than_it_waits_for_is_judged_whole(main_repo, tmp_path, monkeypatch):
    root, cache = pull_request(main_repo, tmp_path, resnet_and_stats)
    monkeypatch.setattr(within, "WITHIN_FROM", 3)  # vision has three
    assert _judged(root, cache, monkeypatch)
    monkeypatch.setattr(within, "WITHIN_FROM", 4)
    assert not _judged(root, cache, monkeypatch)


def test_a_job_name_of_another_experiment_on_main_is_taken(main_repo, tmp_path, monkeypatch):
    """The rules find a Job name two experiments give (KF328) in each one's first environment, whichever it is, and
    whatever its kind: a changed experiment's Job named as a file main holds in any environment's workloads folder of
    the team, of any kind, that the experiment did not render there, sends the gate whole (no hash of two real
    experiments' trials is made to collide here: the names are asked of main's tree as given)."""
    root, cache = pull_request(main_repo, tmp_path, hyperparameter)
    listed = gitref.ls_tree(root, "main", ["overlays/staging/teams/vision/workloads"], "-r", "--name-only")
    staged = [p for p in listed.decode().split("\0") if "/job.stats-" in p]
    assert staged
    name = staged[0].rsplit("/", 1)[1].split(".", 1)[1]  # a stats Job's name, as main holds it in staging
    opts = _opts(root, cache, monkeypatch)
    model = scoped.read.read(opts).model
    for where, kind in (("dev", "job"), ("staging", "trainjob"), ("prod", "pytorchjob")):
        made = {f"overlays/{where}/teams/vision/workloads/{kind}.{name}": b""}
        assert within._taken(opts, "main", model, lambda p: False, made, {})
        assert not within._taken(opts, "main", model, lambda p: False, made, {staged[0]: b""})  # (its own file on main)
    assert not within._taken(opts, "main", model, lambda p: False,
                             {"overlays/dev/teams/vision/workloads/job.x-1.yaml": b""}, {})


def test_base_spec_blob_ids_must_be_mains(main_repo, tmp_path, monkeypatch):
    """main's side names each spec file's blob id: a diff of commits whose base side is not that one goes whole."""
    root, cache = pull_request(main_repo, tmp_path, hyperparameter)
    assert _judged(root, cache, monkeypatch)
    real = scoped.recall

    def another(store, k):
        side = real(store, k)
        side.specs[RESNET] = "1" * 40
        return side
    monkeypatch.setattr(scoped, "recall", another)
    assert not _judged(root, cache, monkeypatch)


def test_generated_files_are_as_rendered_only_where_the_commits_differ_exactly_so():
    """_as_rendered, path by path: a file the change renders now is new unless the change rendered it on main (it
    replaces no other file of main), holds the rendered bytes and is a plain file; one it no longer renders is gone;
    and no other generated file differs."""
    job, other, spec = "overlays/dev/teams/t/workloads/job.a.yaml", "overlays/dev/teams/t/workloads/job.b.yaml", \
        "specs/experiments/t/a.yaml"
    a, b, n = "a" * 40, "b" * 40, scopes.NO_ID
    specs = {spec: scopes.Change("100644", "100644", a, b)}

    def ok(changes, gone, now):
        return within._as_rendered({**specs, **changes}, specs, gone, now)

    assert ok({job: scopes.Change(scopes.ABSENT, "100644", n, a)}, {}, {job: a})
    assert not ok({job: scopes.Change("100644", "100644", b, a)}, {}, {job: a})  # (main's other file replaced)
    assert not ok({job: scopes.Change(scopes.ABSENT, "100755", n, a)}, {}, {job: a})
    assert not ok({job: scopes.Change(scopes.ABSENT, "120000", n, a)}, {}, {job: a})
    assert not ok({job: scopes.Change(scopes.ABSENT, "100644", n, b)}, {}, {job: a})
    assert ok({job: scopes.Change("100644", "100644", b, a)}, {job: b}, {job: a})
    assert not ok({job: scopes.Change("100644", "100644", a, a)}, {job: b}, {job: a})  # (not main's file)
    assert ok({job: scopes.Change("100644", scopes.ABSENT, b, n)}, {job: b}, {})
    assert not ok({job: scopes.Change("100644", "100644", b, a)}, {job: b}, {})  # (kept, edited)
    assert ok({}, {job: a}, {job: a})
    assert not ok({other: scopes.Change("100644", "100644", a, b)}, {job: a}, {job: a})
    assert not ok({}, {job: a}, {})  # (a file it no longer renders, still there)


class _Flagged:
    """A policy that finds something in every Job of stats-a (no rule says so: the checks of the built objects are
    the second line, and what they find goes whole)."""

    CODE, TITLE = "KF699", "a test's policy"

    @staticmethod
    def check(obj, ctx):
        if obj.get("metadata", {}).get("labels", {}).get("kflowgen.dev/experiment") == "stats-a":
            yield "/metadata", "flagged", "a test's"


def test_a_finding_of_the_checks_in_a_changed_experiments_jobs_sends_it_whole(main_repo, tmp_path, monkeypatch):
    monkeypatch.setitem(within.policy.POLICIES, "flagged", _Flagged)
    root, cache = pull_request(main_repo, tmp_path, resnet_and_stats)  # (stats-a's Jobs new: checked)
    assert not _judged(root, cache, monkeypatch)
    shutil.rmtree(cache)
    shutil.copytree(main_repo[1], cache)
    code, output = gate(root, cache, monkeypatch, whole=False)
    assert code == 1 and "KF699" in output


def test_a_build_that_fails_sends_it_whole(main_repo, tmp_path, monkeypatch):
    root, cache = pull_request(main_repo, tmp_path, renamed)
    assert _judged(root, cache, monkeypatch)
    failed = scoped.Diagnostic("overlays/dev/teams/vision/workloads", 0, 0, "KF501", "failed", "error", "")
    monkeypatch.setattr(within, "build", lambda *args: (within.Built(), [failed]))
    assert not _judged(root, cache, monkeypatch)


def test_what_experiments_render_is_told_apart_by_their_files(main_repo):
    """_rendered: each experiment's files by its spec file's path and sha256 (none: nothing to tell them by), and
    two that would render one file are not judged here (the rules refuse them: KF328)."""
    opts = scoped.Options.at(main_repo[0], 2, False)
    model = scoped.read.read(opts).model
    stats = [e for e in model.experiments if e.team == "vision" and e.name.startswith("stats-")]
    alone = within.Model(model.platform, model.teams, [], stats[:1])
    files, objects, ids = within._rendered(alone, {"vision"})
    assert sorted(files) == sorted(objects) == sorted(ids) and len(files) == 2  # (dev and staging)
    twin = dataclasses.replace(stats[0], source=dataclasses.replace(stats[0].source, path=STATS_A + ".copy"))
    assert within._rendered(within.Model(model.platform, model.teams, [], [stats[0], twin]), {"vision"}) is None
    unkeyed = dataclasses.replace(stats[0], source=dataclasses.replace(stats[0].source, digest=""))
    assert within._rendered(within.Model(model.platform, model.teams, [], [unkeyed]), {"vision"}) is None
    assert within._rendered(alone, {"nlp"}) is None  # (not a team of the change's)


def test_where_there_are_teams_enough_a_change_not_judged_experiment_by_experiment_is_judged_by_the_team(
        main_repo, tmp_path, monkeypatch):
    """A hand-written Job beside an experiment's change: not judged here; among teams enough for the gate by the team
    (scoped.SCOPED_FROM), that gate judges it (and refuses it, KF504), as the whole gate does."""
    monkeypatch.setattr(scoped, "SCOPED_FROM", 0)
    root, cache = pull_request(main_repo, tmp_path, handwritten_job)
    seen = []
    real = within.judge
    monkeypatch.setattr(within, "judge", lambda *args: seen.append(real(*args)) or seen[-1])
    judged = scoped.gate(_opts(root, cache, monkeypatch), "main")
    assert seen == [None] and judged is not None and any(d.code == "KF504" for d in judged[0].diagnostics)


def test_main_side_of_the_changed_experiments_is_read_with_their_teams_spec_only(main_repo, tmp_path, monkeypatch):
    """The changed experiments as they were are only rendered: read with the platform file and their team's spec and
    models, not every team spec again (10,000 of them in a big repository); as they are, with every team spec (the
    summary counts the teams)."""
    root, cache = pull_request(main_repo, tmp_path, resnet_and_stats)
    seen = []
    real = within.read.read
    monkeypatch.setattr(within.read, "read", lambda opts, snapshot: seen.append(sorted(snapshot)) or real(opts,
                                                                                                        snapshot))
    assert _judged(root, cache, monkeypatch)
    now, then = seen
    assert [p for p in now if p.startswith("specs/teams/")] == ["specs/teams/nlp.yaml", "specs/teams/recsys.yaml",
                                                               "specs/teams/vision.yaml"]
    assert [p for p in then if p.startswith("specs/teams/")] == ["specs/teams/vision.yaml"]
    assert {RESNET, STATS_A} <= set(now) & set(then)
