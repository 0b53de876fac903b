"""The gate in scope (kflowgen.flow.scoped) says exactly what the whole gate says: for each pull request below, on the
example repository whose main was validated and checked (its side, facts and clean trees in the cache), `kflowgen
gate` prints the same, to the byte, with the same exit code, whether it judges in scope or whole; and it judges in
scope exactly when the change is one it covers (some teams' experiments, spec files and generated files, committed,
on a base the cache vouches for; a team spec's change only where the team keeps its environments, every shared file
and the policies' context)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PROJECT, copy_repo
from kflowgen import rules, survey, tools
from kflowgen.cli import app
from kflowgen.diagnostics import Diagnostic
from kflowgen.flow import gitref, pipeline, scope as scopes, scoped
from kflowgen.options import Options

pytestmark = pytest.mark.skipif(isinstance(tools.find("kustomize", PROJECT), Diagnostic), reason="needs kustomize")

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
RESNET = "specs/experiments/vision/resnet-sweep.yaml"
BERT = "specs/experiments/nlp/bert-random.yaml"
STATS = "specs/experiments/recsys/feature-stats.yaml"
WORKLOADS = "overlays/dev/teams/vision/workloads"
HANDWRITTEN = ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: mine, namespace: vision}\n"
               "spec: {template: {spec: {restartPolicy: Never, containers: [{name: x, image: busybox}]}}}\n")


@pytest.fixture(autouse=True)
def in_scope_from_any_size(monkeypatch):
    """The example repository has three teams: fewer than a gate in scope waits for (scoped.SCOPED_FROM)."""
    monkeypatch.setattr(scoped, "SCOPED_FROM", 0)


def git(root: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, text=True).stdout


def edit(root: Path, rel: str, old: str, new: str) -> None:
    text = (root / rel).read_text()
    assert old in text, (rel, old)
    (root / rel).write_text(text.replace(old, new, 1))


def render(root: Path) -> None:
    assert not pipeline.render_to_disk(Options.at(root, 2, False), check_only=False).errors


def workloads_file(root: Path, prefix: str) -> Path:
    return next(p for p in sorted((root / WORKLOADS).iterdir()) if p.name.startswith(prefix))


# pull requests a gate in scope covers: (the change, rendered), each committed on a branch of main
def hyperparameter(root):
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)


def new_experiment(root):
    text = (root / BERT).read_text().replace("name: bert-random", "name: bert-random2")
    (root / BERT).with_name("bert-random2.yaml").write_text(text)
    render(root)


def experiment_removed(root):
    (root / STATS).unlink()
    render(root)


def two_teams(root):
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    edit(root, BERT, "epochs: 3", "epochs: 4")
    render(root)


def a_warning(root):  # six trials at once of one T4 each, where nlp's quota has four: trials queue (KF325)
    edit(root, BERT, "parallelism: 4", "parallelism: 6")
    render(root)


def not_rendered(root):  # drift: the specs changed, the workloads files did not
    edit(root, RESNET, "epochs: 10", "epochs: 12")


def handwritten_job(root):  # a file kflowgen did not write, beside the team's Jobs
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)
    (root / WORKLOADS / "job.mine.yaml").write_text(HANDWRITTEN)


def generated_file_deleted(root):
    workloads_file(root, "job.resnet-sweep-").unlink()


def generated_file_edited(root):  # a generated Job tweaked by hand (its header kept)
    job = workloads_file(root, "job.resnet-sweep-")
    job.write_text(job.read_text().replace("restartPolicy: Never", "restartPolicy: OnFailure"))


def stale_generated_file(root):  # kflowgen's header, no spec renders it
    source = workloads_file(root, "job.resnet-sweep-")
    (root / WORKLOADS / "job.retired.yaml").write_bytes(source.read_bytes())


def link_in_workloads(root):
    (root / WORKLOADS / "job.link.yaml").symlink_to("/etc/passwd")


def fifo_in_workloads(root):  # (after the commit: git holds no FIFO)
    hyperparameter(root)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pr")
    os.mkfifo(root / WORKLOADS / "job.fifo.yaml")


VISION = "specs/teams/vision.yaml"


def team_quota(root):  # a team's quota: its ResourceQuota and ClusterQueue, its experiments judged against it again
    edit(root, VISION, "gpu: {a100: 16}", "gpu: {a100: 12}")
    render(root)


def quota_not_rendered(root):  # drift in the team's platform folder
    edit(root, VISION, "cpu: 256", "cpu: 250")


def quota_and_experiment(root):
    edit(root, VISION, "gpu: {a100: 16}", "gpu: {a100: 12}")
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)


def quota_of_two_teams(root):
    edit(root, VISION, "gpu: {a100: 16}", "gpu: {a100: 12}")
    edit(root, "specs/teams/nlp.yaml", "memory: 1536Gi", "memory: 1Ti")
    render(root)


def quota_platform_file_edited(root):  # the team's generated quota edited by hand beside its spec's change
    team_quota(root)
    quota = root / "overlays/prod/teams/vision/platform/resourcequota.team.yaml"
    quota.write_text(quota.read_text().replace("requests.cpu:", "requests.cpu:  "))


def quota_and_an_admin_binding(root):  # a hand-written RoleBinding to cluster-admin beside the team's quota
    team_quota(root)
    (root / "overlays/prod/teams/vision/platform/rolebinding.mine.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: mine, namespace: vision}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
        "subjects: [{kind: Group, name: everyone, apiGroup: rbac.authorization.k8s.io}]\n")


def quota_beyond_any_cluster(root):  # memory no cluster has: no finding (the platform declares GPUs only), in scope too
    edit(root, VISION, "memory: 2Ti", "memory: 1000Pi")
    render(root)


IN_SCOPE = [fifo_in_workloads, hyperparameter, new_experiment, experiment_removed, two_teams, a_warning, not_rendered,
            handwritten_job, generated_file_deleted, generated_file_edited, stale_generated_file, link_in_workloads,
            team_quota, quota_not_rendered, quota_and_experiment, quota_of_two_teams, quota_platform_file_edited,
            quota_and_an_admin_binding, quota_beyond_any_cluster]


# changes it does not cover: the whole gate runs
def team_spec(root):  # a notebook profile: every environment's hub values
    edit(root, VISION, "cpu: 4\n", "cpu: 6\n")
    render(root)


def profile_not_rendered(root):  # the same, the hub values not rendered: their drift is the whole gate's to say
    edit(root, VISION, "cpu: 4\n", "cpu: 6\n")


def team_owner(root):  # the team's people: the policies' context, every team's overlays judged again
    edit(root, VISION, "alice@example.com", "carol@example.com")
    render(root)


# a team spec's change the rules let through, not rendered (the gate in scope would see the team's own drift): what
# it changes in the policies' context sends the gate whole
def team_joins_staging(root):  # the environment's teams
    edit(root, "specs/teams/nlp.yaml", "  prod:\n",
         "  staging:\n    gpu: {a100: 2, t4: 2}\n    cpu: 48\n    memory: 384Gi\n  prod:\n")


def owner_not_rendered(root):  # the team's people
    edit(root, VISION, "alice@example.com", "carol@example.com")


def owner_case_not_rendered(root):  # the same person to the hub (it signs in lower case), not to the policies
    edit(root, VISION, "alice@example.com", "Alice@example.com")


def quota_where_kueue_queues_not_rendered(root):  # the team's ClusterQueue differs: its drift, outside its folders
    edit(root, VISION, "gpu: {a100: 4}", "gpu: {a100: 2}")


def team_offboarding(root):
    edit(root, VISION, "storage:\n", "offboarding: true\nstorage:\n")
    render(root)


def team_renamed(root):  # the file no longer defines its team (KF301)
    edit(root, VISION, "name: vision", "name: vision2")


def quota_where_kueue_queues(root):  # dev: the team's ClusterQueue, in the environment's shared queueing folder
    edit(root, VISION, "gpu: {a100: 4}", "gpu: {a100: 2}")
    render(root)


def quota_over_capacity(root):  # with the other teams' quotas, more A100s in prod than the cluster has: an error
    edit(root, VISION, "gpu: {a100: 16}", "gpu: {a100: 32}")  # (which render refuses)


def quota_of_no_cpu(root):  # a quantity that could read as "no limit": the schema refuses it
    edit(root, VISION, "cpu: 256", "cpu: 0")


def quota_too_small(root):  # a trial over the new quota: an error
    edit(root, VISION, "cpu: 64", "cpu: 1")


def team_added(root):  # (not rendered)
    (root / "specs/teams/audio.yaml").write_text((root / VISION).read_text().replace("name: vision", "name: audio"))


def served_model(root):
    edit(root, "specs/models/vision/resnet.yaml", "replicas: 3", "replicas: 2")
    render(root)


def readme(root):
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)
    (root / "README.md").write_text("notes\n")


def an_error(root):  # one trial over the team's quota: the rules refuse it, and the whole gate says all it finds
    edit(root, RESNET, "cpu: 8", "cpu: 800")


def platform_overlay(root):  # a hand edit of the team's platform overlay, beside an experiment's
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)
    quota = root / "overlays/prod/teams/vision/platform/resourcequota.team.yaml"
    quota.write_text(quota.read_text() + "# edited\n")


def unknown_environment(root):  # a team's folder in an environment the platform does not define: no team's
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)
    (root / "overlays/evil/teams/vision/workloads").mkdir(parents=True)
    (root / "overlays/evil/teams/vision/workloads/job.mine.yaml").write_text(HANDWRITTEN)


def filed_under_another_team(root):  # nlp's folder, vision's experiment: the rules refuse it (KF321)
    text = (root / RESNET).read_text().replace("name: resnet-sweep", "name: stolen")
    (root / "specs/experiments/nlp/stolen.yaml").write_text(text)


def link_in_specs(root):
    edit(root, RESNET, "epochs: 10", "epochs: 12")
    render(root)
    (root / "specs/experiments/vision/linked.yaml").symlink_to("resnet-sweep.yaml")


def no_such_team(root):  # a folder of a team no spec defines
    (root / "overlays/dev/teams/ghost/workloads").mkdir(parents=True)
    (root / "overlays/dev/teams/ghost/workloads/job.mine.yaml").write_text(HANDWRITTEN)


def _committed(change):
    def then(root):
        change(root)
        git(root, "add", "-A")
        git(root, "commit", "-qm", "pr")
    return then


# a work tree that is not HEAD's where the gate reads it (after the commit of an experiment's change)
def edited_elsewhere(root):
    _committed(hyperparameter)(root)
    edit(root, BERT, "epochs: 3", "epochs: 4")


def untracked_elsewhere(root):
    _committed(hyperparameter)(root)
    (root / "overlays/dev/teams/nlp/workloads/job.mine.yaml").write_text(HANDWRITTEN)


def ignored_elsewhere(root):
    _committed(hyperparameter)(root)
    (root / ".git/info/exclude").write_text("*.mine.yaml\n")
    (root / "overlays/dev/teams/nlp/workloads/job.mine.yaml").write_text(HANDWRITTEN)


def assumed_unchanged(root):
    _committed(hyperparameter)(root)
    job = next(p for p in sorted((root / "overlays/dev/teams/nlp/workloads").iterdir()))
    git(root, "update-index", "--assume-unchanged", str(job.relative_to(root)))
    job.write_text(job.read_text() + "# edited\n")


def line_ends_converted(root):
    _committed(hyperparameter)(root)
    git(root, "config", "core.autocrlf", "true")


def sparse(root):
    _committed(hyperparameter)(root)
    git(root, "config", "core.sparseCheckout", "true")


def staged_elsewhere(root):  # an experiment of another team added to git's index, not committed: on disk as staged
    _committed(hyperparameter)(root)
    shutil.copy(root / BERT, root / "specs/experiments/nlp/bert-again.yaml")
    edit(root, "specs/experiments/nlp/bert-again.yaml", "name: bert-random", "name: bert-again")
    git(root, "add", "specs/experiments/nlp/bert-again.yaml")


def tracked_elsewhere(root):  # a tracked file outside the folders the gate reads (as a CRD file may be) edited
    _committed(hyperparameter)(root)
    (root / "crds/x.yaml").write_text("a: 2\n")


WHOLE = [team_spec, profile_not_rendered, team_owner, team_joins_staging, owner_not_rendered, owner_case_not_rendered,
         team_offboarding, team_renamed, quota_where_kueue_queues, quota_where_kueue_queues_not_rendered,
         quota_over_capacity, quota_of_no_cpu, quota_too_small, team_added, served_model, readme, an_error,
         platform_overlay, unknown_environment, filed_under_another_team, link_in_specs, no_such_team,
         edited_elsewhere, untracked_elsewhere, ignored_elsewhere, assumed_unchanged, line_ends_converted, sparse,
         tracked_elsewhere, staged_elsewhere]
AFTER = {fifo_in_workloads, edited_elsewhere, untracked_elsewhere, ignored_elsewhere, assumed_unchanged,
         line_ends_converted, sparse, tracked_elsewhere, staged_elsewhere}  # (they commit what they change themselves)


WARNINGS = ("KF325", "KF336", "KF317", "KF506")


def _main(tmp: Path, warned: bool, more=None) -> tuple[Path, Path]:
    """The example repository on main (more(root): changed so first, then rendered), committed, validated and
    checked as main's CI does: (repository, cache).
    warned: with warnings main's gate let through, on another team's experiment (KF325), on vision's model (a path
    that ends in a version folder: KF336), on the platform file (no CODEOWNERS: KF317) and on recsys's spec (a team
    being offboarded: KF506), which a gate in scope takes from the base (KF325, KF336; KF506 for a change to
    experiments) and makes again (KF317; KF336 and KF506 for a change to vision's spec)."""
    root = copy_repo(PROJECT, tmp / "repo")
    (root / "crds").mkdir()
    (root / "crds/x.yaml").write_text("a: 1\n")  # (a tracked file outside the folders the gate reads)
    if warned:
        edit(root, BERT, "parallelism: 4", "parallelism: 6")
        edit(root, "specs/models/vision/resnet.yaml", "path: models/resnet", "path: models/resnet/1")
        edit(root, "specs/teams/recsys.yaml", "quota:", "offboarding: true\nquota:")
        (root / ".github/CODEOWNERS").unlink()
    if more:
        more(root)
    if warned or more:
        render(root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main")
    for args in (["validate"], ["render", "--check"]):
        done = CliRunner().invoke(app, [*args, "-C", str(root)], env={"KFLOWGEN_CACHE": str(tmp / "cache")})
        assert done.exit_code == 0, done.output
        assert args != ["validate"] or all(code in done.output for code in WARNINGS) is warned, done.output
    return root, tmp / "cache"


@pytest.fixture(scope="module")
def main_repo(tmp_path_factory) -> tuple[Path, Path]:
    return _main(tmp_path_factory.mktemp("main"), warned=False)


@pytest.fixture(scope="module")
def warned_main(tmp_path_factory) -> tuple[Path, Path]:
    return _main(tmp_path_factory.mktemp("warned"), warned=True)


def pull_request(main_repo, tmp_path, change) -> tuple[Path, Path]:
    """A copy of main with the change committed on a branch, and a copy of main's cache."""
    root, cache = tmp_path / "repo", tmp_path / "cache"
    shutil.copytree(main_repo[0], root, symlinks=True)
    shutil.copytree(main_repo[1], cache)
    git(root, "checkout", "-q", "-b", "pr")
    change(root)
    if change not in AFTER:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "pr")
    return root, cache


def gate(root: Path, cache: Path, monkeypatch, whole: bool) -> tuple[int, str]:
    with monkeypatch.context() as m:
        if whole:
            m.setattr(scoped, "gate", lambda opts, base, listing=None: None)
        done = CliRunner().invoke(app, ["gate", "--base", "main", "-C", str(root)], env={"KFLOWGEN_CACHE": str(cache)})
    return done.exit_code, done.output


def as_whole(root: Path, cache: Path, main, monkeypatch) -> tuple[int, str]:
    """The gate's exit code and output as it judges, asserted the same as the whole gate's; each from a fresh copy of
    main's cache."""
    said = []
    for whole in (False, True):
        shutil.rmtree(cache)
        shutil.copytree(main[1], cache)
        said.append(gate(root, cache, monkeypatch, whole=whole))
    assert said[0] == said[1]
    return said[0]


@pytest.mark.parametrize("change", IN_SCOPE + WHOLE, ids=lambda c: c.__name__)
def test_the_gate_in_scope_says_what_the_whole_gate_says(main_repo, tmp_path, monkeypatch, change):
    root, cache = pull_request(main_repo, tmp_path, change)
    judged = scoped.gate(_opts(root, cache, monkeypatch), "main")
    assert (judged is not None) is (change in IN_SCOPE)
    as_whole(root, cache, main_repo, monkeypatch)


@pytest.mark.parametrize("change", [hyperparameter, served_model, an_error, edited_elsewhere], ids=lambda c: c.__name__)
def test_gits_answers_are_asked_in_scope_read_there_and_stopped_otherwise(main_repo, tmp_path, monkeypatch, change):
    """Whether the work tree is HEAD's is asked of git once the change is found to be one the gate in scope covers
    (not for a served model), beside everything that gate then does: a gate judged in scope reads the answer; one that
    turns out not to be (the rules refuse the change, the work tree is not HEAD's) stops what still runs, and git's
    index is left as it was (no lock file)."""
    root, cache = pull_request(main_repo, tmp_path, change)
    started, stopped = [], []
    real_status, real_stop = scopes.status, survey.stop
    monkeypatch.setattr(scopes, "status", lambda root, **kw: started.append(real_status(root, **kw)) or started[-1])
    monkeypatch.setattr(survey, "stop", lambda runs: stopped.append(runs) or real_stop(runs))
    judged = scoped.gate(_opts(root, cache, monkeypatch), "main")
    assert [len(runs) for runs in started] == ([] if change is served_model else [len(scopes.STATUS)])
    assert [runs for runs in stopped if runs] == ([] if judged is not None else started)
    assert all(run.returncode is not None for runs in started for run, *_ in runs)  # (each one ended, and reaped)
    assert (judged is not None) is (change is hyperparameter)
    assert not (root / ".git/index.lock").exists()


@pytest.mark.parametrize("change", [hyperparameter, served_model, an_error, edited_elsewhere], ids=lambda c: c.__name__)
def test_the_bases_listing_is_stopped_in_scope_and_started_again_when_the_gate_goes_whole(main_repo, tmp_path,
                                                                                          monkeypatch, change):
    """The whole gate's listing of the base (gitref.started, begun as the gate starts) is not read by a gate in
    scope: it is stopped once the change is found to be in scope, and started again, in place, when the gate then
    goes whole (the rules refuse the change, the work tree is not HEAD's); a change never in scope leaves it be."""
    root, cache = pull_request(main_repo, tmp_path, change)
    listing = gitref.started(root, "main")
    first = list(listing)
    judged = scoped.gate(_opts(root, cache, monkeypatch), "main", listing)
    assert (judged is not None) is (change is hyperparameter)
    if change is served_model:
        assert listing == first
    elif judged is not None:
        assert listing == []
    else:
        assert len(listing) == len(first) and not set(map(id, listing)) & set(map(id, first))
        assert survey.results(listing) == survey.results(gitref.started(root, "main"))
    assert all(run.returncode is not None for run, *_ in first if change is not served_model)  # (ended, reaped)
    survey.finish(listing)


def test_stop_ends_what_was_started_without_waiting_for_its_answer(tmp_path):
    runs = survey.start([["sleep", "30"]], behind=True) + survey.start([["true"]])
    runs[1][0].wait()
    survey.stop(runs)
    assert [run.returncode for run, *_ in runs] == [-signal.SIGTERM, 0]
    assert all(out.closed for _, out, *_ in runs)


def test_no_gate_in_scope_with_fewer_other_teams_than_it_waits_for(main_repo, tmp_path, monkeypatch):
    root, cache = pull_request(main_repo, tmp_path, hyperparameter)
    monkeypatch.setattr(scoped, "SCOPED_FROM", 2)  # vision changed; nlp and recsys are two
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is not None
    monkeypatch.setattr(scoped, "SCOPED_FROM", 3)
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None


def test_no_gate_in_scope_without_a_base_checked_by_render_check_nor_without_the_cache(tmp_path, monkeypatch):
    """main validated but not render --checked (its overlays not vouched for): the whole gate; and with --no-cache."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main")
    cache = tmp_path / "cache"
    assert CliRunner().invoke(app, ["validate", "-C", str(root)], env={"KFLOWGEN_CACHE": str(cache)}).exit_code == 0
    git(root, "checkout", "-q", "-b", "pr")
    _committed(hyperparameter)(root)
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None
    assert CliRunner().invoke(app, ["render", "--check", "-C", str(root)], env={"KFLOWGEN_CACHE": str(cache)}
                              ).exit_code == 0  # (the pull request's own trees: not its base's)
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None
    git(root, "checkout", "-q", "main")
    assert CliRunner().invoke(app, ["render", "--check", "-C", str(root)], env={"KFLOWGEN_CACHE": str(cache)}
                              ).exit_code == 0
    git(root, "checkout", "-q", "pr")
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is not None
    assert scoped.gate(Options.at(root, 2, False), "main") is None
    # main with an attributes file (not a spec: main's checks pass), the same change on it: the bytes git holds may
    # not be those on disk, so the whole gate
    git(root, "checkout", "-q", "main")
    (root / "specs/.gitattributes").write_text("*.yaml text\n")
    _committed(lambda r: None)(root)
    for args in (["validate"], ["render", "--check"]):
        assert CliRunner().invoke(app, [*args, "-C", str(root)], env={"KFLOWGEN_CACHE": str(cache)}).exit_code == 0
    git(root, "checkout", "-q", "-b", "pr2")
    _committed(hyperparameter)(root)
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None


@pytest.mark.parametrize("change", [hyperparameter, experiment_removed, handwritten_job, not_rendered, team_quota,
                                    quota_not_rendered], ids=lambda c: c.__name__)
def test_warnings_on_the_base_are_said_as_the_whole_gate_says_them(warned_main, tmp_path, monkeypatch, change):
    test_the_gate_in_scope_says_what_the_whole_gate_says(warned_main, tmp_path, monkeypatch, change)
    root, cache = tmp_path / "repo", tmp_path / "cache"
    code, output = gate(root, cache, monkeypatch, whole=False)
    assert all(code in output for code in WARNINGS)


def _opts(root: Path, cache: Path, monkeypatch) -> Options:
    monkeypatch.setenv("KFLOWGEN_CACHE", str(cache))
    return Options.at(root, 2, True)


def test_a_base_side_a_diff_made_from_git_is_not_taken_for_mains_validate(tmp_path, monkeypatch):
    """main render --checked but never validated: the gate (whole) makes main's side from git and keeps it, without
    what only validate finds (its warnings, the tools that checked). The next gate must not take that side as main's
    run: it says what the whole gate says, and once main is validated the gate judges in scope."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    (root / ".github/CODEOWNERS").unlink()  # a warning (KF317) only validate's checks find
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main")
    cache = tmp_path / "cache"
    env = {"KFLOWGEN_CACHE": str(cache)}
    assert CliRunner().invoke(app, ["render", "--check", "-C", str(root)], env=env).exit_code == 0
    git(root, "checkout", "-q", "-b", "pr")
    _committed(hyperparameter)(root)
    first = CliRunner().invoke(app, ["gate", "--base", "main", "-C", str(root)], env=env)
    assert "KF317" in first.output
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None
    assert CliRunner().invoke(app, ["gate", "--base", "main", "-C", str(root)], env=env).output == first.output
    git(root, "checkout", "-q", "main")
    assert CliRunner().invoke(app, ["validate", "-C", str(root)], env=env).exit_code == 0
    git(root, "checkout", "-q", "pr")
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is not None
    assert CliRunner().invoke(app, ["gate", "--base", "main", "-C", str(root)], env=env).output == first.output


def test_a_team_specs_change_checks_the_other_teams_specs_apart_from_the_cache(main_repo, tmp_path, monkeypatch):
    """The rules that look at each team's specs apart (rules.LOCAL) run on the changed team's alone: the other teams'
    parts, which their served models (not loaded in scope) are part of, come from main's run by those models' sha256
    (main's facts); and when the cache does not hold such a part, the whole gate runs."""
    root, cache = pull_request(main_repo, tmp_path, team_quota)
    seen = []
    for name, (rule, local, across) in list(rules.LOCAL.items()):
        def spy(model, teams, served, local=local):
            seen.append(tuple(t.name for t in teams))
            return local(model, teams, served)
        monkeypatch.setitem(rules.LOCAL, name, (rule, spy, across))
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is not None
    assert set(seen) == {("vision",)}
    shutil.rmtree(cache)
    shutil.copytree(main_repo[1], cache)
    monkeypatch.setattr(rules, "_recalled", lambda memo, store, k: None)
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None


def test_a_team_spec_change_beyond_its_team_goes_whole_before_the_rules_run(main_repo, tmp_path, monkeypatch):
    """Whether the team stays itself is asked before the rules across every team spec run (0.35 s at 10,000 teams):
    a change that goes whole anyway does not pay for them."""
    root, cache = pull_request(main_repo, tmp_path, owner_not_rendered)
    monkeypatch.setattr(rules, "checked", lambda *args, **kw: pytest.fail("the rules ran"))
    assert scoped.gate(_opts(root, cache, monkeypatch), "main") is None
