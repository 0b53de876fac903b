"""The writer, the only code that changes the repository: compare rendered files with disk, or write them."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Diagnostic, error, warning
from .emit import is_generated

OWNED = ("overlays",)  # folders kflowgen owns: every generated file lives here, and nothing else should


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # generated files no spec produces any more
    foreign: list[str] = field(default_factory=list)  # hand-written files inside an owned folder: never touched
    unchanged: int = 0

    @property
    def drift(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _existing(root: Path) -> list[str]:
    out = []
    for top in OWNED:
        base = root / top
        if base.is_dir():
            for dirpath, _dirs, names in os.walk(base):
                for n in names:
                    out.append((Path(dirpath) / n).relative_to(root).as_posix())
    return sorted(out)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def plan(root: Path, files: dict[str, bytes]) -> Plan:
    p = Plan()
    for rel, data in files.items():
        path = root / rel
        if not path.is_file():
            p.added.append(rel)
        elif path.read_bytes() != data:
            p.changed.append(rel)
        else:
            p.unchanged += 1
    for rel in _existing(root):
        if rel not in files:
            (p.removed if is_generated(_head(root / rel)) else p.foreign).append(rel)
    return p


def check(root: Path, files: dict[str, bytes]) -> tuple[Plan, list[Diagnostic]]:
    """The drift gate: one diagnostic per file that differs from what the specs render."""
    p = plan(root, files)
    fix = "run `kflowgen render` and commit the result"
    diags = [error(r, (1, 1), "KF502", "generated file is missing", fix) for r in p.added]
    diags += [error(r, (1, 1), "KF501", "generated file differs from what the specs render", fix) for r in p.changed]
    diags += [error(r, (1, 1), "KF503", "generated file is no longer produced by any spec", fix) for r in p.removed]
    diags += _foreign(p)
    return p, diags


def _foreign(p: Plan) -> list[Diagnostic]:
    return [warning(r, (1, 1), "KF504", "hand-written file inside a folder kflowgen owns; kflowgen leaves it alone",
                    "move it to bases/ or delete it") for r in p.foreign]


def write(root: Path, files: dict[str, bytes]) -> tuple[Plan, list[Diagnostic]]:
    """Write only what changed, each file atomically (temporary file + rename); remove stale generated files."""
    p = plan(root, files)
    for rel in p.added + p.changed:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kflowgen-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(files[rel])
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    for rel in p.removed:
        (root / rel).unlink()
        _prune_empty((root / rel).parent, root)
    return p, _foreign(p)


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
