"""Crash safety: a render killed at any moment leaves overlays/ as the old tree or the new one, never a mix;
removed teams keep their namespace and data, and validate says how to remove them on purpose."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT, tree_hash

sys.path.insert(0, str(PROJECT / "bench"))
from generate import generate  # noqa: E402

from kflowgen.cli import app
from typer.testing import CliRunner  # noqa: E402


def overlays_hash(root: Path) -> str:
    return tree_hash(root / "overlays")


def render(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kflowgen", "render", "-C", str(root), "--format", "text"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A 40-team repository rendered at version A, and the hash of its rendering at version B."""
    root = generate(tmp_path_factory.mktemp("crash") / "repo", 40, experiments=2, models=1)
    assert render(root).wait() == 0
    old = overlays_hash(root)
    for team in (root / "specs/teams").iterdir():
        team.write_text(team.read_text().replace("cpu: 64", "cpu: 65"))
    probe = generate(root.parent / "probe", 40, experiments=2, models=1)
    for team in (probe / "specs/teams").iterdir():
        team.write_text(team.read_text().replace("cpu: 64", "cpu: 65"))
    start = time.monotonic()
    assert render(probe).wait() == 0
    return root, old, overlays_hash(probe), time.monotonic() - start


def test_a_killed_render_leaves_the_old_tree_or_the_new_one(trees):
    root, old, new, duration = trees
    assert old != new
    rng = random.Random(20261123)
    seen = set()
    rounds = 0
    while rounds < 12 or (len(seen) < 2 and rounds < 40):  # until kills have landed before and after the swap
        rounds += 1
        proc = render(root)
        time.sleep(rng.uniform(0, 2 * duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = overlays_hash(root)
        assert now in (old, new), "overlays/ is a mix of the old and the new tree"
        seen.add("new" if now == new else "old")
        if now == new:  # go back to the old specs' tree for the next round
            for team in (root / "specs/teams").iterdir():
                team.write_text(team.read_text().replace("cpu: 65", "cpu: 64"))
            assert render(root).wait() == 0
            old, new = new, old
    assert seen == {"old", "new"}  # kills landed both before and after the swap
    assert render(root).wait() == 0  # a later render cleans any leftover scratch folder
    assert not list(root.glob(".kflowgen-swap-*"))


def test_removing_a_team_keeps_its_namespace_and_says_how_to_delete_it(example_repo):
    runner = CliRunner()
    (example_repo / "specs/teams/recsys.yaml").unlink()
    (example_repo / "specs/models/recsys/ranker.yaml").unlink()
    (example_repo / "specs/experiments/recsys/feature-stats.yaml").unlink()
    result = runner.invoke(app, ["validate", "-C", str(example_repo), "--format", "text"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == [
        "overlays/dev/teams/recsys/platform/namespace.yaml:1:1: warning [KF505] team recsys leaves dev: Argo CD "
        "keeps its Namespace recsys and PersistentVolumeClaim nas (Prune=false, Delete=false), and its quota, "
        "network policy, access and training Jobs (Delete=false)",
        "    fix: to delete them on purpose, back up the team NAS, then run: kubectl --server "
        "https://dev.k8s.example.com delete namespace recsys"]
    assert sum("[KF505]" in line for line in lines) == 3  # dev, staging, prod


def test_the_namespaces_on_disk_of_teams_no_spec_renders_are_those_a_glob_finds(example_repo, tmp_path):
    """departures lists overlays/<env>/teams/ instead of globbing it: the same namespace files, links followed (a
    team folder that is a link, a link to a namespace file), hidden names included, dangling links and a platform
    that is a file left out."""
    from kflowgen.flow import pipeline
    from kflowgen.options import Options
    from kflowgen.targets import render
    from kflowgen.write.departures import departures

    model, _ = pipeline.load(Options(example_repo))
    files = render(model)
    teams = example_repo / "overlays/dev/teams"
    elsewhere = tmp_path / "elsewhere/platform"
    elsewhere.mkdir(parents=True)
    (elsewhere / "namespace.yaml").write_text("kind: Namespace\n")
    (teams / "linked").symlink_to(elsewhere.parent, target_is_directory=True)
    for name in (".hidden", "filed", "dangling", "gone"):
        (teams / name / "platform").mkdir(parents=True)
    (teams / ".hidden/platform/namespace.yaml").write_text("kind: Namespace\n")
    (teams / "filed/platform").rmdir()
    (teams / "filed/platform").write_text("")
    (teams / "dangling/platform/namespace.yaml").symlink_to(tmp_path / "nothing")
    (teams / "gone/platform/namespace.yaml").symlink_to(elsewhere / "namespace.yaml")
    (teams / "file.yaml").write_text("")
    envs = list(model.platform.environments)
    globbed = [p.relative_to(example_repo).as_posix() for env in envs
               for p in (example_repo / "overlays" / env / "teams").glob("*/platform/namespace.yaml")]
    found = departures(example_repo, model, files, envs)
    assert found == departures(example_repo, model, files, envs, globbed)
    assert [d.path.split("/")[3] for d in found] == [".hidden", "gone", "linked"]


WORKERS = """
import os, sys, time
from kflowgen import parallel

def slow(state, batch):
    os.write(1, b"%d\\n" % os.getpid())  # one write: the workers' lines do not interleave
    time.sleep(0.05)
    return batch

parallel.fan_out(slow, list(range(100000)), 2)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
def test_a_killed_run_leaves_no_worker_behind():
    """Forked workers end with the process that forked them, even when it is killed with SIGKILL (which it cannot
    catch): left alone, each would wait forever on its own task pipe."""
    run = subprocess.Popen([sys.executable, "-c", WORKERS], stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    assert run.stdout is not None
    workers: set[int] = set()
    while len(workers) < 2:
        line = run.stdout.readline()
        assert line, "the run ended before two workers started"
        workers.add(int(line))
    run.kill()
    run.wait()

    def alive() -> list[int]:
        out = []
        for pid in workers:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                out.append(pid)
        return out

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive()
    for pid in left:  # do not leak them from the test either
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_renders_at_the_same_time_each_write_a_whole_tree(tmp_path):
    """Writes in one repository take turns: a render never removes another's scratch folder as a leftover, so
    every render succeeds and overlays/ ends as one whole rendering."""
    root = generate(tmp_path / "repo", 40, experiments=2, models=1)
    assert render(root).wait() == 0
    for team in (root / "specs/teams").iterdir():
        team.write_text(team.read_text().replace("cpu: 64", "cpu: 65"))
    runs = []
    for i in range(6):
        runs.append(render(root))
        time.sleep(0.05 * i)
    assert [run.wait() for run in runs] == [0] * 6
    check = subprocess.run([sys.executable, "-m", "kflowgen", "render", "--check", "-C", str(root)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert not list(root.glob(".kflowgen-swap-*"))
