"""The GitHub workflows (this repository's, and the one `kflowgen init` writes) pass actionlint and run the gate."""
from __future__ import annotations

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
    assert f"kustomize {KUSTOMIZE[2]}" in text and f"kubeconform {KUBECONFORM[2]}" in text
    steps = yaml.safe_load(text)["jobs"]["gate"]["steps"]
    on_push = [s["run"] for s in steps if "run" in s and s.get("if") == "github.event_name == 'push'"]
    on_pr = [s["run"] for s in steps if "run" in s and s.get("if") == "github.event_name == 'pull_request'"]
    assert any("kflowgen validate" in r for r in on_push) and any("render --check" in r for r in on_push)
    assert on_pr == ['kflowgen gate --base "origin/$BASE_REF" --format github --markdown "$GITHUB_STEP_SUMMARY"']
