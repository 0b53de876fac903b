"""The GitHub workflows (this repository's, and the one `kflowgen init` writes) pass actionlint and run the gate."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from conftest import PROJECT
from kflowgen.cli import app
from kflowgen.tools import KUBECONFORM, KUSTOMIZE

ACTIONLINT = PROJECT / ".tools" / "bin" / "actionlint"
pytestmark = pytest.mark.skipif(not ACTIONLINT.exists(), reason="actionlint not built: run make setup")


def actionlint(*files):
    out = subprocess.run([str(ACTIONLINT), "-no-color", *map(str, files)], capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def test_project_workflows_pass_actionlint():
    files = sorted((PROJECT / ".github" / "workflows").glob("*.yaml"))
    assert len(files) == 2
    assert actionlint(*files) == (0, "")


def test_actionlint_can_fail(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    assert actionlint(bad)[0] == 1


def test_init_workflow_passes_actionlint_and_pins_the_tools(tmp_path):
    dest = tmp_path / "repo"
    assert CliRunner().invoke(app, ["init", str(dest)]).exit_code in (0, 1)
    workflow = dest / ".github/workflows/kflowgen.yaml"
    assert actionlint(workflow) == (0, "")
    text = workflow.read_text()
    assert f"kustomize {KUSTOMIZE.version}" in text and f"kubeconform {KUBECONFORM.version}" in text
    steps = yaml.safe_load(text)["jobs"]["gate"]["steps"]
    on_push = [s["run"] for s in steps if "run" in s and s.get("if") == "github.event_name == 'push'"]
    on_pr = [s["run"] for s in steps if "run" in s and s.get("if") == "github.event_name == 'pull_request'"]
    assert any("kflowgen validate" in r for r in on_push) and any("render --check" in r for r in on_push)
    assert on_pr == ['kflowgen gate --base "origin/$BASE_REF" --format github --markdown "$RUNNER_TEMP/kflowgen-gate.md"']
    commenting = [s for s in steps if s.get("name") == "Comment on the pull request"]
    assert len(commenting) == 1 and "<!-- kflowgen gate -->" in commenting[0]["run"]
    assert yaml.safe_load(text)["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_the_init_workflow_runs_as_written_from_a_fresh_virtual_environment(tmp_path):
    """The workflow `kflowgen init` writes, step by step as GitHub runs it (bash -e, the step's env), in a new virtual
    environment where `pip install "kflowgen==X"` finds this kflowgen's wheel (standing in for the package index;
    its dependencies come from the index), on the pushed main branch and on a pull request: no ../shared, no checkout
    of kflowgen."""
    import os
    import sys

    wheels, venv, repo, source = tmp_path / "wheels", tmp_path / "venv", tmp_path / "repo", tmp_path / "source"
    # the wheel is made from the files a clone has (and work not yet committed), never from leftovers of earlier
    # builds in the checkout (setuptools' build/ keeps modules that have since moved)
    listed = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (PROJECT / rel).is_file() or (PROJECT / rel).is_symlink():  # kflowgen/bases, kflowgen/schemas are links
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / rel, source / rel, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PIP_FIND_LINKS": str(wheels),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "CI": "true", "KFLOWGEN_CACHE": str(tmp_path / "c")}
    env.pop("KFLOWGEN_TOOLS", None)
    env.pop("VIRTUAL_ENV", None)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    steps = None

    def step(name: str, event: str, extra: dict | None = None) -> str:
        chosen = [s for s in steps if s.get("name") == name]
        assert len(chosen) == 1 and chosen[0].get("if") in ((None,) if event == "any" else (
            f"github.event_name == '{event}'", f"always() && github.event_name == '{event}'")), name
        out = subprocess.run(["bash", "-e", "-c", chosen[0]["run"]], cwd=repo, env={**env, **(extra or {})},
                             capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, (name, out.stdout[-3000:], out.stderr[-3000:])
        return out.stdout

    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(next(wheels.glob("*.whl")))], check=True, env=env)
    assert subprocess.run([str(venv / "bin/kflowgen"), "init", str(repo)], env=env).returncode == 0
    subprocess.run([*git, "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "init"], check=True)
    subprocess.run([str(venv / "bin/pip"), "uninstall", "-q", "-y", "kflowgen"], check=True, env=env)
    steps = yaml.safe_load((repo / ".github/workflows/kflowgen.yaml").read_text())["jobs"]["gate"]["steps"]
    step("Install kflowgen and its pinned tools", "any")
    assert "kflowgen: ok" in step("Validate specs and built manifests", "push")
    step("Generated overlays are up to date", "push")
    subprocess.run([*git, "-C", str(repo), "update-ref", "refs/remotes/origin/main", "HEAD"], check=True)
    team = repo / "specs/teams/example.yaml"
    team.write_text(team.read_text().replace("memory: 32Gi", "memory: 48Gi", 1))
    subprocess.run([str(venv / "bin/kflowgen"), "render", "-C", str(repo)], check=True, env=env, capture_output=True)
    temp = {"BASE_REF": "main", "RUNNER_TEMP": str(tmp_path)}
    out = step("Gate (validate, render --check, diff against the base branch)", "pull_request", temp)
    step("Job summary", "pull_request", temp)
    summary = (tmp_path / "summary.md").read_text()
    assert "## ✅ kflowgen gate: passed" in summary and "memory" in summary and "::error" not in out
