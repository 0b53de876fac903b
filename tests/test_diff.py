"""kflowgen diff: two commits of a copy of the example repository, compared as a reviewer reads them."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kflowgen import cache, tools
from kflowgen.diagnostics import Diagnostic
from kflowgen.flow import diff as differ, gitref, side as sides_of
from kflowgen.options import Options
from kflowgen.report.changes import render_json, render_markdown, render_text
from kflowgen.targets import cached
from kflowgen.targets import pieces


def diff_git(root, base, jobs, store=None):
    return differ.diff_git(Options(root, jobs, store or cache.Cache(None)), base)


def diff_trees(base_root, head_root, jobs):
    return differ.diff_trees(Options(base_root, jobs), Options(head_root, jobs))

PROJECT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(isinstance(tools.find("kustomize", PROJECT), Diagnostic), reason="needs kustomize")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def example(repo: Path) -> Path:
    """A git repository holding a copy of the example's specs and bases as its first commit."""
    repo.mkdir(parents=True)
    for name in ("specs", "bases"):
        shutil.copytree(PROJECT / name, repo / name)
    git(repo, "init", "-q")
    commit(repo, "example")
    return repo


@pytest.fixture(scope="module")
def pull_request(tmp_path_factory) -> Path:
    """Second commit: more A100s for vision in prod (capacity raised with it), a grid value more for the vision
    sweep, recsys/ranker promoted to version 4 in prod, and team nlp removed with its experiments."""
    repo = example(tmp_path_factory.mktemp("diff") / "repo")
    specs = repo / "specs"
    edit(specs / "platform.yaml", "gpu: {a100: 32, t4: 16}", "gpu: {a100: 40, t4: 16}")
    edit(specs / "teams/vision.yaml", "gpu: {a100: 16}", "gpu: {a100: 24}")
    edit(specs / "experiments/vision/resnet-sweep.yaml", "dropout: [0.3, 0.5]", "dropout: [0.3, 0.5, 0.7]")
    edit(specs / "models/recsys/ranker.yaml", "  prod:\n    version: 3", "  prod:\n    version: 4")
    (specs / "teams/nlp.yaml").unlink()
    shutil.rmtree(specs / "experiments/nlp")
    commit(repo, "pull request")
    return repo


DEV, PROD = "https://dev.k8s.example.com", "https://prod.k8s.example.com"
EXPECTED_TEXT = f"""\
⚠ nlp, dev: nlp leaves dev: Namespace nlp and its NAS (PersistentVolumeClaim nas) stay in the cluster, and so do its \
quota, network policy, access and Jobs (Argo CD: Prune=false, Delete=false); to delete them after backing up the \
NAS: kubectl --server {DEV} delete namespace nlp
⚠ nlp, prod: nlp leaves prod: Namespace nlp and its NAS (PersistentVolumeClaim nas) stay in the cluster, and so do \
its quota, network policy, access and Jobs (Argo CD: Prune=false, Delete=false); to delete them after backing up the \
NAS: kubectl --server {PROD} delete namespace nlp
dev: AppProject argocd/dev-platform changed (spec.destinations)
nlp, dev: GPU quota a100 2 → 0 (dev capacity 8, allocated 6 → 4)
nlp, dev: GPU quota t4 4 → 0 (dev capacity 16, allocated 6 → 2)
nlp, dev: quota removed (cpu 48, memory 384Gi, storage 1Ti)
nlp, dev: experiment llm-finetune removed: its 1 TrainJob leaves Git and stays in the cluster (Argo CD: \
Prune=false); to delete it: kubectl --server {DEV} -n nlp delete trainjobs -l kflowgen.dev/experiment=llm-finetune
nlp, dev: sweep bert-random removed: its 6 Jobs leave Git and stay in the cluster (Argo CD: Prune=false); to delete \
them: kubectl --server {DEV} -n nlp delete jobs -l kflowgen.dev/experiment=bert-random
nlp, dev: notebook profiles removed: a100x2, t4
nlp, dev: team removed: 2 Applications, ClusterQueue, LimitRange, LocalQueue, 6 NetworkPolicies, ResourceQuota, Role, \
3 RoleBindings, ServiceAccount
vision, dev: sweep resnet-sweep: 2 trials added because grid dropout [0.3, 0.5] → [0.3, 0.5, 0.7]
prod: GPU capacity a100 32 → 40
prod: AppProject argocd/prod-platform changed (spec.destinations)
nlp, prod: GPU quota a100 12 → 0 (prod capacity 32 → 40, allocated 28 → 24)
nlp, prod: GPU quota t4 8 → 0 (prod capacity 16, allocated 12 → 4)
nlp, prod: quota removed (cpu 192, memory 1536Gi, storage 1Ti)
nlp, prod: experiment llm-finetune removed: its 1 TrainJob leaves Git and stays in the cluster (Argo CD: \
Prune=false); to delete it: kubectl --server {PROD} -n nlp delete trainjobs -l kflowgen.dev/experiment=llm-finetune
nlp, prod: notebook profiles removed: a100x2, t4
nlp, prod: team removed: 2 Applications, LimitRange, 6 NetworkPolicies, ResourceQuota, Role, 3 RoleBindings, \
ServiceAccount
recsys, prod: model ranker v3 → v4 (2–6 replicas × 4 CPU, 8Gi)
vision, prod: GPU quota a100 16 → 24 (prod capacity 32 → 40, allocated 28 → 24)
vision, prod: ResourceQuota vision/team changed (spec.hard)
kflowgen diff: 22 changes in 2 environments, 2 dangerous
"""


def test_text_says_what_the_pull_request_does(pull_request):
    report = diff_git(pull_request, "HEAD~1", 2)
    assert report.diagnostics == [] and report.exit_code == 0
    assert render_text(report) == EXPECTED_TEXT


def test_markdown_has_heading_dangerous_list_and_a_section_per_environment(pull_request):
    md = render_markdown(diff_git(pull_request, "HEAD~1", 2))
    lines = md.splitlines()
    assert lines[0] == "## kflowgen diff: 22 changes in 2 environments, 2 dangerous"
    first = "### ⚠ Read first: teams leaving, models no longer served, namespaces, volumes and projects removed"
    assert [line for line in lines if line.startswith("### ")] == [first, "### dev", "### prod"]
    dangerous = lines[lines.index(first) + 2:lines.index("### dev") - 1]
    assert dangerous == [f"- {line}" for line in EXPECTED_TEXT.splitlines()[:2]]
    prod = lines[lines.index("### prod") + 2:]
    assert prod[0] == "- GPU capacity a100 32 → 40"
    assert "- **recsys**: model ranker v3 → v4 (2–6 replicas × 4 CPU, 8Gi)" in prod
    assert "- **vision**: GPU quota a100 16 → 24 (prod capacity 32 → 40, allocated 28 → 24)" in prod
    assert f"- ⚠ **nlp**: nlp leaves prod: Namespace nlp and its NAS (PersistentVolumeClaim nas) stay in the " \
           f"cluster, and so do its quota, network policy, access and Jobs (Argo CD: Prune=false, Delete=false); to " \
           f"delete them after backing up the NAS: kubectl --server {PROD} delete namespace nlp" in prod
    assert md.endswith("\n")


def test_json_is_a_stable_machine_form(pull_request):
    report = diff_git(pull_request, "HEAD~1", 2)
    data = json.loads(render_json(report))
    assert sorted(data) == ["changes", "dangerous", "diagnostics"]
    assert data["diagnostics"] == []
    assert [c["text"] for c in data["changes"]] == [c.text for c in report.changes]
    assert {"env": "prod", "team": "recsys", "kind": "version",
            "text": "recsys, prod: model ranker v3 → v4 (2–6 replicas × 4 CPU, 8Gi)"} in data["changes"]
    assert {"env": "dev", "team": "vision", "kind": "jobs", "text": "vision, dev: sweep resnet-sweep: 2 trials added "
            "because grid dropout [0.3, 0.5] → [0.3, 0.5, 0.7]"} in data["changes"]
    assert [(c["env"], c["team"], c["text"].split(": ")[1]) for c in data["dangerous"]] == [
        (env, "nlp", f"nlp leaves {env}") for env in ("dev", "prod")]
    assert render_json(report) == render_json(diff_git(pull_request, "HEAD~1", 1))  # deterministic


def test_no_changes(pull_request):
    report = diff_git(pull_request, "HEAD", 2)
    assert (report.changes, report.dangerous, report.diagnostics) == ([], [], [])
    assert render_text(report) == "kflowgen diff: no changes\n"
    assert render_markdown(report) == "## kflowgen diff: no changes\n"
    assert json.loads(render_json(report)) == {"changes": [], "dangerous": [], "diagnostics": []}


def test_images_of_notebooks_and_model_servers(tmp_path):
    repo = example(tmp_path / "repo")
    edit(repo / "specs/teams/vision.yaml", "vision-notebook:2026.11", "vision-notebook:2026.12")
    edit(repo / "specs/teams/vision.yaml", "cpu: 8\n      memory: 64Gi", "cpu: 8\n      memory: 48Gi")
    edit(repo / "specs/models/recsys/ranker.yaml", "path: models/ranker\n",
         "path: models/ranker\nimage: docker.io/tensorflow/serving:2.20.0\n")
    status = git(repo, "status", "--porcelain")
    report = diff_git(repo, "HEAD", 2)  # the head is the working tree
    assert git(repo, "status", "--porcelain") == status and git(repo, "stash", "list") == ""
    texts = [c.text for c in report.changes]
    assert "vision, staging: notebook profile changed: a100" in texts
    assert "vision, dev: notebook image registry.example.com/ml/vision-notebook 2026.11 → 2026.12" in texts
    assert "vision, prod: notebook image registry.example.com/ml/vision-notebook 2026.11 → 2026.12" in texts
    for env in ("staging", "prod"):
        assert (f"recsys, {env}: Deployment recsys/ranker container tfserving image "
                f"docker.io/tensorflow/serving 2.19.1 → 2.20.0") in texts
    # a Job never changes: the new image gives each trial a new Job, because of the team spec
    assert ("vision, dev: sweep resnet-sweep re-run because specs/teams/vision.yaml changed (4 trials; the previous 4 "
            "kept until the experiment is archived)") in texts
    assert report.dangerous == []


def test_base_without_specs_is_empty(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("first commit\n")
    git(repo, "init", "-q")
    commit(repo, "first")
    for name in ("specs", "bases"):
        shutil.copytree(PROJECT / name, repo / name)
    report = diff_git(repo, "HEAD", 2)
    texts = [c.text for c in report.changes]
    assert report.diagnostics == [] and report.dangerous == []
    assert "vision, prod: GPU quota a100 0 → 16 (prod capacity 0 → 32, allocated 0 → 28)" in texts
    assert "vision, dev: quota added (cpu 64, memory 512Gi, storage 500Gi)" in texts
    assert "recsys, staging: notebook profiles added: small, t4" in texts
    assert "recsys, prod: model ranker v3 added (2–6 replicas × 4 CPU, 8Gi)" in texts
    assert "nlp, dev: sweep bert-random added (6 trials)" in texts
    assert all(c.kind in ("quota", "jobs", "added", "version") for c in report.changes)


def test_spec_errors_in_the_base_are_reported_not_raised(tmp_path):
    repo = example(tmp_path / "repo")
    edit(repo / "specs/teams/recsys.yaml", "storage:\n  size: 200Gi", "storage:\n  size: 200Gi\n  sise: 1Ti")
    commit(repo, "broken")
    edit(repo / "specs/teams/recsys.yaml", "\n  sise: 1Ti", "")
    report = diff_git(repo, "HEAD", 2)
    assert report.exit_code == 1 and report.changes == []
    assert [(d.path, d.code) for d in report.diagnostics] == [("specs/teams/recsys.yaml", "KF201")]
    assert report.diagnostics[0].message.startswith("HEAD: ")
    text = render_text(report)
    assert text.startswith("specs/teams/recsys.yaml:") and "error [KF201] HEAD: " in text
    assert text.endswith("kflowgen diff: 1 error, no diff\n")
    assert json.loads(render_json(report))["diagnostics"][0]["code"] == "KF201"
    assert "[KF201]" in render_markdown(report)


def test_unknown_ref_is_a_diagnostic(tmp_path):
    repo = example(tmp_path / "repo")
    report = diff_git(repo, "no-such-branch", 2)
    assert [d.code for d in report.diagnostics] == ["KF902"] and "no-such-branch" in report.diagnostics[0].message


def test_repository_below_the_git_top_and_trees(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    git(top, "init", "-q")
    repo = top / "platform"
    repo.mkdir()
    for name in ("specs", "bases"):
        shutil.copytree(PROJECT / name, repo / name)
    commit(top, "example")
    edit(repo / "specs/platform.yaml", "gpu: {a100: 8, t4: 8}", "gpu: {a100: 8, t4: 12}")
    expected = "staging: GPU capacity t4 8 → 12\nkflowgen diff: 1 change in 1 environment\n"
    assert render_text(diff_git(repo, "HEAD", 2)) == expected
    base = tmp_path / "base"
    for name in ("specs", "bases"):
        shutil.copytree(PROJECT / name, base / name)
    assert render_text(diff_trees(base, repo, 2)) == expected


def test_a_warm_cache_gives_the_same_diff_and_parses_only_what_changed(pull_request, tmp_path, monkeypatch):
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2))
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold
    hits, misses = store.hits, store.misses
    parsed = []
    real = yaml.load_all
    monkeypatch.setattr(yaml, "load_all", lambda text, Loader: parsed.append(text) or real(text, Loader=Loader))
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold == EXPECTED_TEXT
    assert store.hits > hits and store.misses == misses  # the second run read everything from the cache
    # overlays built to the same text on both sides are not parsed: e.g. the unchanged staging environment
    assert parsed and not any("kflowgen.dev/environment: staging" in text for text in parsed)
    # of a plain directory that changed (vision's Jobs in dev), only the files that differ: the sweep's 2 new trials,
    # not its 4 kept ones nor the team's other Jobs
    jobs = [text for text in parsed if "\nkind: Job\n" in text and "namespace: vision\n" in text]
    assert len(jobs) == 2 and all("kflowgen.dev/experiment: resnet-sweep" in text for text in jobs), jobs


def test_base_spec_files_are_read_from_git_or_extracted_when_specs_hold_a_link(pull_request, tmp_path):
    def git(*args, at=pull_request, **kw):
        return subprocess.run(["git", "-C", str(at), *args], capture_output=True, **kw)

    def listing(at, tree):
        return gitref.entries(git("ls-tree", "-r", "-z", "--full-tree", tree, "--", "specs", at=at).stdout)

    blobs = gitref.spec_blobs(git, pull_request, listing(pull_request, "HEAD~1:"))
    on_disk = {p.relative_to(pull_request).as_posix() for p in (pull_request / "specs").rglob("*") if p.is_file()}
    assert "specs/teams/nlp.yaml" in blobs and set(blobs) - {"specs/teams/nlp.yaml"} >= on_disk - {
        "specs/experiments/vision/resnet-sweep.yaml"}
    assert blobs["specs/platform.yaml"] == subprocess.run(
        ["git", "-C", str(pull_request), "show", "HEAD~1:specs/platform.yaml"], capture_output=True).stdout
    repo = tmp_path / "linked"
    shutil.copytree(pull_request, repo, symlinks=True)
    (repo / "specs" / "README.yaml.md").symlink_to("platform.yaml")  # a link git keeps; not a spec file
    commit(repo, "a link under specs/")
    # ... so the base is extracted from an archive instead
    assert gitref.spec_blobs(git, repo, listing(repo, "HEAD:")) is None
    report = diff_git(repo, "HEAD", 2)
    assert (report.changes, report.diagnostics) == ([], [])


def sides_loaded(monkeypatch) -> list[str]:
    """The sides a diff loads from their spec files from now on ("head", "base"), in order (a recalled one is not)."""
    real, loaded = differ.load_then, []

    def load_then(opts, then, snapshot=None):
        loaded.append("base" if snapshot is not None else "head")
        return real(opts, then, snapshot)

    monkeypatch.setattr(differ, "load_then", load_then)
    return loaded


def test_a_base_validated_before_is_recalled_not_rebuilt(pull_request, tmp_path, monkeypatch):
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2))
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold  # keeps both sides
    loaded = sides_loaded(monkeypatch)
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold == EXPECTED_TEXT
    assert loaded == ["head"]  # the base side came from the cache, without reading a spec file of it
    # the recalled side reads the texts it needs from the cache; an altered one is not trusted: the base is made again
    for entry in (tmp_path / "cache" / "text").rglob("*"):
        if entry.is_file():
            entry.write_bytes(entry.read_bytes().replace(b"a100", b"a101"))
    loaded.clear()
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold
    assert loaded == ["head", "base"]  # the head once, then the base from git


def test_a_side_named_by_trees_is_found_by_them_and_a_name_that_is_not_a_key_is_not_followed(pull_request, tmp_path,
                                                                                             monkeypatch):
    """A diff names its base's side by the tree ids of the base's specs/, bases/ and schemas/, and the next finds it
    by them without keying its listing. A name whose body is not a side key (say, a path out of the cache folder,
    with its checksum made to match) is not followed: the side is found by its listing's key, and named again."""
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2))
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold  # keeps both sides, names the base's
    keyed, real = [], differ.listed_key
    monkeypatch.setattr(differ, "listed_key", lambda *a: keyed.append(a) or real(*a))
    loaded = sides_loaded(monkeypatch)
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold and (loaded, keyed) == (["head"], [])
    names = [p for p in (tmp_path / "cache" / "side-named").rglob("*") if p.is_file()]
    assert len(names) == 2  # the base's trees (named by the diff) and HEAD's (by keeping the head)
    for body in (b"../" * 21 + b"x", b"A" * 64, b"a" * 63):
        for entry in names:
            entry.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        loaded.clear(), keyed.clear()
        assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold and loaded == ["head"], body
        assert len(keyed) == 1 and all(len(store.lookup("side-named", p.name)) == 64 for p in names), body


def test_a_recalled_sides_plain_directories_come_from_the_render_entries_and_are_checked(pull_request, tmp_path,
                                                                                        monkeypatch):
    """A kept side does not copy each plain directory's text (a team's workloads folder; 30,000 files at 10,000
    teams): it names the render entry of the unit that wrote all its files, and the sha256 of the folder's listing
    (paths and blob ids); a diff reads the files that differ from that entry, and the listing must have that sha256
    and each file read its blob id. Render entries altered, with their checksums made to match or not, are not
    trusted: the base side is made again, and the diff is the same."""
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2))
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold  # keeps both sides
    sides = [json.loads(store.lookup("side", p.name)) for p in (tmp_path / "cache" / "side").rglob("*") if p.is_file()]
    kinds = [kind for doc in sides for overlay, (_, kind, *_) in doc["built"].items() if overlay.endswith("/workloads")]
    assert kinds and set(kinds) == {"unit"}  # every team's workloads folder, by its unit
    loaded = sides_loaded(monkeypatch)
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold == EXPECTED_TEXT
    assert loaded == ["head"]  # recalled: vision's dev Jobs (the sweep changed) made from the base's render entry
    def put(entry: Path, body: bytes) -> None:
        entry.parent.mkdir(exist_ok=True)
        entry.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)

    def at(k: str) -> Path:
        return tmp_path / "cache" / "render" / k[:2] / k

    # the render entries of the base's nlp workloads in dev (nlp leaves: the whole text is read, and checked against
    # its sha256) and of recsys's in prod (two files differ: those are read, and checked against their blob ids)
    base = next(doc for doc in sides if "specs/teams/nlp.yaml" in doc["specs"])
    for folder, team in (("overlays/dev/teams/nlp/workloads", b"nlp"), ("overlays/prod/teams/recsys/workloads",
                                                                        b"recsys")):
        unit = base["built"][folder][2]
        index = at(unit).read_bytes()[65:]
        old = index.split(b"\n", 1)[0].rsplit(b" ", 1)[1].decode()  # (first line: ... <sha256 of the data>)
        body = at(cached.data_key(old)).read_bytes()[65:]
        for how in ("the data only", "its checksum too", "the data's sha256 in the unit's index too",
                    "the blob ids in the unit's index too"):
            put(at(unit), index)  # (as the base's render left them: the base made again trusts altered entries)
            put(at(cached.data_key(old)), body)
            altered = body.replace(b"namespace: " + team, b"namespace: " + team[:-1] + b"x")  # (sizes kept)
            assert altered != body
            if how == "the data only":
                at(cached.data_key(old)).write_bytes(at(cached.data_key(old)).read_bytes()[:65] + altered)
            elif how == "its checksum too":
                put(at(cached.data_key(old)), altered)
            else:  # every check of the render entries passes: only the blob ids, or the side's listing sha256, tell
                new = hashlib.sha256(altered).hexdigest()
                paths, sizes, ids, folders, based, _ = cached.unpack(index)
                data = pieces.sliced(altered, sizes)
                if how == "the blob ids in the unit's index too":
                    ids = [cache.blob_id(d) for d in data]
                put(at(cached.data_key(new)), altered)
                put(at(unit), cached._index(paths, sizes, ids, folders, based, new))
            loaded.clear()
            text = render_text(diff_git(pull_request, "HEAD~1", 2, store))
            assert loaded == ["head", "base"], (folder, how)  # refused: the head once, then the base from git
            # (the base made again reads the render cache as every run does: it trusts entries whose checksums and
            # index agree, so only the first two alterations leave it the base's real files)
            assert text == cold or how.endswith("index too"), (folder, how)
        put(at(unit), index)
        put(at(cached.data_key(old)), body)


def test_a_plain_directory_that_differs_is_compared_file_by_file(pull_request, tmp_path, monkeypatch):
    """Two sides' workloads folders that differ are compared by their files' blob ids, and only the files that
    differ are read and parsed (one experiment changed in a team of thousands: its Jobs), whether the base is made
    now or recalled; their texts are not split into documents."""
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2))
    asked: list = []
    split: list = []
    sides: list = []
    parts, documents, parse = differ.Side.parts, differ.Side.documents, differ._parse
    monkeypatch.setattr(differ.Side, "parts",
                        lambda self, o, paths: asked.append((self, o, paths)) or parts(self, o, paths))
    monkeypatch.setattr(differ.Side, "documents", lambda self, d: split.append(d) or documents(self, d))
    monkeypatch.setattr(differ, "_parse", lambda side, other: sides.append((side, other)) or parse(side, other))
    indexes: list = []
    index = sides_of.unit_index
    monkeypatch.setattr(sides_of, "unit_index", lambda store, k: indexes.append(k) or index(store, k))
    for run in ("made", "kept", "recalled"):
        asked.clear(), split.clear(), sides.clear(), indexes.clear()
        assert render_text(diff_git(pull_request, "HEAD~1", 2, store if run != "made" else None)) == cold, run
        both = {id(side): other for side, other in sides}
        assert any(side.units for side, _ in sides) == (run == "recalled"), run  # (the base kept, then recalled)
        recalled = [o for side, o, _ in asked if o in side.units]
        assert len(indexes) == len(set(indexes)) == len(recalled) == len(set(recalled)), run  # (read once a folder)
        fewer = 0
        for side, overlay, paths in asked:
            if "/workloads" not in overlay or overlay not in both[id(side)].built:
                continue  # (a folder only this side has: all its files)
            mine, theirs = side.listing(overlay), both[id(side)].listing(overlay)
            assert paths == [rel for rel, i in mine.items() if theirs.get(rel) != i], (run, overlay)
            fewer += len(paths) < len(mine)
        workloads = {d for side, _ in sides for o, d in side.built.items() if o.endswith("/workloads")}
        assert fewer and not workloads & set(split), run  # (recsys's prod Jobs: 2 of its files; a recalled side's
        # argocd folders, which several units write, are kept as text and split into documents)


def test_keeping_a_side_mends_a_text_entry_that_holds_other_bytes(pull_request, tmp_path):
    """A text an earlier side kept is not made again, unless its entry holds bytes other than the text it is named by
    (even with a checksum made to match): then it is written again, so that a later recall finds the text."""
    store = cache.Cache(tmp_path / "cache")
    cold = render_text(diff_git(pull_request, "HEAD~1", 2, store))  # keeps both sides and their texts
    texts = [p for p in (tmp_path / "cache" / "text").rglob("*") if p.is_file()]
    assert texts
    for entry in texts:
        altered = entry.read_bytes()[65:] + b"# altered\n"
        entry.write_bytes(hashlib.sha256(altered).hexdigest().encode() + b"\n" + altered)
    shutil.rmtree(tmp_path / "cache" / "side")  # the sides are kept again
    assert render_text(diff_git(pull_request, "HEAD~1", 2, store)) == cold
    for entry in texts:
        assert store.read("text", entry.name)[1] == entry.name  # the text itself again


def test_a_side_is_keyed_by_every_input():
    from kflowgen.flow.diff import side_key

    specs, bases, schemas = {"specs/platform.yaml": "a" * 40}, {"team/kustomization.yaml": "b" * 40}, {}
    k = side_key(specs, bases, schemas, "v5.8.1 kustomize 2 x")
    assert side_key(dict(specs), dict(bases), {}, "v5.8.1 kustomize 2 x") == k
    assert len({k, side_key({"specs/platform.yaml": "c" * 40}, bases, schemas, "v5.8.1 kustomize 2 x"),
                side_key({**specs, "specs/teams/a.yaml": "d" * 40}, bases, schemas, "v5.8.1 kustomize 2 x"),
                side_key(specs, {"team/kustomization.yaml": "e" * 40}, schemas, "v5.8.1 kustomize 2 x"),
                side_key(specs, bases, {"crds.yaml": "f" * 40}, "v5.8.1 kustomize 2 x"),
                side_key(specs, bases, schemas, "v5.8.2 kustomize 2 x")}) == 6
