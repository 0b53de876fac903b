"""Unchanged spec files are not read in a git work tree: git vouches for them (kflowgen.survey), their results come
from the cache by blob id, and every answer is exactly the one a cold run that reads every file gives: edits that
keep a file's size and mtime, edits within the index's own second (racy git), renames, stale index entries, files
git is told not to look at, untracked, ignored and deleted files, links, worktrees, no commits, no git at all."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PROJECT, copy_repo, git
from kflowgen import ahead, cache, survey
from kflowgen.flow import gitref, pipeline
from kflowgen.options import Options
from kflowgen.specs import loader, read
from kflowgen.specs.discover import spec_files
from kflowgen.targets import render

NLP = "specs/teams/nlp.yaml"
SWEEP = "specs/experiments/vision/resnet-sweep.yaml"


@pytest.fixture
def repo(committed_example) -> Path:
    return committed_example


@pytest.fixture
def store(tmp_path) -> cache.Cache:
    return cache.Cache(tmp_path / "cache")


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The spec files read from disk (one process: the readers are not forked for so few files)."""
    seen: list[str] = []
    real = loader.read_file
    monkeypatch.setattr(loader, "read_file", lambda root, rel: seen.append(rel) or real(root, rel))
    return seen


def same_as_cold(root: Path, store: cache.Cache, reads: list[str]) -> list[str]:
    """Load the specs with the cache (twice: the first run may fill it) and without it; both give the same model,
    findings, blob ids and rendered files. Returns the files the second cached run read."""
    cold = pipeline.load(Options(root, 1))
    cold_ids = read.read(Options(root, 1)).model
    pipeline.load(Options(root, 1, store))
    reads.clear()
    warm = pipeline.load(Options(root, 1, store))
    read_now = sorted(set(reads))
    assert warm == cold
    specs = read.read(Options(root, 1, store))
    assert (specs.model is None) == (cold_ids is None)
    if cold_ids is not None:
        assert specs.model.inputs == cold_ids.inputs
    if cold[0] is not None:
        assert render(warm[0]) == render(cold[0])
    for git_asked in (True, False):  # the listing a command makes ahead, in a forked child, is the one made here
        assert ahead.Ahead(root, git_asked).answer() == ahead.spec_listing(root, survey.specs(root, git_asked))
    return read_now


def edit_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    assert len(old) == len(new)
    before = os.stat(path)
    path.write_text(path.read_text().replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_clean_tree_is_not_read_and_gives_the_cold_result(repo, store, reads):
    assert same_as_cold(repo, store, reads) == []
    vouched, others, _ = survey.vouched(repo, folder="specs")
    assert len(vouched) == len(list((repo / "specs").rglob("*.yaml"))) and others == []


def test_without_the_cache_every_file_is_read(repo, reads):
    pipeline.load(Options(repo, 1))
    assert len(set(reads)) == len(list((repo / "specs").rglob("*.yaml")))


def test_a_spec_edited_without_changing_its_size_or_mtime(repo, store, reads):
    same_as_cold(repo, store, reads)
    edit_keeping_size_and_mtime(repo / NLP, "cpu: 192", "cpu: 191")
    assert NLP in same_as_cold(repo, store, reads)
    assert str(pipeline.load(Options(repo, 1, store))[0].team("prod", "nlp").quota["prod"].cpu) == "191"  # not the committed 192


def test_an_edit_within_the_second_the_index_was_written_is_seen(repo, store, reads):
    """Racy git: an entry whose mtime is not older than the index file cannot be trusted on its stat data; git
    compares its content."""
    same_as_cold(repo, store, reads)
    path = repo / NLP
    for _ in range(20):  # stage the file, edit it keeping size and mtime, all within one second of the clock
        while time.time() % 1 > 0.3:
            time.sleep(0.05)
        os.utime(path)  # its mtime in this second too (the file as committed: checked out again after a miss)
        git(repo, "add", NLP)
        edit_keeping_size_and_mtime(path, "cpu: 192", "cpu: 193")
        index, spec = os.stat(repo / ".git/index"), os.stat(path)
        if int(index.st_mtime) == int(spec.st_mtime) == int(spec.st_ctime):
            break
        git(repo, "checkout", "--", NLP)
    else:
        pytest.skip("the clock moved on during every attempt")
    assert NLP not in git(repo, "diff", "--cached", "--name-only")  # the index still has the committed blob
    assert NLP in same_as_cold(repo, store, reads)
    assert str(pipeline.load(Options(repo, 1, store))[0].team("prod", "nlp").quota["prod"].cpu) == "193"


def test_an_edit_git_itself_cannot_see_is_seen(repo, store, reads):
    """A file rewritten within the second git recorded it, its old mtime set back (so not racy): git compares times
    to the second and says the file is unchanged; kflowgen compares them to the nanosecond and reads it."""
    same_as_cold(repo, store, reads)
    path = repo / NLP
    for _ in range(20):
        while time.time() % 1 > 0.3:
            time.sleep(0.05)
        os.chmod(path, os.stat(path).st_mode)  # the file's change time is now; its bytes and mtime as committed
        git(repo, "add", NLP)  # git records that change time
        recorded = os.stat(path).st_ctime
        edit_keeping_size_and_mtime(path, "cpu: 192", "cpu: 197")
        if int(os.stat(path).st_ctime) == int(recorded):
            break
        git(repo, "checkout", "--", NLP)
    else:
        pytest.skip("the clock moved on during every attempt")
    assert NLP in same_as_cold(repo, store, reads)
    assert str(pipeline.load(Options(repo, 1, store))[0].team("prod", "nlp").quota["prod"].cpu) == "197"


def test_spec_files_with_odd_names_are_vouched_for_and_read_as_without_git(repo, store, reads):
    """Names holding what git's and find's listings are split on (tabs, newlines, spaces, the bytes find's listing
    marks entries with, a whole ls-files entry): vouched for when unchanged, read when changed."""
    names = ["tab\there", "new\nline", "two  spaces", "\x01marked", "\x02marked", "H 100644 " + "0" * 40 + " 0\tx"]
    odd = [f"specs/experiments/nlp/{name}.yaml" for name in names]
    for i, rel in enumerate(odd):
        (repo / rel).write_text((repo / SWEEP).read_text().replace("team: vision", "team: nlp")
                                .replace("resnet-sweep", f"odd-{i}"))
    read_now = same_as_cold(repo, store, reads)
    assert set(odd) <= set(read_now)  # untracked: read
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "odd")
    assert same_as_cold(repo, store, reads) == []
    edit_keeping_size_and_mtime(repo / odd[0], "cpu: 8", "cpu: 7")
    assert same_as_cold(repo, store, reads) == [odd[0]]


def test_a_renamed_file(repo, store, reads):
    same_as_cold(repo, store, reads)
    git(repo, "mv", SWEEP, "specs/experiments/vision/resnet-sweep-2.yaml")
    same_as_cold(repo, store, reads)
    shutil.move(repo / "specs/experiments/vision/resnet-sweep-2.yaml", repo / "specs/experiments/nlp/moved.yaml")
    assert "specs/experiments/nlp/moved.yaml" in same_as_cold(repo, store, reads)  # a team's experiment elsewhere


def test_stale_index_entries(repo, store, reads):
    same_as_cold(repo, store, reads)
    os.utime(repo / NLP, (1, 1))  # same bytes, other stat data: git cannot vouch, so the file is read
    assert NLP in same_as_cold(repo, store, reads)
    path = repo / SWEEP
    path.write_text(path.read_text().replace("python train.py", "python train2.py"))
    git(repo, "add", SWEEP)  # the index names the new blob, the commit the old one: the index is what is on disk
    path.write_text(path.read_text().replace("train2.py", "train3.py"))  # and the file moved on again
    assert SWEEP in same_as_cold(repo, store, reads)
    assert b"train3.py" in b"".join(render(pipeline.load(Options(repo, 1, store))[0]).values())


def test_files_git_is_told_not_to_look_at_are_read(repo, store, reads):
    same_as_cold(repo, store, reads)
    for flag, rel in (("--assume-unchanged", NLP), ("--skip-worktree", SWEEP)):
        git(repo, "update-index", flag, rel)
    (repo / NLP).write_text((repo / NLP).read_text().replace("cpu: 192", "cpu: 190"))
    (repo / SWEEP).write_text((repo / SWEEP).read_text() + "bogus: 1\n")
    read_now = same_as_cold(repo, store, reads)
    assert NLP in read_now and SWEEP in read_now
    assert "KF201" in {d.code for d in pipeline.load(Options(repo, 1, store))[1]}


def test_untracked_ignored_and_deleted_files_in_a_dirty_tree(repo, store, reads):
    same_as_cold(repo, store, reads)
    new = repo / "specs/experiments/nlp/new.yaml"
    new.write_text((repo / SWEEP).read_text().replace("team: vision", "team: nlp").replace("resnet-sweep", "new"))
    (repo / ".gitignore").write_text("ignored.yaml\n")
    ignored = repo / "specs/experiments/nlp/ignored.yaml"
    ignored.write_text("team: nlp\nname: ignored\nbogus: true\n")  # ignored by git, read by kflowgen all the same
    (repo / "specs/models/recsys").mkdir(parents=True, exist_ok=True)
    for p in (repo / "specs/models").rglob("*.yaml"):
        p.unlink()  # deleted in the work tree, still in the index
    (repo / "specs/teams/stray.yml").mkdir()  # a folder named like a spec
    read_now = same_as_cold(repo, store, reads)
    assert {new.relative_to(repo).as_posix(), ignored.relative_to(repo).as_posix()} <= set(read_now)
    model, diags = pipeline.load(Options(repo, 1, store))
    assert model is None and "specs/experiments/nlp/ignored.yaml" in {d.path for d in diags}


def test_a_tracked_folder_replaced_by_a_link_is_refused_as_without_git(repo, store, reads, tmp_path):
    same_as_cold(repo, store, reads)
    outside = tmp_path / "outside"
    shutil.copytree(repo / "specs/experiments/vision", outside)
    shutil.rmtree(repo / "specs/experiments/vision")
    (repo / "specs/experiments/vision").symlink_to(outside, target_is_directory=True)
    same_as_cold(repo, store, reads)
    assert "KF312" in {d.code for d in pipeline.load(Options(repo, 1, store))[1]}


def test_a_tracked_file_replaced_by_a_link_or_a_fifo(repo, store, reads):
    same_as_cold(repo, store, reads)
    (repo / NLP).unlink()
    (repo / NLP).symlink_to(repo / "specs/teams/recsys.yaml")
    same_as_cold(repo, store, reads)
    (repo / NLP).unlink()
    os.mkfifo(repo / NLP)
    same_as_cold(repo, store, reads)
    assert "KF101" in {d.code for d in pipeline.load(Options(repo, 1, store))[1]}


def test_a_repository_with_no_git_at_all(tmp_path, store, reads):
    root = copy_repo(PROJECT, tmp_path / "plain")
    assert survey.vouched(root, folder="specs") is None
    same_as_cold(root, store, reads)
    assert len(set(reads)) == len(list((root / "specs").rglob("*.yaml")))  # nothing is vouched for: all read


def test_a_repository_with_no_commits(tmp_path, store, reads):
    root = copy_repo(PROJECT, tmp_path / "fresh")
    git(root, "init", "-q")
    same_as_cold(root, store, reads)  # nothing tracked: every file read
    assert reads
    git(root, "add", "specs/teams")  # some files in the index, none committed
    team = root / "specs/teams/recsys.yaml"
    team.write_text(team.read_text().replace("cpu: 64", "cpu: 63"))
    read_now = same_as_cold(root, store, reads)
    assert "specs/teams/recsys.yaml" in read_now and "specs/teams/nlp.yaml" not in read_now


def test_a_git_worktree_and_a_repository_below_the_top(repo, store, reads, tmp_path):
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"))
    worktree = tmp_path / "wt"
    assert (worktree / ".git").is_file()
    assert same_as_cold(worktree, store, reads) == []
    edit_keeping_size_and_mtime(worktree / NLP, "cpu: 192", "cpu: 194")
    assert NLP in same_as_cold(worktree, store, reads)
    top = tmp_path / "mono"
    copy_repo(PROJECT, top / "ml")
    git(top, "init", "-q")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "mono")
    assert same_as_cold(top / "ml", store, reads) == []  # git's paths are the repository's, not the top's
    edit_keeping_size_and_mtime(top / "ml" / NLP, "cpu: 192", "cpu: 195")
    assert NLP in same_as_cold(top / "ml", store, reads)


def test_line_ending_conversion_or_attributes_read_every_file(repo, store, reads):
    same_as_cold(repo, store, reads)
    (repo / ".gitattributes").write_text("*.yaml text eol=crlf\n")
    assert survey.vouched(repo, folder="specs") is None
    assert len(same_as_cold(repo, store, reads)) == len(list((repo / "specs").rglob("*.yaml")))


def test_edits_about_to_be_written_are_read_as_edited(repo, store):
    pipeline.load(Options(repo, 1, store))
    edited = {NLP: (repo / NLP).read_bytes().replace(b"cpu: 192", b"cpu: 196")}
    cold = pipeline.load(Options(repo, 1), edits=edited)
    assert pipeline.load(Options(repo, 1, store), edits=edited) == cold
    assert str(cold[0].team("prod", "nlp").quota["prod"].cpu) == "196"


def test_finds_listing_of_specs_is_the_walk(repo, tmp_path):
    from kflowgen.specs.discover import spec_files

    def listed(root: Path):
        return survey.find_paths(survey.find_output(
            survey.results(survey.survey(root, git=False, folder="specs", folders=True))[0]))

    (repo / "specs/.yaml").write_text("name: x\n")  # no name, only an extension: not a spec file
    (repo / "specs/teams/odd.yml").mkdir()  # a folder named like a spec: reported, and walked into
    (repo / "specs/teams/odd.yml/inner.yaml").write_text("name: x\n")
    os.mkfifo(repo / "specs/experiments/nlp/pipe.yaml")
    (repo / "specs/experiments/nlp/notes.txt").write_text("not a spec\n")
    (repo / "specs/experiments/nlp/deep/er").mkdir(parents=True)
    (repo / "specs/experiments/nlp/deep/er/x.yaml").write_text("team: nlp\n")
    (repo / "specs/experiments/nlp/with space & ünïcode.yaml").write_text("team: nlp\n")
    assert listed(repo) and spec_files(repo, None, listed(repo)) == spec_files(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text("team: nlp\n")
    (repo / "specs/experiments/away").symlink_to(outside, target_is_directory=True)
    (repo / "specs/experiments/vision/alias.yaml").symlink_to(repo / SWEEP)
    walked = spec_files(repo)
    assert ("specs/experiments/away/", "outside") in walked and ("specs/experiments/vision/alias.yaml",
                                                                 "experiment") in walked
    assert spec_files(repo, None, listed(repo)) == walked  # links: walked, not taken from find


@pytest.mark.parametrize("name", [".yaml", "..yml", "a.yaml", ".a.yml", "a.yaml.txt", "a.YAML", "yaml", "a.yml",
                                  "...yaml", "a..yaml", ".yaml.yml", "a"])
def test_a_spec_file_is_named_as_splitext_reads_its_extension(name):
    from kflowgen.specs.discover import _named_like_a_spec

    for rel in (f"specs/{name}", f"specs/experiments/nlp/{name}"):
        assert _named_like_a_spec(rel) == (os.path.splitext(rel)[1] in (".yaml", ".yml")), rel


def test_spec_files_gives_each_path_the_kind_its_place_makes_it(repo, tmp_path):
    """spec_files takes the runs of paths under specs/models/ and specs/experiments/ whole: the same kinds, in the
    same order, as asking what each path is (discover._kind), with names beside those folders', deeper folders,
    strays, a folder named like a spec and a folder link that leaves the repository; walked, listed by find, or
    from a snapshot."""
    from kflowgen.specs import discover

    def one_by_one(paths: list[str]) -> list[tuple[str, str]]:
        order = {"platform": 0, "team": 1, "model": 2, "experiment": 3, "stray": 4, "outside": 5}
        found = [(rel, discover._kind(rel)) for rel in paths if rel != discover.PLATFORM]
        return [(discover.PLATFORM, "platform")] + sorted(found, key=lambda item: (order[item[1]], item[0]))

    def listed(root: Path):
        return survey.find_paths(survey.find_output(
            survey.results(survey.survey(root, git=False, folder="specs", folders=True))[0]))

    for rel in ("specs/models.yaml", "specs/models-x/a.yaml", "specs/modelsZ/a.yaml", "specs/models/loose.yaml",
                "specs/models/nlp/deep/er.yaml", "specs/experiments.yml", "specs/experiments/loose.yaml",
                "specs/experiments0/a.yaml", "specs/experiments/nlp/a/b/c.yaml", "specs/teams/sub/x.yaml",
                "specs/teams.yaml", "specs/a.yaml", "specs/zz/teams/x.yaml", "specs/teams/.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("name: x\n")
    (repo / "specs/experiments/odd.yaml").mkdir()
    paths = discover._spec_paths(repo)
    assert len(paths) > 20 and spec_files(repo) == one_by_one(paths) == spec_files(repo, None, listed(repo))
    snapshot = {rel: b"" for rel in paths}
    assert spec_files(repo, snapshot) == one_by_one(discover._spec_paths(repo, snapshot))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text("team: nlp\n")
    (repo / "specs/experiments/away").symlink_to(outside, target_is_directory=True)
    (repo / "specs/models/gone").symlink_to(outside, target_is_directory=True)
    paths = discover._spec_paths(repo)
    assert {"specs/experiments/away/", "specs/models/gone/"} <= set(paths)
    assert spec_files(repo) == one_by_one(paths) == spec_files(repo, None, listed(repo))


def test_a_listing_made_ahead_whose_child_fails_is_made_here(repo, monkeypatch):
    """The command line has specs/ listed by a forked child while it imports the stages (ahead.Ahead); a child that
    fails (or is killed) leaves no listing: get() makes it here, the same as a run without the child."""
    parent, real = os.getpid(), ahead.spec_listing

    def failing_in_the_child(root, started):
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(root, started)

    monkeypatch.setattr(ahead, "spec_listing", failing_in_the_child)
    made = ahead.Ahead(repo, True)
    assert made.pid > 0 and made.get() == real(repo, survey.specs(repo, True))
    assert made.pipe == -1 and made.get() == real(repo, survey.specs(repo, True))  # taken once; then made here
    killed = ahead.Ahead(repo, True)
    os.kill(killed.pid, 9)
    assert killed.get() == real(repo, survey.specs(repo, True))


@pytest.mark.parametrize("starting", [0, 0.5], ids=["started", "while starting"])
def test_a_listing_made_ahead_and_dropped_stops_the_commands_it_started(repo, tmp_path, monkeypatch, starting):
    """A gate in scope reads the specs from git: the listing made ahead is dropped, and the commands its child
    started (git's listings, find) are stopped with it, not left to run beside the gate (a stand-in that would run
    for 30 s here); also when the drop comes while the child is still starting them (here: for half a second after
    the first one started)."""
    pidfile = tmp_path / "pid"

    def specs(root, git):
        runs = survey.start([["sh", "-c", f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && exec sleep 30"]])
        time.sleep(starting)
        return runs

    monkeypatch.setattr(survey, "specs", specs)
    given = ahead.early(repo, True)
    for _ in range(500):
        if pidfile.exists():
            break
        time.sleep(0.01)
    pid = int(pidfile.read_text())
    ahead.drop(given, repo, True)
    assert not given
    for _ in range(500):  # ended (gone, or a zombie its new parent has not reaped yet)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"the command the dropped listing started still runs ({state})")


def test_a_listing_made_ahead_when_sigchld_is_ignored(repo):
    """Started by a process that ignores SIGCHLD (some supervisors and CI agents do, and kflowgen inherits it), the
    child is reaped by the kernel: its answer is taken all the same, without waiting for it."""
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        made = ahead.Ahead(repo, True)
        assert made.answer() == ahead.spec_listing(repo, survey.specs(repo, True))
    finally:
        signal.signal(signal.SIGCHLD, before)


def test_a_commits_spec_files_are_looked_up_by_their_blob_ids(repo, store, monkeypatch):
    """A diff's base side that the cache does not hold reads its spec files from git (gitref.spec_blobs) with the
    blob id of each, and looks a group up by those ids, as the work tree's files git vouches for are: the base of a
    pull request to one team reads that team's files only, the rest coming from the entries the work tree's read
    made. It gives exactly what reading every file gives, and what a read without the cache gives."""
    (repo / SWEEP).write_text((repo / SWEEP).read_text().replace("dropout: [0.3, 0.5]", "dropout: [0.3, 0.6]"))
    git(repo, "commit", "-qam", "the pull request")
    read.read(Options(repo, 1, store))  # the work tree (the head): its entries keyed by blob ids

    def run(*args, at=repo, **kw):
        return subprocess.run(["git", "-C", str(at), *args], capture_output=True, **kw)

    listing = run("ls-tree", "-r", "-z", "--full-tree", "HEAD~1:", "--", "specs").stdout
    snapshot = gitref.spec_blobs(run, repo, gitref.entries(listing))
    assert isinstance(snapshot, read.Snapshot) and set(snapshot.ids) == set(snapshot)
    assert all(cache.blob_id(data) == snapshot.ids[rel] for rel, data in snapshot.items())
    seen: list[str] = []
    real = read._raw
    monkeypatch.setattr(read, "_raw", lambda root, rel, *a: seen.append(rel) or real(root, rel, *a))
    by_ids = read.read(Options(repo, 1, store), snapshot)
    read_by_ids = sorted(set(seen))
    seen.clear()
    every = read.read(Options(repo, 1, cache.Cache(store.folder.parent / "other")), dict(snapshot))
    assert sorted(set(seen)) == sorted(snapshot)  # (without the ids, every file is read)
    cold = read.read(Options(repo, 1), dict(snapshot))
    for specs in (by_ids, every):
        assert (specs.model, specs.diagnostics, specs.sources) == (cold.model, cold.diagnostics, cold.sources)
        assert specs.model.inputs == cold.model.inputs == snapshot.ids
    vision = sorted(rel for rel in snapshot if rel.startswith(("specs/experiments/vision/", "specs/models/vision/")))
    assert read_by_ids == vision  # the group of the file that differs, and nothing else
    assert b"[0.3, 0.5]" in snapshot[SWEEP] and b"[0.3, 0.5]" not in (repo / SWEEP).read_bytes()  # (the base's)
