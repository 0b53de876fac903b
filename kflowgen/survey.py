"""What is under a folder of the repository (overlays/, specs/), listed without reading it: a find listing of every
entry (files, links, FIFOs, sockets, devices), and what git says of the tracked files (which hold exactly their
committed blob, so need not be read). The commands start early (survey) and run while kflowgen loads and renders."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

OWNED = "overlays"  # the folder kflowgen owns: every generated file lives here
SPECS = "specs"  # the folder people write specs in


def listed(path: str) -> bool:
    """existing lists it: a file or a link, not a folder (a tracked file may have become one)."""
    return os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path))


def existing(root: Path) -> tuple[list[str], list[str], list[str]]:
    """Every regular file, every link (a link to a folder is listed, not walked into), and every FIFO, socket or
    device (listed apart: never opened) under overlays/."""
    out, links, special, todo, top = [], [], [], [OWNED], str(root)
    while todo:
        rel = todo.pop()
        try:
            entries = os.scandir(os.path.join(top, rel))
        except OSError:
            continue
        with entries:
            for entry in entries:
                path = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    todo.append(path)
                else:
                    (out if entry.is_file(follow_symlinks=False) else links if entry.is_symlink() else
                     special).append(path)
    return sorted(out), sorted(links), sorted(special)


def _git(folder: str, exact: bool = False) -> tuple[tuple[str, ...], ...]:
    return (("ls-files", "-z", "-s", "-t", "-v", *(("--debug",) if exact else ()), "--", folder),
            ("diff-files", "-z", "--relative", "--name-only", "--", folder),
            ("config", "--get-regexp", r"^core\.(autocrlf|attributesfile|checkstat|trustctime|ignorestat|fsmonitor)$"),
            ("rev-parse", "--git-path", "info/attributes", "--show-toplevel"))


GIT = len(_git(OWNED))  # how many git commands a survey starts (the find listing comes after them)


def _find(folder: str, folders: bool) -> list[str]:
    """Every entry under the folder with its type (folders too, with folders): what git does not track (untracked
    and ignored files) is what find lists and git does not; git lists no FIFO, socket or device; and a run that
    only lists (validate) needs nothing else."""
    return ["find", folder, *(() if folders else ("!", "-type", "d")), "-printf", "%y %p\\0"]


def survey(root: Path, git: bool = True, folder: str = OWNED, folders: bool = False, exact: bool = False) -> list:
    """Start the commands plan() (for overlays/) or the spec reader (for specs/, with folders listed, and exact:
    with the times git recorded, see vouched) reads, so they run while kflowgen loads and renders: git's (with git)
    and a find listing of the folder; output goes to temporary files, so a command never waits for a reader."""
    runs = []
    for argv in [*(["git", "-C", str(root), *args] for args in (_git(folder, exact) if git else ())),
                 _find(folder, folders)]:
        out = tempfile.TemporaryFile()
        try:
            runs.append((subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL,
                                          cwd=root if argv[0] == "find" else None), out))
        except OSError:
            out.close()
            runs.append((None, None))
    return runs


def specs(root: Path, git: bool) -> list:
    """The listing of specs/ every command that reads the specs starts (with git's, when git may vouch for them)."""
    return survey(root, git=git, folder=SPECS, folders=True, exact=True)


def early(root: Path, git: bool) -> dict:
    """specs() started now, for Options.early: the command line starts it before it imports the stages, which takes
    longer than the listing; taken by the stage that reads the specs of this root (taken_or_started)."""
    return {(str(root), SPECS, git): specs(root, git)}


def taken_or_started(given: dict, root: Path, git: bool) -> list:
    """The listing of specs/ started early for this root (taken: a second reader starts its own), else started now."""
    return given.pop((str(root), SPECS, git), None) or specs(root, git)


def finish(started: list | None) -> None:
    """Wait for what survey() started when its answer is not wanted any more."""
    for run, out in started or []:
        if run is not None:
            run.wait()
            out.close()


def results(started: list) -> list[tuple[bytes, int]]:
    """(output, exit status) of each command survey() started, once they are done."""
    outs = []
    for run, out in started:
        if run is None:
            outs.append((b"", 1))
            continue
        code = run.wait()
        out.seek(0)
        outs.append((out.read(), code))
        out.close()
    return outs


def find_paths(found: tuple[bytes, int]) -> list[tuple[str, str]] | None:
    """find's listing as (type, path) pairs, the type as find gives it (f file, d folder, l link; p, s, b, c the
    special files); None when find failed (no such folder, an unreadable one, or a find without -printf)."""
    out, code = found
    if code:
        return None
    return [(kind, rel) for kind, _, rel in (item.partition(" ") for item in
                                             out.decode("utf-8", "surrogateescape").split("\0") if item)]


def find_listing(found: tuple[bytes, int]) -> tuple[list[str], list[str], list[str]] | None:
    """find's listing as existing gives it ([files], [links], [FIFOs, sockets, devices]; folders left out); None
    when find failed (no overlays/, or a find without -printf): then existing walks the folder."""
    paths = find_paths(found)
    if paths is None:
        return None
    kinds: dict[str, list[str]] = {"f": [], "l": [], "d": [], "": []}
    for kind, rel in paths:
        kinds.get(kind, kinds[""]).append(rel)
    return sorted(kinds["f"]), sorted(kinds["l"]), sorted(kinds[""])


def vouched(root: Path, outs: list | None = None, listing: tuple | None = None, folder: str = OWNED,
            exact: bool = False) -> tuple[dict[str, str], list[str], list[str]] | None:
    """What git says of a folder (overlays/, specs/) without reading its files: ({path: blob id} of tracked files
    whose bytes on disk are exactly that blob, [every other path git lists there: changed, deleted, untracked,
    ignored, links], [FIFOs, sockets and devices, which git does not list (find's), and submodules, which it lists
    as one entry]).

    git compares each tracked file's size, times and inode with those its index recorded when it last read the
    file, and reads the file when that cannot decide (a file changed within the index's own timestamp, the "racy
    git" case: its mtime is not older than the index file, so a change in the same tick would not show). A file
    behind a link (a tracked folder replaced by a link) is reported deleted, so not vouched for. Files
    marked assume-unchanged or skip-worktree are not vouched for. None, and every file is read, when git cannot
    say: not a work tree, line-ending conversion (core.autocrlf), any attributes file (a filter or an eol setting
    makes the bytes on disk differ from the blob), or settings under which git compares less than its index records
    (core.checkStat=minimal, core.trustctime=false, core.ignoreStat) or asks a file-system monitor; and when find
    could not list the special files.

    exact (the survey's too): git compares times to the second, so a file rewritten within the second git last
    recorded it, whose mtime a tool then set back (so that git does not see it as racy), looks unchanged to git
    (`git status` says so too). With exact, a file is vouched for only when its change and modification times, to
    the nanosecond, its size and inode are also those git recorded (`git ls-files --debug`)."""
    if outs is None:
        outs = results(survey(root, folder=folder, exact=exact))
        listing = find_listing(outs.pop())
    if listing is None:
        return None
    if len(outs) != GIT:
        return None  # git was not asked
    (listed, ok1), (changed, ok2), (settings, _), (paths, ok5) = outs
    if ok1 or ok2 or ok5:
        return None
    core = dict((line.split(" ", 1) + [""])[:2] for line in settings.decode("utf-8", "replace").lower().splitlines())
    on = {k: v not in ("false", "no", "off", "0") for k, v in core.items()}  # git's booleans; a bare key is true
    if (on.get("core.autocrlf") or core.get("core.checkstat") == "minimal"
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
    others: list[str] = []
    tracked: set[str] = set()
    gitlinks: set[str] = set()  # submodules: their files are the other repository's, and Argo CD checks them out
    entries = _entries(listed.decode("utf-8", "surrogateescape").split("\0"), exact)
    if entries is None:
        return None  # not the listing --debug gives: nothing is vouched for
    for item, recorded in entries:
        meta, _, rel = item.partition("\t")
        tag, mode, oid, stage = meta.split(" ")
        tracked.add(rel)
        if mode == "160000":
            gitlinks.add(rel)
            continue
        if (tag == "H" and stage == "0" and mode in ("100644", "100755") and rel not in dirty
                and (not exact or _same_stat(os.path.join(root, rel), recorded))):
            vouched[rel] = oid
        else:
            others.append(rel)
    others += [rel for rel in (*listing[0], *listing[1]) if rel not in tracked]  # untracked and ignored
    others += dirty - set(others) - set(vouched)
    if any(rel.endswith("/") or not rel.startswith(folder + "/") or rel.endswith("/.gitattributes")
           for rel in [*vouched, *others, *gitlinks]):
        return None  # a nested repository, the folder itself a link, or attributes inside it
    return vouched, sorted(set(others) - gitlinks), sorted({*listing[2], *gitlinks})


# what `git ls-files --debug` prints after each entry (and before the next one, with -z): the stat data it recorded
_DEBUG = re.compile(r"\A  ctime: (\d+):(\d+)\n  mtime: (\d+):(\d+)\n  dev: (\d+)\tino: (\d+)\n  uid: (\d+)\tgid: (\d+)\n"
                    r"  size: (\d+)\tflags: ([0-9a-f]+)\n")


def _entries(items: list[str], exact: bool) -> list[tuple[str, tuple[int, int, int, int] | None]] | None:
    """Each entry `ls-files -z` lists, and with exact (--debug) its stat data as git's index recorded it: (ctime
    ns, mtime ns, size, inode), from the lines that open the item after it; None when an item is not in that shape."""
    if not exact:
        return [(item, None) for item in items if item]
    out, entry = [], items[0]
    for item in items[1:]:
        found = _DEBUG.match(item)
        if found is None:
            return None
        c, cn, m, mn, _, ino, _, _, size, _ = found.groups()
        out.append((entry, (int(c) * 10**9 + int(cn), int(m) * 10**9 + int(mn), int(size), int(ino))))
        entry = item[found.end():]
    return None if entry else out


def _same_stat(path: str, recorded: tuple[int, int, int, int] | None) -> bool:
    """The file's change and modification times (to the nanosecond), size and inode are those git recorded (sizes
    and inodes as git keeps them: 32 bits)."""
    if recorded is None:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size & 0xFFFFFFFF, st.st_ino & 0xFFFFFFFF) == recorded
