"""Shared fixtures: the project root, the upstream data beside it, scratch copies of example repositories."""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
UPSTREAM = SHARED / "upstream"
EXAMPLES = Path(__file__).resolve().parent / "examples"

# The suite's own result cache: shared by its tests (keys are content hashes), never the developer's. The process
# that makes it removes it when the run ends (test workers inherit it and leave it alone).
if "KFLOWGEN_CACHE" not in os.environ:
    os.environ["KFLOWGEN_CACHE"] = tempfile.mkdtemp(prefix="kflowgen-test-cache-")
    atexit.register(shutil.rmtree, os.environ["KFLOWGEN_CACHE"], ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite expected outputs and golden trees from what kflowgen produces now")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


def tree_hash(root: Path) -> str:
    """One hash over every file's path and bytes under root (to prove a command changed nothing)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".kflowgen" not in p.parts:
            h.update(os.fsencode(p.relative_to(root)) + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def copy_repo(src: Path, dest: Path) -> Path:
    """Copy a repository's specs, bases, overlays and CODEOWNERS to dest, with ../shared beside it as in the project."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("specs", "bases", "overlays"):
        if (src / name).exists():
            shutil.copytree(src / name, dest / name, symlinks=True)
    if (src / ".github/CODEOWNERS").exists():
        (dest / ".github").mkdir(exist_ok=True)
        shutil.copy(src / ".github/CODEOWNERS", dest / ".github/CODEOWNERS")
    shared = dest.parent / "shared"
    if SHARED.is_dir() and not shared.exists() and not shared.is_symlink():  # a user's clone has none: no link
        shared.symlink_to(SHARED, target_is_directory=True)
    return dest


@pytest.fixture
def example_repo(tmp_path) -> Path:
    """A scratch copy of the project's example repository (specs, bases, committed overlays)."""
    return copy_repo(PROJECT, tmp_path / "repo")


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


def git(root: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def committed_example(tmp_path) -> Path:
    """A git copy of the example repository, committed: a pull request's base."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def mutations(obj) -> list:
    """Copies of obj with one thing broken or changed at each place: an unknown key in each mapping, each key
    removed, each scalar swapped for other types and edge values, each list emptied, doubled or made a mapping."""
    out: list = []

    def walk(node, put) -> None:
        if isinstance(node, dict):
            out.append(put({**node, "bogusField": 1}))
            out.append(put([node]))
            for key, value in node.items():
                out.append(put({k: v for k, v in node.items() if k != key}))
                walk(value, lambda new, key=key: put({**node, key: new}))
        elif isinstance(node, list):
            out.extend([put([]), put(node + node), put({"item": node})])
            for i, value in enumerate(node):
                walk(value, lambda new, i=i: put(node[:i] + [new] + node[i + 1:]))
        else:
            swaps = {str: [7, "", None, "x" * 300, "1.5Gi", "-1", "a\x85b", "a\x1cb", "end\n", "\u00e9", "-0x10",
                           "1:30.5"],
                     bool: ["true", 0], int: ["7", -1, 1.5, 0, 2 ** 40, 6.0],
                     float: [1, "1.5"], type(None): ["", 0, {}]}
            out.extend(put(v) for v in swaps[type(node)])

    walk(obj, lambda new: new)
    return [json.loads(json.dumps(m)) for m in out]


def plant_base_binding(root: Path, role: str, group: str) -> None:
    """A hand-kept RoleBinding in bases/team (built into every team's platform overlay): role to group."""
    (root / "bases/team/rolebinding.planted.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: planted}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n"
        f"subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: '{group}'}}]\n")
    kustomization = root / "bases/team/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "- rolebinding.planted.yaml\n")


@pytest.fixture(scope="module")
def built_example():
    """The example repository loaded, rendered and built: (model, files, built)."""
    from kflowgen.build import build, overlays_of
    from kflowgen.flow import pipeline
    from kflowgen.options import Options
    from kflowgen.targets import render

    model, diags = pipeline.load(Options(PROJECT))
    assert model is not None, diags
    files = render(model)
    built, diags = build(Options(PROJECT, 2), files, overlays_of(files))
    assert diags == []
    return model, files, built
