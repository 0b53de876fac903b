"""The writer, the only code that changes the repository: compare rendered files with disk, or write them.

A write builds the complete new overlays tree in a temporary folder beside it (unchanged and hand-written files
are hard links, so only changed files cost anything) and then swaps the two folders in one atomic step
(renameat2 RENAME_EXCHANGE on Linux). Killed at any moment, the repository holds either the old tree or the
new one; a leftover temporary folder is removed by the next run. Writes in one repository take turns, and wait for
runs that read overlays/ where it is (see locked), so a run never removes another's temporary folder as a leftover
and never swaps the tree under a build.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import cache, parallel
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


def _listed(path: str) -> bool:
    """_existing lists it: a file or a link, not a folder (a tracked file may have become one)."""
    return os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path))


def _existing(root: Path) -> list[str]:
    """Every file and link under overlays/ (a link to a folder is listed, not walked into)."""
    out, todo, top = [], [OWNED], str(root)
    while todo:
        rel = todo.pop()
        try:
            entries = os.scandir(os.path.join(top, rel))
        except OSError:
            continue
        with entries:
            for entry in entries:
                (todo if entry.is_dir(follow_symlinks=False) else out).append(f"{rel}/{entry.name}")
    return sorted(out)


def survey(root: Path) -> list:
    """Start the git commands _vouched reads (they then run while kflowgen loads and renders); output goes to
    temporary files, so a command never waits for a reader."""
    runs = []
    for args in (("ls-files", "-z", "-s", "-t", "-v", "--", OWNED),
                 ("diff-files", "-z", "--relative", "--name-only", "--", OWNED),
                 ("ls-files", "-z", "-o", "--", OWNED),  # untracked, ignored ones included
                 ("config", "--get-regexp", r"^core\.(autocrlf|attributesfile|checkstat|trustctime|ignorestat|fsmonitor)$"),
                 ("rev-parse", "--git-path", "info/attributes", "--show-toplevel")):
        out = tempfile.TemporaryFile()
        try:
            runs.append((subprocess.Popen(["git", "-C", str(root), *args], stdout=out, stderr=subprocess.DEVNULL), out))
        except OSError:
            out.close()
            runs.append((None, None))
    return runs


def finish(started: list | None) -> None:
    """Wait for what survey() started when its answer is not wanted any more."""
    for run, out in started or []:
        if run is not None:
            run.wait()
            out.close()


def _vouched(root: Path, started: list | None = None) -> tuple[dict[str, str], list[str]] | None:
    """What git says of overlays/ without reading its files: ({path: blob id} of tracked files whose bytes on disk
    are exactly that blob, [every other path git lists there: changed, deleted, untracked, ignored, links]).

    git compares each tracked file's size, times and inode with those its index recorded when it last read the
    file, and reads the file when that cannot decide (a file changed within the index's own timestamp). Files
    marked assume-unchanged or skip-worktree are not vouched for. None, and every file is read, when git cannot
    say: not a work tree, line-ending conversion (core.autocrlf), any attributes file (a filter or an eol setting
    makes the bytes on disk differ from the blob), or settings under which git compares less than its index records
    (core.checkStat=minimal, core.trustctime=false, core.ignoreStat) or asks a file-system monitor."""
    outs = []
    for run, out in started if started is not None else survey(root):
        if run is None:
            outs.append((b"", 1))
            continue
        code = run.wait()
        out.seek(0)
        outs.append((out.read(), code))
        out.close()
    (listed, ok1), (changed, ok2), (untracked, ok3), (settings, _), (paths, ok5) = outs
    core = dict((line.split(" ", 1) + [""])[:2] for line in settings.decode("utf-8", "replace").lower().splitlines())
    on = {k: v not in ("false", "no", "off", "0") for k, v in core.items()}  # git's booleans; a bare key is true
    if (ok1 or ok2 or ok3 or ok5 or on.get("core.autocrlf") or core.get("core.checkstat") == "minimal"
            or not on.get("core.trustctime", True) or on.get("core.ignorestat") or on.get("core.fsmonitor")):
        return None  # git would compare fewer stat fields, or ask a monitor: read the files instead
    info, top = paths.decode("utf-8", "surrogateescape").splitlines()[:2]
    user = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "git", "attributes")
    here, top = Path(os.path.realpath(root)), os.path.realpath(top)
    folders = [here, *here.parents][:len(here.relative_to(top).parts) + 1] if here.is_relative_to(top) else [here]
    if (core.get("core.attributesfile") or any(os.path.exists(f) for f in (os.path.join(root, info), user))
            or any((f / ".gitattributes").exists() for f in folders)):
        return None
    dirty = set(changed.decode("utf-8", "surrogateescape").split("\0")) - {""}
    vouched: dict[str, str] = {}
    others = [rel for rel in untracked.decode("utf-8", "surrogateescape").split("\0") if rel]
    submodule = False
    for item in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
        meta, _, rel = item.partition("\t")
        tag, mode, oid, stage = meta.split(" ")
        submodule |= mode == "160000"
        if tag == "H" and stage == "0" and mode in ("100644", "100755") and rel not in dirty:
            vouched[rel] = oid
        else:
            others.append(rel)
    others += dirty - set(others) - set(vouched)
    if submodule or any(rel.endswith("/") or not rel.startswith(OWNED + "/") or rel.endswith("/.gitattributes")
                        for rel in [*vouched, *others]):
        return None  # a nested repository or submodule, overlays/ itself a link, or attributes inside overlays/
    return vouched, sorted(set(others))


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


def _same_folder_batch(folders: list[tuple[str, list[str]]]) -> list[bool]:
    assert _COMPARING is not None
    top, files = _COMPARING
    return [_same_folder(top, folder, rels, files) for folder, rels in folders]


def _same_folder(top: str, folder: str, rels: list[str], files: dict[str, bytes]) -> bool:
    try:
        with os.scandir(os.path.join(top, folder)) as entries:
            present = {e.name: e.is_file(follow_symlinks=False) for e in entries}
    except OSError:
        return False
    return (all(present.values()) and sorted(present) == sorted(r.rsplit("/", 1)[1] for r in rels)
            and all(same(os.path.join(top, r), files[r]) for r in rels))


def same_folders(root: Path, folders: dict[str, list[str]], files: dict[str, bytes], jobs: int = 1) -> set[str]:
    """The folders ({folder: the rendered files that belong in it}) that hold exactly those files as regular files,
    byte for byte, and nothing else; compared on `jobs` processes when many."""
    global _COMPARING
    items = list(folders.items())
    _COMPARING = str(root), files
    try:
        return {folder for (folder, _), ok in zip(items, parallel.fan_out(_same_folder_batch, items, jobs)) if ok}
    finally:
        _COMPARING = None


def plan(root: Path, files: dict[str, bytes], jobs: int = 1, ask_git: bool = False, started: list | None = None
         ) -> Plan:
    """How disk differs from the rendered files; files on disk are compared on `jobs` processes when many. With
    ask_git, a file git vouches for (see _vouched) is compared by its blob id instead of being read."""
    global _COMPARING
    p = Plan()
    known = _vouched(root, started) if ask_git else None
    if known is None:
        existing, vouched = _existing(root), {}
    else:
        vouched, others = known
        existing = sorted([*vouched, *(rel for rel in others if _listed(os.path.join(root, rel)))])
    present = set(existing)
    both = [rel for rel in files if rel in present and rel not in vouched]
    _COMPARING = str(root), files
    try:
        same = dict(zip(both, parallel.fan_out(_same_batch, both, jobs)))
    finally:
        _COMPARING = None
    same.update((rel, cache.blob_id(files[rel]) == vouched[rel]) for rel in files if rel in vouched)
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


def check(root: Path, files: dict[str, bytes], jobs: int = 1, started: list | None = None
          ) -> tuple[Plan, list[Diagnostic]]:
    """The drift gate: one diagnostic per file that differs from what the specs render. In a git work tree, files
    git vouches for are not read (see _vouched; `started`: what survey() started earlier)."""
    with locked(root, exclusive=False):
        p = plan(root, files, jobs, ask_git=True, started=started)
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
    """Make overlays/ hold exactly the rendered files (plus any hand-written ones), atomically; another write in
    the same repository waits until this one is done."""
    with locked(root):
        return _write(root, files, jobs)


@contextmanager
def locked(root: Path, exclusive: bool = True):
    """A lock on the repository folder (flock): exclusive for a write, shared for a run that reads overlays/ where
    it is (render --check, a build in place). A run that has to wait says so once on stderr. The lock ends with the
    process, even killed, and forked workers do not keep it (parallel.NOT_INHERITED); nothing is created in the
    repository. Where the folder cannot be locked (no flock, or a network file system that refuses it on a folder),
    runs do not take turns, as before there was a lock."""
    try:
        import fcntl
        fd = os.open(root, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    parallel.NOT_INHERITED.add(fd)
    try:
        _acquire(fcntl, fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, root)
        yield
    finally:
        parallel.NOT_INHERITED.discard(fd)
        os.close(fd)


def _acquire(fcntl, fd: int, mode: int, root: Path) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        print(f"kflowgen: waiting for another kflowgen {'run in' if mode == fcntl.LOCK_EX else 'writing'} {root}",
              file=sys.stderr)
    except OSError:
        return
    try:
        fcntl.flock(fd, mode)
    except OSError:
        pass


def _write(root: Path, files: dict[str, bytes], jobs: int) -> tuple[Plan, list[Diagnostic]]:
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
