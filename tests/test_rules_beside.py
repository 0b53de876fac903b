"""With many spec files, the rules across them run on a forked process while this one renders (flow.load_then): the
two stages take the two cores. What a run reports is exactly what the rules run first, then the render, report:
the same findings in the same order, the same model, the same cache counts, the render's result only when the rules
pass, and a render that fails on a model the rules refuse is not what is reported. A rules process that fails leaves
the rules to this process; none is forked with one job, with few spec files, or while another thread runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import PROJECT
from kflowgen import cache, parallel, rules
from kflowgen.flow import load as loading, pipeline
from kflowgen.options import Options
from kflowgen.report.changes import render_json
from kflowgen.specs import read

sys.path.insert(0, str(PROJECT / "bench"))
from generate import generate  # noqa: E402


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """A repository of more spec files than parallel.PARALLEL_FROM (50 teams, 3 experiments and a model each)."""
    root = generate(tmp_path_factory.mktemp("beside") / "repo", 50, experiments=3, models=1)
    assert len(list((root / "specs").rglob("*.yaml"))) >= parallel.PARALLEL_FROM
    return root


@pytest.fixture
def where(tmp_path, monkeypatch) -> Path:
    """The pids the rules ran in (rules.made: the cache did not hold their findings), one line each (written to a
    file: a forked process's list would stay its own)."""
    out, real = tmp_path / "pids", rules.made

    def spy(model, store, k, *served):
        with out.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(model, store, k, *served)

    monkeypatch.setattr(rules, "made", spy)
    return out


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def rendered_here(model) -> tuple[int, int]:
    return os.getpid(), len(model.teams)


def first(root: Path, store: cache.Cache) -> list:
    """The findings of the rules run first, here, as load ran them before it could run them beside: read the specs,
    then rules.checked, every cache hit and miss counted by the cache itself."""
    specs = read.read(Options(root, jobs=2, store=store))
    return specs.diagnostics + rules.checked(specs.model, specs.sources, store)


def collide(root: Path, tmp_path: Path) -> Path:
    """A copy of root with rule errors: across teams (two team files name the same team), and in one team's
    experiment (a GPU type the platform does not define: kept in the cache with that team's findings)."""
    copy = tmp_path / "collide"
    shutil.copytree(root, copy)
    team = copy / "specs/teams/team-0001.yaml"
    team.write_text(team.read_text().replace("name: team-0001", "name: team-0000", 1))
    experiment = copy / "specs/experiments/team-0003/exp-0.yaml"
    experiment.write_text(experiment.read_text().replace("type: a100", "type: h100", 1))
    return copy


def test_the_rules_run_beside_the_render_and_find_what_they_find_run_first(many, where, tmp_path):
    opts = Options(many, jobs=2, store=cache.Cache(tmp_path / "a"))
    model, diags, made = loading.load_then(opts, rendered_here)
    assert model is not None and made == (os.getpid(), 50)  # rendered here, on the model the rules passed
    assert len(pids(where)) == 1 and pids(where)[0] != os.getpid()  # the rules ran on a forked process
    alone, found = loading.load(Options(many, jobs=2, store=cache.Cache(tmp_path / "b")))
    assert pids(where)[1:] == [os.getpid()]  # load alone (nothing beside) runs them here
    assert diags == found and alone is not None and [t.name for t in model.teams] == [t.name for t in alone.teams]


@pytest.mark.parametrize("jobs, teams", [(1, 50), (2, 5)])
def test_no_process_is_forked_with_one_job_or_few_spec_files(jobs, teams, where, tmp_path):
    root = generate(tmp_path / "repo", teams, experiments=3, models=1)
    model, _, made = loading.load_then(Options(root, jobs=jobs), rendered_here)
    assert model is not None and made == (os.getpid(), teams) and pids(where) == [os.getpid()]


def test_findings_and_cache_counts_are_those_of_the_rules_run_first_and_nothing_is_rendered_on_an_error(
        many, where, tmp_path):
    bad = collide(many, tmp_path)
    beside, here = cache.Cache(tmp_path / "beside"), cache.Cache(tmp_path / "here")
    rendered = []
    model, diags, made = loading.load_then(Options(bad, jobs=2, store=beside),
                                           lambda m: rendered.append(os.getpid()) or "made")
    assert pids(where)[0] != os.getpid() and rendered == [os.getpid()]  # rendered beside the rules, and dropped:
    assert model is None and made is None and any(d.severity == "error" for d in diags)
    assert diags == first(bad, here)  # the same findings, in the same order
    assert (beside.hits, beside.misses) == (here.hits, here.misses) and beside.misses > 0
    again = cache.Cache(tmp_path / "beside")  # what the forked rules kept is found by the next run, which then
    assert loading.load_then(Options(bad, jobs=2, store=again), rendered_here)[1] == diags  # forks nothing
    assert again.misses == 0 and again.hits == beside.misses and len(pids(where)) == 2
    team = bad / "specs/teams/team-0007.yaml"  # one team changed: the forked rules find the others' in the cache
    team.write_text(team.read_text().replace("synthetic team 7", "synthetic team seven", 1))
    beside, here = cache.Cache(tmp_path / "beside"), cache.Cache(tmp_path / "here")
    assert loading.load_then(Options(bad, jobs=2, store=beside), rendered_here)[1] == diags == first(bad, here)
    assert pids(where)[2] != os.getpid() and "KF323" in {d.code for d in diags}
    assert (beside.hits, beside.misses) == (here.hits, here.misses)
    for entry in [*(tmp_path / "beside/rules").rglob("*"), *(tmp_path / "here/rules").rglob("*")]:
        if entry.is_file() and b"KF323" in entry.read_bytes():  # damaged: missed, and the findings made again
            entry.write_bytes(entry.read_bytes().replace(b"KF323", b"KF999"))
    beside, here = cache.Cache(tmp_path / "beside"), cache.Cache(tmp_path / "here")
    assert loading.load_then(Options(bad, jobs=2, store=beside), rendered_here)[1] == diags == first(bad, here)
    assert pids(where)[4] != os.getpid() and (beside.hits, beside.misses) == (here.hits, here.misses)


def test_a_render_that_fails_is_not_reported_when_the_rules_refuse_the_model(many, where, tmp_path):
    def fails(model):
        raise KeyError("a model the renderer cannot render")

    bad = collide(many, tmp_path)
    model, diags, made = loading.load_then(Options(bad, jobs=2), fails)
    assert model is None and made is None and pids(where)[0] != os.getpid()
    assert [d.code for d in diags if d.severity == "error"]  # the rules' findings, not the renderer's exception
    with pytest.raises(KeyError, match="cannot render"):  # on a model the rules pass, it is raised
        loading.load_then(Options(many, jobs=2), fails)
    store = cache.Cache(tmp_path / "c")  # and so it is when their findings come from the cache (nothing forked)
    loading.load_then(Options(many, jobs=2, store=store), rendered_here)
    with pytest.raises(KeyError, match="cannot render"):
        loading.load_then(Options(many, jobs=2, store=store), fails)


def test_an_interrupted_render_leaves_no_rules_process_behind(many, where):
    """Ctrl-C (or any BaseException) during the render: the rules' process is killed and reaped, not left running
    or as a zombie."""
    def interrupted(model):
        for _ in range(500):  # until the rules' process has started its work
            if pids(where):
                break
            time.sleep(0.01)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loading.load_then(Options(many, jobs=2), interrupted)
    child = pids(where)[0]
    assert child != os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped already


def test_an_unknown_environment_is_reported_without_a_render(many, where, monkeypatch):
    rendered = []
    monkeypatch.setattr(pipeline, "render_stage", lambda opts, model: rendered.append(model))
    for jobs in (2, 1):
        report = pipeline.validate(Options(many, jobs=jobs), env="nope")
        assert [d.code for d in report.errors] == ["KF303"] and rendered == []


@pytest.mark.parametrize("how, refused", [("raises", True), ("exits", True), ("raises", False)])
def test_a_rules_process_that_fails_leaves_the_rules_to_this_process(many, tmp_path, monkeypatch, how, refused):
    parent, real, ran = os.getpid(), rules.made, []

    def failing_in_the_child(model, store, k, *served):
        if os.getpid() != parent:
            if how == "exits":
                os._exit(3)
            raise RuntimeError("the rules' process fails")
        ran.append(os.getpid())
        return real(model, store, k, *served)

    monkeypatch.setattr(rules, "made", failing_in_the_child)
    bad = collide(many, tmp_path) if refused else many
    store = cache.Cache(tmp_path / "c")
    model, diags, made = loading.load_then(Options(bad, jobs=2, store=store), rendered_here)
    assert ran == [parent] and (model is None and made is None if refused else made == (parent, 50))
    monkeypatch.setattr(rules, "made", real)
    here = cache.Cache(tmp_path / "d")
    assert first(bad, here) == diags and (store.hits, store.misses) == (here.hits, here.misses)


def test_no_process_is_forked_while_another_thread_runs(many, where):
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        model, _, made = loading.load_then(Options(many, jobs=2), rendered_here)
    finally:
        stop.set()
        waiting.join()
    assert model is not None and made == (os.getpid(), 50) and pids(where) == [os.getpid()]


def test_validate_with_the_rules_beside_reports_what_one_job_reports(many, where, tmp_path):
    """The whole validate (its findings and summary) with the rules beside the render and with one job."""
    bad = collide(many, tmp_path)
    for root in (many, bad):
        two = pipeline.validate(Options(root, jobs=2))
        one = pipeline.validate(Options(root, jobs=1))
        assert two.diagnostics == one.diagnostics and two.summary == one.summary
    ran = pids(where)  # (without a cache, each validate makes the rules: beside with two jobs, here with one)
    assert len(ran) == 4 and os.getpid() not in ran[0::2] and ran[1::2] == [os.getpid()] * 2


def test_render_and_build_with_the_rules_beside_give_what_one_job_gives(many, tmp_path):
    """render (writing overlays/), render --check and build of an environment, forked and not: the same bytes."""
    trees = {}
    for jobs in (2, 1):
        root = tmp_path / f"jobs{jobs}"
        shutil.copytree(many, root)
        assert not pipeline.render_to_disk(Options(root, jobs=jobs), check_only=False).errors
        check = pipeline.render_to_disk(Options(root, jobs=jobs), check_only=True)
        built, report = pipeline.build_environment(Options(root, jobs=jobs), "dev", "team-0002")
        assert not check.errors and not report.errors and built
        trees[jobs] = ({p.relative_to(root): p.read_bytes() for p in (root / "overlays").rglob("*") if p.is_file()},
                       check.summary, built)
    assert trees[2] == trees[1]


def test_the_gate_with_the_rules_beside_reports_what_one_job_reports(many, where, tmp_path):
    """The gate of a one-team change (the head checked, the base side made from git, both loaded with the rules
    beside): the same findings, summary and diff as with one job."""
    root = tmp_path / "repo"
    shutil.copytree(many, root)
    assert not pipeline.render_to_disk(Options(root, jobs=1), check_only=False).errors
    for git in (["init", "-q", "-b", "main"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "main"]):
        subprocess.run(["git", "-C", str(root), *git], check=True, capture_output=True)
    team = root / "specs/teams/team-0001.yaml"
    team.write_text(team.read_text().replace("cpu: 128,", "cpu: 130,", 1))
    assert not pipeline.render_to_disk(Options(root, jobs=1), check_only=False).errors
    before = len(pids(where))
    gated = {}
    for jobs in (2, 1):
        report, changes = pipeline.gate(Options(root, jobs=jobs), "HEAD")
        assert changes is not None and not report.errors
        gated[jobs] = report.diagnostics, report.summary, render_json(changes)
    assert gated[2] == gated[1] and "cpu" in gated[2][2]
    forked = [pid for pid in pids(where)[before:] if pid != os.getpid()]
    assert len(forked) == 2  # with two jobs, the head's rules and the base's ran beside their renders
