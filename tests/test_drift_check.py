"""The drift check in a git work tree: files git vouches for are compared by blob id, and the answer is exactly
the one reading every file gives."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import copy_repo, PROJECT
from kflowgen import cache, survey
from kflowgen.write import writer
from kflowgen.targets import render
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.targets.cached import render_cached


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                           *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> tuple[Path, dict[str, bytes]]:
    root = copy_repo(PROJECT, tmp_path / "repo")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    model, _ = pipeline.load(Options(root))
    return root, render(model)


def both(root: Path, files: dict[str, bytes]) -> writer.Plan:
    """The plan asking git, asking git with the rendered files' blob ids given (as a render from the cache gives
    them), and reading every file: the same."""
    by_git, by_disk = writer.plan(root, files, 1, ask_git=True), writer.plan(root, files, 1)
    ids = {rel: cache.blob_id(data) for rel, data in files.items()}
    assert by_git == by_disk == writer.plan(root, files, 1, ask_git=True, ids=ids)
    return by_git


QUOTA = "overlays/prod/teams/recsys/platform/resourcequota.team.yaml"


def test_a_clean_tree_is_not_read(repo, monkeypatch):
    root, files = repo
    read = []
    real = writer.same
    monkeypatch.setattr(writer, "same", lambda path, data: read.append(path) or real(path, data))
    assert not both(root, files).drift
    vouched, others, special = survey.vouched(root)
    assert set(vouched) == {r for r in files if r.startswith("overlays/")} and others == []
    read.clear()
    writer.plan(root, files, 1, ask_git=True)
    assert read == []


def holds_exactly(root: Path, files: dict[str, bytes]) -> bool:
    outs = survey.results(survey.survey(root))
    return survey.holds_exactly(root, outs[:-1], outs[-1], files, {rel: cache.blob_id(d) for rel, d in files.items()})


@pytest.fixture(params=[4096, 5, 1], ids=["one slice", "slices of 5", "slices of 1"])
def sliced(request, monkeypatch):
    """holds_exactly compares git's listing a slice of entries at a time: as one slice, and cut anywhere."""
    monkeypatch.setattr(survey, "_SLICE", request.param)


def test_a_tree_holding_exactly_the_rendered_files_is_told_from_the_listings_whole(repo, monkeypatch, sliced):
    """With the rendered files' blob ids, a clean tree is known clean from git's and find's listings as a whole:
    neither is split into entries."""
    root, files = repo
    assert holds_exactly(root, files)
    for name in ("_entries", "find_output"):
        monkeypatch.setattr(survey, name, lambda *a: pytest.fail("a listing was split"))
    ids = {rel: cache.blob_id(data) for rel, data in files.items()}
    p = writer.plan(root, files, 1, ask_git=True, ids=ids)
    assert p.unchanged == list(files) and not p.drift


def _untracked(root: Path) -> None:
    (root / "overlays/dev/extra.yaml").write_text("kind: ConfigMap\n")


def _ignored(root: Path) -> None:
    (root / ".gitignore").write_text("ignored.yaml\n")
    (root / "overlays/prod/ignored.yaml").write_text("kind: ConfigMap\n")


def _link(root: Path) -> None:
    (root / "overlays/staging/link.yaml").symlink_to("argocd/application.root.yaml")


def _swap_for_untracked(root: Path) -> None:  # one file fewer that git tracks, one more it does not: as many files
    (root / QUOTA).unlink()
    (root / "overlays/dev/extra.yaml").write_text("kind: ConfigMap\n")


def _renamed(root: Path) -> None:
    (root / QUOTA).rename(root / f"{QUOTA}.bak")


def _dot_git(root: Path) -> None:  # a file git never lists, wherever it is
    (root / QUOTA).unlink()
    (root / "overlays/dev/.git").write_text("gitdir: /elsewhere\n")


def _fifo(root: Path) -> None:
    (root / QUOTA).unlink()
    os.mkfifo(root / QUOTA)


def _hidden_by_skip_worktree(root: Path) -> None:
    git(root, "update-index", "--skip-worktree", QUOTA)
    _swap_for_untracked(root)


def _changed_under_assume_unchanged(root: Path) -> None:
    git(root, "update-index", "--assume-unchanged", QUOTA)
    (root / QUOTA).write_text((root / QUOTA).read_text().replace("cpu", "cpX"))


def _staged(root: Path) -> None:  # the index and the work tree agree, on other bytes than rendered
    (root / QUOTA).write_text((root / QUOTA).read_text() + "# staged\n")
    git(root, "add", QUOTA)


def _tracked_extra(root: Path) -> None:
    (root / "overlays/dev/extra.yaml").write_text("kind: ConfigMap\n")
    git(root, "add", "overlays/dev/extra.yaml")


def _nested_repository(root: Path) -> None:
    nested = root / "overlays/dev/nested"
    nested.mkdir()
    git(nested, "init", "-q")
    (root / QUOTA).unlink()
    (nested / "x.yaml").write_text("kind: ConfigMap\n")


def _executable(root: Path) -> None:  # the same bytes, committed as an executable: read file by file
    (root / QUOTA).chmod(0o755)
    git(root, "add", QUOTA)


@pytest.mark.parametrize("change", [_untracked, _ignored, _link, _swap_for_untracked, _renamed, _dot_git, _fifo, _hidden_by_skip_worktree,
                                    _changed_under_assume_unchanged, _staged, _tracked_extra, _nested_repository,
                                    _executable])
def test_a_tree_not_exactly_as_rendered_is_told_file_by_file(repo, change, sliced):
    """Hostile to that whole-listing answer: as many files as rendered but not those (an untracked file for a deleted
    one, a file git never lists, a FIFO, a file git is told not to look at), the index's bytes not the rendered ones,
    a nested repository, a mode: each is told file by file, and the plan is the one reading every file gives."""
    root, files = repo
    change(root)
    assert not holds_exactly(root, files)
    assert (both(root, files) == writer.Plan(unchanged=list(files))) == (change is _executable)


def test_a_sha256_repository_is_compared_byte_for_byte(tmp_path):
    """A repository whose objects are named by SHA-256: git's blob ids are not the SHA-1 ids kflowgen computes, so
    its generated files are read and compared (no file is drift because its id is of another kind)."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    if subprocess.run(["git", "init", "-q", "--object-format=sha256"], cwd=root).returncode:
        pytest.skip("this git has no SHA-256 repositories")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    model, _ = pipeline.load(Options(root))
    files = render(model)
    assert len(next(iter(survey.vouched(root)[0].values()))) == 64
    assert both(root, files) == writer.Plan(unchanged=list(files))
    (root / QUOTA).write_text((root / QUOTA).read_text().replace("requests.cpu", "requests.cpX"))
    assert both(root, files).changed == [QUOTA]


def test_every_kind_of_difference_is_seen_as_without_git(repo):
    root, files = repo
    quota = root / QUOTA
    quota.write_text(quota.read_text().replace("requests.cpu", "requests.cpX"))  # same size: stat alone may not tell
    (root / "overlays/dev/teams/nlp/platform/namespace.yaml").unlink()
    git(root, "rm", "-q", "--cached", "overlays/dev/argocd/application.root.yaml")  # untracked now
    (root / "overlays/dev/extra.yaml").write_text("# Generated by kflowgen\nkind: ConfigMap\n")
    (root / ".gitignore").write_text("ignored.yaml\n")
    (root / "overlays/prod/ignored.yaml").write_text("kind: ConfigMap\n")
    (root / "overlays/staging/link.yaml").symlink_to("argocd/application.root.yaml")
    staged = root / "overlays/staging/argocd/application.root.yaml"
    staged.write_text(staged.read_text() + "# staged\n")
    git(root, "add", str(staged))
    p = both(root, files)
    assert (p.changed, p.added) == ([QUOTA, "overlays/staging/argocd/application.root.yaml"],
                                    ["overlays/dev/teams/nlp/platform/namespace.yaml"])
    assert (p.removed, p.foreign) == (["overlays/dev/extra.yaml"],
                                      ["overlays/prod/ignored.yaml", "overlays/staging/link.yaml"])


def test_files_git_is_told_not_to_look_at_are_read(repo):
    root, files = repo
    for flag, rel in (("--assume-unchanged", QUOTA), ("--skip-worktree", "overlays/dev/argocd/application.root.yaml")):
        git(root, "update-index", flag, rel)
        path = root / rel
        path.write_text(path.read_text().replace("a", "b"))
    vouched, others, special = survey.vouched(root)
    assert QUOTA in others and "overlays/dev/argocd/application.root.yaml" in others
    assert both(root, files).changed == ["overlays/dev/argocd/application.root.yaml", QUOTA]
    git(root, "update-index", "--no-assume-unchanged", QUOTA)


def test_git_is_not_asked_when_bytes_on_disk_may_differ_from_the_blob(repo, tmp_path):
    root, files = repo
    git(root, "config", "core.autocrlf", "true")
    assert survey.vouched(root) is None
    git(root, "config", "core.autocrlf", "false")
    assert survey.vouched(root) is not None
    for where in (root / ".gitattributes", root / "overlays/dev/.gitattributes"):
        where.write_text("*.yaml text eol=crlf\n")
        assert survey.vouched(root) is None
        where.unlink()
    assert survey.vouched(tmp_path) is None  # not a work tree
    assert not both(root, files).drift


def test_an_untracked_repository_inside_overlays_is_foreign_file_by_file(repo, tmp_path):
    root, files = repo
    nested = root / "overlays/dev/nested"
    nested.mkdir()
    git(nested, "init", "-q")
    (nested / "x.yaml").write_text("kind: ConfigMap\n")
    git(nested, "add", "-A")
    git(nested, "commit", "-qm", "nested")
    vouched, others, _ = survey.vouched(root)  # git lists the untracked repository as a folder; find, its files
    assert "overlays/dev/nested/x.yaml" in others and "overlays/dev/nested/x.yaml" not in vouched
    assert "overlays/dev/nested/x.yaml" in both(root, files).foreign


def test_git_is_not_asked_when_it_would_compare_less_than_it_records(repo):
    root, files = repo
    for setting, value in (("core.checkStat", "minimal"), ("core.trustctime", "false"), ("core.ignoreStat", "true"),
                           ("core.autocrlf", "input")):
        git(root, "config", setting, value)
        assert survey.vouched(root) is None, setting
        git(root, "config", "--unset", setting)
    assert survey.vouched(root) is not None


def test_a_tracked_file_that_became_a_folder_is_missing_as_without_git(repo):
    root, files = repo
    quota = root / QUOTA
    quota.unlink()
    quota.mkdir()
    (quota / "inside.yaml").write_text("kind: ConfigMap\n")
    p = both(root, files)
    assert QUOTA in p.added and f"{QUOTA}/inside.yaml" in p.foreign


ODD_NAMES = ["tab\there.yaml", "new\nline.yaml", "two  spaces.yaml", "\x01marked.yaml", "\x02marked.yaml",
             "H 100644 " + "0" * 40 + " 0\toverlays", "ünïcode.yaml"]  # the last but one: an entry git would list


@pytest.mark.parametrize("tracked", [False, True])
def test_files_with_odd_names_are_seen_as_without_git(repo, tracked):
    """Names holding what git's and find's listings are split on (tabs, newlines, spaces, the bytes find's listing
    marks entries with, a whole ls-files entry), tracked or not, changed or not: the same plan as reading every
    file."""
    root, files = repo
    folder = root / "overlays/dev/teams/nlp/platform"
    for i, name in enumerate(ODD_NAMES):
        (folder / name).write_text(f"# Generated by kflowgen\nkind: ConfigMap\n# {i}\n")
    if tracked:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "odd")
        (folder / ODD_NAMES[0]).write_text("# Generated by kflowgen\nkind: Secret\n")
    rendered = dict(files)
    rendered.update({f"overlays/dev/teams/nlp/platform/{name}": b"# Generated by kflowgen\nkind: ConfigMap\n# 1\n"
                     for name in ODD_NAMES[1:3]})
    p = both(root, rendered)
    odd = [f"overlays/dev/teams/nlp/platform/{name}" for name in ODD_NAMES]
    assert sorted(p.removed) == sorted(odd[:1] + odd[3:]) and p.changed == [odd[2]] and odd[1] in p.unchanged
    vouched, others, _ = survey.vouched(root)
    assert (set(odd[1:]) <= set(vouched) and odd[0] in others) if tracked else set(odd) <= set(others)


def test_unmerged_and_unusual_index_entries_are_not_vouched_for(repo):
    """Entries of a merge in progress (stages 1 to 3) and a link git tracks are read, as without git."""
    root, files = repo
    blob = git(root, "hash-object", "-w", str(root / QUOTA)).strip()
    git(root, "rm", "-q", "--cached", QUOTA)
    subprocess.run(["git", "update-index", "--index-info"], cwd=root, check=True, text=True,
                   input="".join(f"100644 {blob} {stage}\t{QUOTA}\n" for stage in (1, 2, 3)))
    link = "overlays/dev/teams/nlp/platform/link.yaml"
    (root / link).symlink_to("namespace.yaml")
    git(root, "add", link)
    vouched, others, _ = survey.vouched(root)
    assert QUOTA in others and link in others and QUOTA not in vouched and link not in vouched
    p = both(root, files)
    assert QUOTA in p.unchanged and link in p.foreign


OID = "a" * 40
DEBUG = "  ctime: 1:2\n  mtime: 3:4\n  dev: 5\tino: 6\n  uid: 7\tgid: 8\n  size: 9\tflags: 0\n"


@pytest.mark.parametrize("listing, exact, entries", [
    (f"H 100644 {OID} 0\toverlays/a.yaml\0S 100755 {OID} 0\toverlays/b c.yaml\0", False,
     [("H", "S"), ("100644", "100755"), (OID, OID), ("0", "0"), ("overlays/a.yaml", "overlays/b c.yaml")]),
    (f"h 100644 {OID} 2\toverlays/a\tb.yaml\0", False,  # a tab in a path
     [("h",), ("100644",), (OID,), ("2",), ("overlays/a\tb.yaml",)]),
    (f"H 100644 {OID} 0\toverlays/a.yaml\0{DEBUG}", True,
     [("H",), ("100644",), (OID,), ("0",), ("overlays/a.yaml",), ("1",), ("2",), ("3",), ("4",), ("6",), ("9",)]),
    ("", False, [()] * 5),
    (f"H 100644 {OID} 0\toverlays/a.yaml\0junk", False, None),  # after the last entry
    (f"H 100644 {OID}\toverlays/a.yaml\0", False, None),  # a field missing
    (f"H 100644 {OID} 0 x\toverlays/a.yaml\0", False, None),  # a field too many
    (f"X 10z6 {OID} 0\tH 100644 {OID} 0\toverlays/a.yaml\0", False, None),  # an entry in a path after one not in shape
    (f"junk H 100644 {OID} 0\toverlays/a.yaml\0", False, None),
    (f"H 100644 {OID} 0\toverlays/a.yaml\0{DEBUG.replace('  dev', '  device')}", True, None),
    (f"H 100644 {OID} 0\toverlays/a.yaml\0{DEBUG}H 100644 {OID} 0\toverlays/b.yaml\0", True, None),  # no stat data
    (f"H 100644 {OID} 0\toverlays/a.yaml\0", True, None),
])
def test_git_listing_is_read_entry_after_entry_or_not_at_all(listing, exact, entries):
    """ls-files' listing, read as columns; anything not in its shape (anywhere in it) and nothing is vouched for."""
    found = survey._entries(listing, exact)
    assert (found if found is None else [tuple(column) for column in found]) == entries


TIMES = "1796406259.6013919450:1796406259.0000000010"  # ctime and mtime as find gives them: ten digits of fraction


@pytest.mark.parametrize("found, recorded, same", [
    (f"{TIMES}:10002606:786", f"{TIMES}:10002606:786", True),
    (f"{TIMES}:4305969902:786", f"{TIMES}:11002606:786", True),  # an inode beyond 32 bits, as git keeps it
    (f"{TIMES}:10002606:4294968082", f"{TIMES}:10002606:786", True),  # a size too
    (f"{TIMES}:10002606:786", "1796406259.6013919450:1796406259.0000000020:10002606:786", False),  # 10 ns apart
    (f"{TIMES}:10002606:786", "1796406258.6013919450:1796406259.0000000010:10002606:786", False),  # a second
    (f"{TIMES}:10002607:786", f"{TIMES}:10002606:786", False),
    (f"{TIMES}:10002606:785", f"{TIMES}:10002606:786", False),
    ("1796406259.601391:1796406259.000000:10002606:786", "1796406259.6013910000:1796406259.0000000000:10002606:786",
     False),  # a find that gives microseconds: not to the nanosecond
    ("1796406259.6013919451:1796406259.0000000010:10002606:786", f"{TIMES}:10002606:786", False),
    ("1796406259:1796406259.0000000010:10002606:786", "1796406259.0000000000:1796406259.0000000010:10002606:786",
     False),
    (None, f"{TIMES}:10002606:786", False),  # not a regular file to find
])
def test_stat_data_as_find_gives_it_is_compared_with_gits_to_the_nanosecond(found, recorded, same):
    assert survey._same_stat(found, recorded) is same


@pytest.mark.parametrize("forked", [False, True])
def test_same_folders_are_those_holding_exactly_the_rendered_files(tmp_path, monkeypatch, forked):
    from kflowgen import parallel

    if forked:
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    files = {f"o/{name}/{f}": f"{name} {f}\n".encode() for name in ("same", "extra", "differs", "link", "gone",
                                                                       "folder") for f in ("a.yaml", "b.yaml")}
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "o/extra/c.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "o/differs/b.yaml").write_text("differs b.yaml \n")
    (tmp_path / "o/link/b.yaml").unlink()
    (tmp_path / "o/link/b.yaml").symlink_to(tmp_path / "o/same/b.yaml")  # same bytes, but a link
    (tmp_path / "o/folder/b.yaml").unlink()
    (tmp_path / "o/folder/b.yaml").mkdir()
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / "o/gone" / f).unlink()
    (tmp_path / "o/gone").rmdir()
    folders = {f"o/{name}": [r for r in files if r.startswith(f"o/{name}/")]
               for name in ("same", "extra", "differs", "link", "gone", "folder")}
    folders["o/empty"] = []
    (tmp_path / "o/empty").mkdir()
    assert writer.same_folders(tmp_path, folders, files, 2) == {"o/same", "o/empty"}


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(0.5)
open(sys.argv[2], "w").close()  # then the lock ends with the process
"""


def test_a_write_waits_for_a_run_reading_overlays_and_says_so(repo, tmp_path, capfd):
    import sys

    root, files = repo
    changed = dict(files)
    changed[QUOTA] = files[QUOTA] + b"# changed\n"
    released = tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(released)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    plan, _ = writer.write(root, changed)
    assert released.exists() and plan.changed == [QUOTA]  # it wrote only after the reader let go
    assert holder.wait() == 0
    assert f"kflowgen: waiting for another kflowgen run in {root}" in capfd.readouterr().err
    assert writer.plan(root, changed).drift is False


def test_where_the_folder_cannot_be_locked_writes_go_on(repo, monkeypatch):
    import errno
    import fcntl

    def refused(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")  # as on a network file system, for a folder

    monkeypatch.setattr(fcntl, "flock", refused)
    root, files = repo
    changed = dict(files)
    changed[QUOTA] = files[QUOTA] + b"# changed\n"
    plan, _ = writer.write(root, changed)
    assert plan.changed == [QUOTA] and writer.check(root, changed)[0].drift is False


def _holding(_state, folders: list[str]) -> list[bool]:
    """Whether this process has each folder open (forked workers run it: module level, to be picklable)."""
    import os

    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return [folder in links for folder in folders]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_forked_workers_do_not_keep_the_repository_lock(repo, monkeypatch):
    from kflowgen import parallel

    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    root = str(repo[0].resolve())
    with writer.locked(repo[0]):
        assert parallel.NOT_INHERITED and _holding(None, [root]) == [True]  # this process holds it
        assert parallel.fan_out(_holding, [root] * 8, 2) == [False] * 8
    assert not parallel.NOT_INHERITED and _holding(None, [root]) == [False]


# --- blob ids kept with rendered files in the result cache -------------------------------------------------------

def gate_check(root: Path, use_cache: bool) -> list[tuple[str, str]]:
    report = pipeline.render_to_disk(Options.at(root, 1, use_cache), check_only=True)
    return sorted((d.path, d.code) for d in report.diagnostics)


def test_a_drifted_file_git_vouches_for_is_caught_with_a_warm_cache(repo, tmp_path, monkeypatch):
    """The rendered files' blob ids come from the render entries: a committed overlay file that differs from what
    the specs render (git vouches for its bytes, with another blob id) is KF501, warm as cold; and so is one changed
    behind git's back, which is read."""
    root, files = repo
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    assert gate_check(root, True) == []  # fills the cache
    assert any((tmp_path / "cache/render").rglob("*"))
    other = "overlays/dev/teams/nlp/platform/namespace.yaml"
    for rel in (QUOTA, other):
        (root / rel).write_text((root / rel).read_text().replace("team", "teem", 1))
    git(root, "add", QUOTA)
    git(root, "commit", "-qm", "drift, committed")
    vouched, _, _ = survey.vouched(root)
    assert QUOTA in vouched and other not in vouched
    want = sorted([(QUOTA, "KF501"), (other, "KF501")])
    assert gate_check(root, False) == want  # cold (--no-cache)
    assert gate_check(root, True) == want  # warm: every unit from the cache
    rendered = render_cached(pipeline.load(Options.at(root, 1, True))[0], Options.at(root, 1, True))
    assert rendered.files == files and rendered.ids == {rel: cache.blob_id(data) for rel, data in files.items()}


def test_a_damaged_render_entry_is_not_trusted(repo, tmp_path, monkeypatch):
    """An entry whose recorded blob id was changed (to the id of the drifted bytes on disk, the one change that would
    make the drift check pass) fails its checksum and is rendered again; one whose checksum was made again but whose
    index no longer adds up to its files is rendered again too."""
    import hashlib

    root, files = repo
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    assert gate_check(root, True) == []
    drifted = files[QUOTA].replace(b"requests.cpu", b"requests.cpX")
    (root / QUOTA).write_bytes(drifted)
    git(root, "add", QUOTA)
    git(root, "commit", "-qm", "drift, committed")
    good, bad = cache.blob_id(files[QUOTA]).encode(), cache.blob_id(drifted).encode()
    entries = [e for e in (tmp_path / "cache/render").rglob("*") if e.is_file() and good in e.read_bytes()]
    assert len(entries) == 1
    entry = entries[0]
    check, _, body = entry.read_bytes().partition(b"\n")
    entry.write_bytes(check + b"\n" + body.replace(good, bad))  # the old checksum
    assert gate_check(root, True) == [(QUOTA, "KF501")]
    assert good in entry.read_bytes() and bad not in entry.read_bytes()  # rendered again, and the entry with it
    check, _, body = entry.read_bytes().partition(b"\n")
    first, _, rest = body.partition(b"\n")
    count, folders, size, data = first.split(b" ")
    shifted = b"%s %s %d %s\n" % (count, folders, int(size) + 1, data) + rest
    entry.write_bytes(hashlib.sha256(shifted).hexdigest().encode() + b"\n" + shifted)  # checksum made again
    assert gate_check(root, True) == [(QUOTA, "KF501")]
    assert entry.read_bytes() == check + b"\n" + body  # rendered again, and kept as it was


def test_listings_started_behind_run_at_a_lower_priority_and_give_the_same_answers(repo, monkeypatch):
    """The overlays listing and the base branch's, wanted only later, run behind this process (nice 10): on a core
    it leaves idle instead of taking turns with it. Their answers are the same, and without a nice they still run."""
    root, files = repo
    niceness = [int(out) for out, _ in survey.results(survey.start([["nice"], ["nice"]][:1])
                                                      + survey.start([["nice"]], behind=True))]
    assert niceness[1] == min(niceness[0] + 10, 19)
    assert survey.results(survey.survey(root, behind=True)) == survey.results(survey.survey(root))
    monkeypatch.setattr(survey, "_NICE", [])
    assert [int(out) for out, _ in survey.results(survey.start([["nice"]], behind=True))] == niceness[:1]
    # a nice that cannot run (it fails, as a container that refuses setpriority makes it): git's own answers
    for broken in (["sh", "-c", "exit 125", "nice"], ["sh", "-c", "exit 1", "nice"]):
        monkeypatch.setattr(survey, "_NICE", broken)
        assert survey.results(survey.survey(root, behind=True)) == survey.results(survey.survey(root))
        report, changes = pipeline.gate(Options(root), "HEAD")
        assert not report.errors and changes is not None and not changes.diagnostics
    monkeypatch.setattr(survey, "_NICE", [])
    seen = []
    real = survey.start

    def start(argvs, here=(), root=None, behind=False):
        seen.append((behind, " ".join(" ".join(a) for a in [*argvs, *here])))
        return real(argvs, here, root, behind)

    monkeypatch.setattr(survey, "start", start)
    pipeline.gate(Options(root), "HEAD")
    # the specs' listing, which the load waits for at once, is not behind; the overlays' (git's and find's) and the
    # base's are, and git's small questions (its settings, the attributes file's path) are not
    assert sorted(behind for behind, _ in seen).count(True) == 3
    assert all(behind == ("overlays" in what or "ls-tree" in what) for behind, what in seen)
    assert any("find overlays" in what and behind for behind, what in seen)


def test_listings_started_behind_are_each_run_once_when_they_answer(repo, monkeypatch):
    """A command started behind is run again only when it fails; the listings a gate starts behind all answer in a
    clean repository, so reading them starts nothing more (git's settings question, which answers "none set" with a
    failure, is not started behind)."""
    from kflowgen.flow import gitref

    root, _ = repo
    started = survey.survey(root, behind=True) + gitref.started(root, "HEAD")
    again = []
    real = survey.start
    monkeypatch.setattr(survey, "start", lambda *a, **kw: again.append(a) or real(*a, **kw))
    outs = survey.results(started)
    assert again == [] and outs[2][1] == 1  # (the settings question: none of those kflowgen asks about is set)
