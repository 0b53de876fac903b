"""The writer, the only code that changes the repository: compare rendered files with disk, or write them.

A write builds the complete new overlays tree in a temporary folder beside it (unchanged and hand-written files
are hard links, so only changed files cost anything) and then swaps the two folders in one atomic step
(renameat2 RENAME_EXCHANGE on Linux). Killed at any moment, the repository holds either the old tree or the
new one; a leftover temporary folder is removed by the next run.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import parallel
from .diagnostics import Diagnostic, error, warning
from .emit import is_generated

OWNED = "overlays"  # the folder kflowgen owns: every generated file lives here
SCRATCH = ".kflowgen-swap-"


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # generated files no spec produces any more
    foreign: list[str] = field(default_factory=list)  # hand-written files inside the owned folder: kept, reported
    unchanged: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _existing(root: Path) -> list[str]:
    out = []
    top = str(root)
    for dirpath, dirs, names in os.walk(os.path.join(top, OWNED)):
        rel = os.path.relpath(dirpath, top).replace(os.sep, "/")
        out.extend(f"{rel}/{n}" for n in names)
        out.extend(f"{rel}/{d}" for d in dirs if os.path.islink(os.path.join(dirpath, d)))  # not walked into
    return sorted(out)


def same(path: str, data: bytes) -> bool:
    """The file at path holds exactly data."""
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:  # e.g. a folder where the file belongs
        return False


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


_COMPARING: tuple[str, dict[str, bytes]] | None = None  # (root, files) that forked comparers see


def _same_batch(rels: list[str]) -> list[bool]:
    assert _COMPARING is not None
    top, files = _COMPARING
    return [same(os.path.join(top, rel), files[rel]) for rel in rels]


def plan(root: Path, files: dict[str, bytes], jobs: int = 1) -> Plan:
    """How disk differs from the rendered files; files on disk are compared on `jobs` processes when many."""
    global _COMPARING
    p = Plan()
    existing = _existing(root)
    present = set(existing)
    both = [rel for rel in files if rel in present]
    _COMPARING = str(root), files
    try:
        same = dict(zip(both, parallel.fan_out(_same_batch, both, jobs)))
    finally:
        _COMPARING = None
    for rel in files:
        if rel not in present:
            p.added.append(rel)
        elif not same[rel]:
            p.changed.append(rel)
        else:
            p.unchanged.append(rel)
    for rel in existing:
        if rel not in files:
            generated = not os.path.islink(root / rel) and is_generated(_head(root / rel))  # kflowgen writes no links
            (p.removed if generated else p.foreign).append(rel)
    return p


def check(root: Path, files: dict[str, bytes], jobs: int = 1) -> tuple[Plan, list[Diagnostic]]:
    """The drift gate: one diagnostic per file that differs from what the specs render."""
    p = plan(root, files, jobs)
    fix = "run `kflowgen render` and commit the result"
    diags = [error(r, (1, 1), "KF502", "generated file is missing", fix) for r in p.added]
    diags += [error(r, (1, 1), "KF501", "generated file differs from what the specs render", fix) for r in p.changed]
    diags += [error(r, (1, 1), "KF503", "generated file is no longer produced by any spec", fix) for r in p.removed]
    diags += _foreign(p)
    return p, diags


def _foreign(p: Plan) -> list[Diagnostic]:
    return [warning(r, (1, 1), "KF504", "hand-written file inside a folder kflowgen owns; kflowgen leaves it alone",
                    "move it to bases/ or delete it") for r in p.foreign]


def write(root: Path, files: dict[str, bytes], jobs: int = 1) -> tuple[Plan, list[Diagnostic]]:
    """Make overlays/ hold exactly the rendered files (plus any hand-written ones), atomically."""
    _clean_leftovers(root)
    p = plan(root, files, jobs)
    if not p.drift:
        return p, _foreign(p)
    target = root / OWNED
    new = Path(tempfile.mkdtemp(prefix=SCRATCH, dir=root))
    try:
        staged = new / OWNED
        staged.mkdir()
        for rel in p.unchanged:  # hard links: no bytes copied
            _link(root / rel, new / rel)
        for rel in p.added + p.changed:
            (new / rel).parent.mkdir(parents=True, exist_ok=True)
            (new / rel).write_bytes(files[rel])
        for rel in p.foreign:  # last, so no generated file is ever written through a hand-made link
            if not os.path.lexists(new / rel):  # (a link where kflowgen now needs its own folder gives way)
                _link(root / rel, new / rel)
        if target.exists():
            _exchange(staged, target)  # staged now holds the old tree
        else:
            os.rename(staged, target)
        _fsync_dir(root)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return p, _foreign(p)


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(src):  # a hand-made link (to a file or folder, or dangling) is kept as the same link
        os.symlink(os.readlink(src), dest)
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _clean_leftovers(root: Path) -> None:
    for leftover in root.glob(SCRATCH + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step. Where the kernel or libc cannot, fall back to two renames (a crash between
    them leaves the old tree in the scratch folder, and overlays/ missing until the next render)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        if ctypes.get_errno() not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
