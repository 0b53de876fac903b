"""What is under a folder of the repository (overlays/, specs/), listed without reading it: a find listing of every
entry (files, links, FIFOs, sockets, devices), and what git says of the tracked files (which hold exactly their
committed blob, so need not be read). The commands start early (survey) and run while kflowgen loads and renders."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Collection, Mapping, NamedTuple

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


def _find(folder: str, folders: bool, exact: bool = False) -> list[str]:
    """Every entry under the folder with its type (folders too, with folders): what find lists and git does not is
    untracked or ignored; git lists no FIFO, socket or device. A regular file is printed as its path (with exact:
    STAT, its change and modification times, inode and size as one word, a space, the path), any other entry as
    OTHER, its type, a space and the path: a folder of files only is one split of the output (find_output)."""
    return ["find", folder, *(() if folders else ("!", "-type", "d")), "(", "-type", "f", "-printf",
            "\\002%C@:%T@:%i:%s %p\\0" if exact else "%p\\0", "-o", "-printf", "\\001%y %p\\0", ")"]


OTHER, STAT = "\1", "\2"  # what opens find's line for an entry that is not a regular file, and for a file's stat data


def survey(root: Path, git: bool = True, folder: str = OWNED, folders: bool = False, exact: bool = False,
           behind: bool = False) -> list:
    """Start git's commands (with git) and a find listing of the folder, for plan() (overlays/) or the spec reader
    (specs/: folders listed, and exact, see vouched), so they run while kflowgen loads and renders (behind: see
    start)."""
    commands = [["git", "-C", str(root), *args] for args in (_git(folder, exact) if git else ())]
    # behind: the listings (git's two, find's), not the two small questions, of which one, the settings, answers
    # "none set" with a failure (and a command behind that fails is run again: see start)
    return (start(commands[:2], behind=behind) + start(commands[2:])
            + start([], [_find(folder, folders, exact)], root, behind))


def start(argvs: list[list[str]], here: list[list[str]] = (), root: Path | None = None, behind: bool = False
          ) -> list:
    """Start these commands (and those of here in the folder root), each one's output to a temporary file, so that
    a command never waits for a reader; results() reads them, finish() waits for them when they are not wanted.
    behind: at a lower priority (nice 10, where there is a nice), for answers wanted later: they run on a core this
    run leaves idle, instead of taking turns with it (five commands at once, on two cores, slowed the stages they
    run beside); one that fails is run again as it is when read (results), so that a nice that cannot run (a
    container that refuses setpriority, say) never changes an answer."""
    runs: list[tuple] = []
    nice = _NICE if behind else []
    for argv, cwd in [*((a, None) for a in argvs), *((a, root) for a in here)]:
        out = tempfile.TemporaryFile()
        try:
            run = subprocess.Popen([*nice, *argv], stdout=out, stderr=subprocess.DEVNULL, cwd=cwd)
            runs.append((run, out, argv, cwd) if nice else (run, out))
        except OSError:
            out.close()
            runs.append((None, None))
    return runs


_NICE = [found, "-n", "10"] if (found := shutil.which("nice")) and os.path.isabs(found) else []


def specs(root: Path, git: bool) -> list:
    """The listing of specs/ every command that reads the specs starts (with git's, when git may vouch for them)."""
    return survey(root, git=git, folder=SPECS, folders=True, exact=True)


def finish(started: list | None) -> None:
    """Wait for what survey() started when its answer is not wanted any more."""
    for run, out, *_ in started or []:
        if run is not None:
            run.wait()
            out.close()


def stop(started: list | None) -> None:
    """End what start() started when its answer is not wanted, without waiting for it to be made: each command still
    running is asked to stop (SIGTERM: a git command that holds a lock file removes it, as on any signal it may die
    of; the listings kflowgen starts take none), then reaped."""
    for run, out, *_ in started or []:
        if run is not None:
            if run.poll() is None:
                run.terminate()
            run.wait()
            out.close()


def results(started: list) -> list[tuple[bytes, int]]:
    """(output, exit status) of each command survey() started, once they are done."""
    outs = []
    for run, out, *again in started:
        if run is None:
            outs.append((b"", 1))
            continue
        code = run.wait()
        out.seek(0)
        outs.append((out.read(), code))
        out.close()
        if code and again:  # started behind, and it failed: git's (or find's) own answer, not nice's
            argv, cwd = again
            outs[-1] = results(start([argv]) if cwd is None else start([], [argv], cwd))[0]
    return outs


class Listing(NamedTuple):
    """find's listing of a folder (see _find), in find's order: the regular files; every other entry as (type as find
    gives it, path), the folder itself first when it is one (d folder, l link; p, s, b, c the special files); and,
    when find was asked for them (exact), each regular file's stat data as one word (see vouched)."""

    files: list[str]
    others: list[tuple[str, str]]
    stats: dict[str, str]


def find_output(found: tuple[bytes, int]) -> Listing | None:
    """find's listing, read once; None when find failed (no such folder, an unreadable one, or a find without
    -printf). A folder of regular files only, without their stat data, is one split."""
    out, code = found
    if code:
        return None
    text = out.decode("utf-8", "surrogateescape")
    items = text.split("\0")
    items.pop()  # after the last entry's NUL (an empty listing: the one empty item)
    if OTHER not in text and STAT not in text:  # each item is a path, which starts with the folder's name
        return Listing(items, [], {})
    files, others, stats = [], [], {}
    for item in items:
        mark = item[:1]
        if mark == STAT:
            key, _, rel = item.partition(" ")
            files.append(rel)
            stats[rel] = key[1:]
        elif mark == OTHER:
            others.append((item[1:2], item[3:]))
        else:
            files.append(item)
    return Listing(files, others, stats)


def find_paths(listing: Listing | None) -> list[tuple[str, str]] | None:
    """find's listing (find_output) as (type, path) pairs, the type as find gives it (f file, d folder, l link; p, s,
    b, c the special files), the folder itself first when it is one; None when find failed."""
    if listing is None:
        return None
    return [*listing.others, *(("f", rel) for rel in listing.files)]


def find_listing(listing: Listing | None) -> tuple[list[str], list[str], list[str]] | None:
    """find's listing (find_output) as existing gives it ([files], [links], [FIFOs, sockets, devices]; folders left
    out); None when find failed (no overlays/, or a find without -printf): then existing walks the folder."""
    if listing is None:
        return None
    links = [rel for kind, rel in listing.others if kind == "l"]
    special = [rel for kind, rel in listing.others if kind not in ("l", "d")]
    return sorted(listing.files), sorted(links), sorted(special)


def vouched(root: Path, outs: list | None = None, listing: Listing | None = None, folder: str = OWNED,
            exact: bool = False, columns: list | None = None) -> tuple[dict[str, str], list[str], list[str]] | None:
    """What git says of a folder (overlays/, specs/) without reading its files: ({path: blob id} of tracked files
    whose bytes on disk are exactly that blob, [every other path git lists there: changed, deleted, untracked,
    ignored, links], [FIFOs, sockets and devices, which git does not list (find's), and submodules, which it lists
    as one entry]).

    git compares each tracked file's size, times and inode with those its index recorded, and reads the file when
    that cannot decide (the "racy git" case: a file changed within the index's own timestamp). A file behind a link
    (a tracked folder replaced by a link) is reported deleted; files marked assume-unchanged or skip-worktree are not
    vouched for. None, and every file is read, when git cannot say: not a work tree, line-ending conversion
    (core.autocrlf), any attributes file (a filter or an eol setting makes the bytes on disk differ from the blob),
    settings under which git compares less than it records (core.checkStat=minimal, core.trustctime=false,
    core.ignoreStat) or asks a file-system monitor; and when find could not list the special files.

    exact: git compares times to the second, so a file rewritten within the second git recorded, whose mtime a tool
    then set back, looks unchanged to git (and to `git status`). With exact, a file is vouched for only when its
    change and modification times to the nanosecond, size and inode are also those git recorded (`ls-files
    --debug`), as the survey's find gave them (listing: find_output's): no file is looked at again here.

    columns: git's listing (outs' first) read already (index_columns), while the other commands ran."""
    if outs is None:
        outs = results(survey(root, folder=folder, exact=exact))
        listing = find_output(outs.pop())
    if listing is None:
        return None
    stats, listing = listing.stats, find_listing(listing)
    if not _trusted(root, outs):
        return None
    (listed, _), (changed, _), _, _ = outs
    dirty = set(changed.decode("utf-8", "surrogateescape").split("\0")) - {""}
    columns = columns or index_columns(outs[0], exact)
    if columns is None:
        return None  # not the listing git gives (--debug's, with exact): nothing is vouched for
    tags, modes, oids, stages, rels = columns[:5]
    gitlinks = {rel for rel, mode in zip(rels, modes) if mode == "160000"} if "160000" in modes else set()
    # submodules: their files are the other repository's, and Argo CD checks them out
    if {*tags} == {"H"} and {*stages} == {"0"} and {*modes} <= {"100644", "100755"}:
        vouched = dict(zip(rels, oids))  # every entry a regular file git has as it is (most often: all of them)
        for rel in dirty:
            vouched.pop(rel, None)
    else:
        vouched = {rel: oid for tag, mode, oid, stage, rel in zip(*columns[:5])
                   if tag == "H" and stage == "0" and mode in ("100644", "100755") and rel not in dirty}
    if exact:  # and only those whose stat data, as find gave it, is what git recorded (in find's words)
        recorded = list(map("{}.{:0>9}0:{}.{:0>9}0:{}:{}".format, *columns[5:11]))
        found = list(map(stats.get, rels))
        if found != recorded:  # most often the same text for every file; else compared as numbers, file by file
            differ = {rel for rel, theirs, ours in zip(rels, found, recorded)
                      if theirs != ours and not _same_stat(theirs, ours)}
            vouched = {rel: oid for rel, oid in vouched.items() if rel not in differ}
    if len(vouched) + len(gitlinks) == len(rels) and listing[0] == list(rels) and not listing[1]:
        others = []  # every entry vouched for (or a submodule), and find lists exactly those files (most often)
    else:
        tracked = set(rels)
        others = [rel for rel in tracked if rel not in vouched and rel not in gitlinks]
        others += [rel for rel in listing[0] if rel not in tracked]  # untracked and ignored
        others += [rel for rel in listing[1] if rel not in tracked]
        others += [rel for rel in dirty if rel not in tracked]
    every = "\0".join(["", *vouched, *others, *gitlinks, ""])
    if "/\0" in every or "/.gitattributes\0" in every or every.count("\0" + folder + "/") != every.count("\0") - 1:
        return None  # a nested repository, the folder itself a link, or attributes inside it
    return vouched, sorted(set(others)), sorted({*listing[2], *gitlinks})


def index_columns(out: tuple[bytes, int], exact: bool) -> list | None:
    """git's listing of the index (the survey's first command: its output and exit status) as _entries' columns; None
    when git failed or the listing is not in that shape (then vouched vouches for nothing)."""
    return None if out[1] else _entries(out[0].decode("utf-8", "surrogateescape"), exact)


def _trusted(root: Path, outs: list) -> bool:
    """Whether git's answers (the commands survey started, see _git) may stand for the bytes on disk: it answered,
    and neither line-ending conversion (core.autocrlf), any attributes file (a filter or an eol setting makes the bytes
    on disk differ from the blob), nor settings under which git compares less than its index records
    (core.checkStat=minimal, core.trustctime=false, core.ignoreStat) or asks a file-system monitor are in play."""
    if len(outs) != GIT:
        return False  # git was not asked
    (_, ok1), (_, ok2), settings, paths = outs
    return not ok1 and not ok2 and git_trusted(root, settings, paths)


def git_trusted(root: Path, settings: tuple[bytes, int], paths: tuple[bytes, int]) -> bool:
    """_trusted's settings part, from the output and exit status of the survey's last two commands (_git's: the
    settings, and where the attributes files are)."""
    (settings, _), (paths, ok5) = settings, paths
    if ok5:
        return False
    core = dict((line.split(" ", 1) + [""])[:2] for line in settings.decode("utf-8", "replace").lower().splitlines())
    on = {k: v not in ("false", "no", "off", "0") for k, v in core.items()}  # git's booleans; a bare key is true
    if (on.get("core.autocrlf") or core.get("core.checkstat") == "minimal"
            or not on.get("core.trustctime", True) or on.get("core.ignorestat") or on.get("core.fsmonitor")):
        return False  # git would compare fewer stat fields, or ask a monitor: read the files instead
    info, top = paths.decode("utf-8", "surrogateescape").splitlines()[:2]
    user = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "git", "attributes")
    here, top = Path(os.path.realpath(root)), os.path.realpath(top)
    folders = [here, *here.parents][:len(here.relative_to(top).parts) + 1] if here.is_relative_to(top) else [here]
    return not (core.get("core.attributesfile") or any(os.path.exists(f) for f in (os.path.join(root, info), user))
                or any((f / ".gitattributes").exists() for f in folders))


def holds_exactly(root: Path, outs: list, found: tuple[bytes, int], paths: Collection[str],
                  ids: Mapping[str, str]) -> bool:
    """Whether overlays/ holds exactly these files (paths in path order, ids: their blob ids) and git vouches for
    each, told from the survey's output (outs: git's, found: find's) as a whole; False whenever anything else may be
    so (then vouched tells file by file). It is so when git may be trusted (_trusted), changed no file on disk
    (diff-files lists none), lists exactly these paths, each a regular file (100644) as it is in the index (H) at
    stage 0 with this blob id, and find lists as many regular files and nothing else: then nothing else is there."""
    (listing, code) = found
    if code or not _trusted(root, outs) or outs[1][0] or OTHER.encode() in listing or STAT.encode() in listing:
        return False
    oids = list(map(ids.get, paths))
    if listing.count(b"\0") != len(oids) or None in oids:
        return False
    # compared a slice at a time: the whole text would be three copies of git's listing at once (at 10,000 teams,
    # 560,000 entries: about 200 MB more at the gate's peak)
    listed, at, rels = memoryview(outs[0][0]), 0, list(paths)
    for start in range(0, len(rels), _SLICE):
        part = "".join([f"H 100644 {oid} 0\t{rel}\0" for rel, oid in zip(rels[start:start + _SLICE],
                                                                      oids[start:start + _SLICE])]).encode(
            "utf-8", "surrogateescape")
        if listed[at:at + len(part)] != part:
            return False
        at += len(part)
    return at == len(listed)


_SLICE = 4096  # entries of git's listing compared at a time (holds_exactly)


# what `git ls-files -z -s -t -v` prints of each entry: tag, mode, blob id, stage, path; with --debug, then the stat
# data its index recorded (after the entry's NUL, before the next entry)
_ENTRY = r"([^ \0]+) ([0-7]+) ([0-9a-f]+) ([0-3])\t([^\0]*)\0"
_STAT = (r"  ctime: (\d+):(\d+)\n  mtime: (\d+):(\d+)\n  dev: \d+\tino: (\d+)\n  uid: \d+\tgid: \d+\n"
         r"  size: (\d+)\tflags: [0-9a-f]+\n")
_ELSE = r"|([^\0]*\0|[^\0]+\Z)"  # anything else, up to the next NUL or the end: the matches are the whole listing
_LISTED = re.compile(_ENTRY + _ELSE)
_DEBUG = re.compile(_ENTRY + _STAT + _ELSE)


def _entries(text: str, exact: bool) -> list[list[str] | tuple[str, ...]] | None:
    """The entries `ls-files -z -s -t -v` lists, as columns: tags, modes, blob ids, stages, paths; with exact
    (--debug), then the stat data git's index recorded: ctime seconds, its nanoseconds, mtime seconds, its
    nanoseconds, inode, size. None when the listing is not in that shape."""
    n = text.count("\0")
    if not n:
        return None if text else [[]] * (11 if exact else 5)
    if not exact and text.count("\t") == n and text[-1] == "\0":  # no path holds a tab: split on NULs and tabs
        parts = text.replace("\t", "\0").split("\0")
        fields = " ".join(parts[0:-1:2]).split(" ")
        columns = [fields[0::4], fields[1::4], fields[2::4], fields[3::4], parts[1::2]]
        # each entry's four fields where they belong: one out of place would be of another kind or length
        if (len(fields) == 4 * n and {*map(len, columns[0])} == {1} and {*columns[3]} <= {"0", "1", "2", "3"}
                and all(len(mode) == 6 and mode.isdigit() for mode in {*columns[1]})
                and {*map(len, columns[2])} <= {40, 64}):
            return columns
    columns = list(zip(*(_DEBUG if exact else _LISTED).findall(text)))
    return None if any(columns[-1]) else columns[:-1]


def _same_stat(found: str | None, recorded: str) -> bool:
    """The file's change and modification times, inode and size as find gave them (see _find) are those git
    recorded (put in the same words): to the nanosecond, and inodes and sizes as git keeps them (32 bits). Most
    often the two are the same text; this compares them as numbers."""
    if found is None:
        return False  # not a regular file (a link, a folder), or gone, when find listed the folder
    try:
        (c, m, ino, size), (git_c, git_m, git_ino, git_size) = found.split(":"), recorded.split(":")
        return ((_ns(c), _ns(m), int(ino) & 0xFFFFFFFF, int(size) & 0xFFFFFFFF)
                == (_ns(git_c), _ns(git_m), int(git_ino), int(git_size)))
    except ValueError:
        return False


def _ns(time: str) -> int:
    """A time as find gives it (seconds, a dot, at least nine digits of fraction) in nanoseconds; ValueError when it
    is not to the nanosecond."""
    seconds, dot, fraction = time.partition(".")
    if not dot or len(fraction) < 9 or fraction[9:].strip("0"):
        raise ValueError(time)
    return int(seconds) * 10**9 + int(fraction[:9])
