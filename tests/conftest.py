"""Shared fixtures: the project root, the upstream data beside it, scratch copies of example repositories."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
UPSTREAM = SHARED / "upstream"
EXAMPLES = Path(__file__).resolve().parent / "examples"

# The suite's own result cache: shared by its tests (keys are content hashes), never the developer's.
os.environ.setdefault("KFLOWGEN_CACHE", tempfile.mkdtemp(prefix="kflowgen-test-cache-"))


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
    """Copy a repository's specs, bases and overlays to dest, with ../shared beside it as in the project."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("specs", "bases", "overlays"):
        if (src / name).exists():
            shutil.copytree(src / name, dest / name, symlinks=True)
    shared = dest.parent / "shared"
    if not shared.exists():
        shared.symlink_to(SHARED, target_is_directory=True)
    return dest


@pytest.fixture
def example_repo(tmp_path) -> Path:
    """A scratch copy of the project's example repository (specs, bases, committed overlays)."""
    return copy_repo(PROJECT, tmp_path / "repo")
