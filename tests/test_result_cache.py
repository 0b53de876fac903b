"""The result cache never lets a wrong result pass: any input, base, tool version or damaged entry forces a rebuild,
and output with the cache and parallelism is byte-identical to a cold single-process run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zlib
from pathlib import Path

import pytest

import yaml

from conftest import git, plant_base_binding
from kflowgen import cache, parallel, tools
from kflowgen.checks import kubeconform as kubeconform_adapter, policy, verify
from kflowgen.checks.prechecker import Prechecker
from kflowgen.flow import pipeline
from kflowgen import targets
from kflowgen.targets import render
from kflowgen import build as build_stage
from kflowgen.build import Built, build, directory_files, kustomize, overlays_of, parse
from kflowgen.options import Options
from kflowgen.packed import At, Packed, pack
from kflowgen import survey
from kflowgen.specs import layout, loader, read
from kflowgen.specs.discover import spec_files
from kflowgen.specs.model import specs_of
from kflowgen.targets import cached
from kflowgen.targets import hub_parts
from kflowgen.targets import pieces
from kflowgen.targets.cached import render_cached


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return cache.Cache(tmp_path / "cache")


def built(root: Path, store, jobs=2):
    model, diags = pipeline.load(Options(root))
    assert model is not None, diags
    files = render(model)
    result, diags = build(Options(root, jobs, store), files, overlays_of(files))
    assert diags == []
    return result


def test_second_build_comes_from_the_cache_and_is_identical(example_repo, store):
    cold = built(example_repo, cache.Cache(None), jobs=1)
    first = built(example_repo, store)
    second = built(example_repo, store)
    kustomized = [o for o in first.overlays if not layout.is_directory_source(o)]
    plain = [o for o in first.overlays if o.endswith(("/argocd", "/workloads", "/queueing"))]
    assert len(kustomized) == len(first.overlays) - len(plain) and len(plain) == 3 + 8 + 1  # plain directories
    assert first.rebuilt == len(kustomized) and second.rebuilt == 0
    assert cold.overlays == first.overlays == second.overlays


def test_a_spec_change_rebuilds_only_what_it_touches(example_repo, store):
    built(example_repo, store)
    team = example_repo / "specs/teams/recsys.yaml"
    team.write_text(team.read_text().replace("cpu: 64", "cpu: 60"))
    again = built(example_repo, store)
    # recsys prod platform overlay only: the quota is the one object that changed
    assert again.rebuilt == 1
    assert "requests.cpu: \"60\"" in again.overlays["overlays/prod/teams/recsys/platform"]


def test_a_base_change_rebuilds_every_overlay_that_uses_bases(example_repo, store):
    first = built(example_repo, store)
    limits = example_repo / "bases/team/limitrange.defaults.yaml"
    limits.write_text(limits.read_text().replace("memory: 256Mi", "memory: 300Mi"))
    again = built(example_repo, store)
    users = [o for o in first.overlays if "/teams/" in o and o.endswith("/platform")]
    assert again.rebuilt == len(users)
    assert all("memory: 300Mi" in again.overlays[o] for o in users)


def test_a_new_kustomize_version_rebuilds_everything(example_repo, store, monkeypatch):
    first = built(example_repo, store)
    real = tools.find

    def other_version(name, repo=None):
        tool = real(name, repo)
        return tools.Tool(tool.name, tool.argv, tool.version + "-next") if name == "kustomize" else tool

    monkeypatch.setattr(tools, "find", other_version)
    assert built(example_repo, store).rebuilt == len([o for o in first.overlays if not layout.is_directory_source(o)])


def _entry(store, kind: str, k: str) -> Path:
    return store.folder / kind / k[:2] / k


def test_a_damaged_entry_is_rebuilt_not_trusted(example_repo, store, tmp_path):
    first = built(example_repo, store)
    overlay, k = next(iter(first.keys.items()))
    victim = _entry(store, "build", k)
    victim.write_bytes(victim.read_bytes().replace(b"kind:", b"kinx:", 1))
    again = built(example_repo, store)
    # the build index gives its sha256 and object count; its text, when asked for, is built again, never the
    # damaged entry's
    assert again.rebuilt == 0 and again.digests == first.digests and again.counts == first.counts
    assert again.overlays[overlay] == first.overlays[overlay] and "kinx:" not in again.overlays[overlay]
    assert store.text("build", k) == first.overlays[overlay]  # and kept again
    assert dict(again.overlays) == dict(first.overlays)


def built_cached(root: Path, store) -> Built:
    """built(), over files rendered through the cache (which names the unit each folder's files came from)."""
    opts = Options(root, 2, store)
    model, diags = pipeline.load(opts)
    assert model is not None, diags
    rendered = render_cached(model, opts)
    result, diags = build(opts, rendered, overlays_of(rendered.files))
    assert diags == []
    return result


def test_unchanged_builds_are_not_read_until_their_text_is_asked_for(example_repo, store, monkeypatch):
    first = built_cached(example_repo, store)
    reads, decoded = [], []
    real, real_parts = cache.Cache.read, build_stage.Parts.__getitem__
    monkeypatch.setattr(cache.Cache, "read", lambda self, kind, k: reads.append(kind) or real(self, kind, k))
    monkeypatch.setattr(build_stage.Parts, "__getitem__", lambda self, f: decoded.append(f) or real_parts(self, f))
    team = example_repo / "specs/teams/recsys.yaml"
    team.write_text(team.read_text().replace("cpu: 64", "cpu: 60"))
    again = built_cached(example_repo, store)
    assert reads.count("build") == 2  # the index, and the one overlay whose inputs changed: not in the cache
    # nor the files of a team's plain directory: another team's (the cache entry of its unit names them), nor
    # recsys's, rendered again (one render unit wrote each: it is known by its files' blob ids, not its text)
    assert not any("/teams/" in f for f in decoded)
    assert again.rebuilt == 1 and again.counts == first.counts
    changed = {o for o in first.digests if again.digests[o] != first.digests[o]}
    assert changed == {"overlays/prod/teams/recsys/platform"}
    for o in again.overlays:
        text = again.overlays[o]
        if o.endswith("/workloads"):  # its files' paths and blob ids, which name its text
            files = [(rel, (example_repo / rel).read_bytes()) for rel in again.parts.paths(o)]
            assert text == "---\n".join(data.decode() for _, data in files)
            assert again.digest(o) == build_stage.listing_digest({rel: cache.blob_id(data) for rel, data in files})
        else:
            assert again.digest(o) == cache.text_digest(text)


def test_a_plain_directorys_objects_are_counted_file_by_file_as_in_its_text():
    """The build counts a plain directory's objects file by file, from the files' bytes; the count is the one of the
    text the files make (Parts.text), whatever the files hold: comments only, several documents, "---" lines of
    their own (first or last), no line end at the end, nothing, whitespace that is not ASCII or not a space."""
    import itertools
    import random

    pieces = [b"# Generated\napiVersion: v1\nkind: Job\n", b"# only a comment\n", b"", b"\n", b"---\n",
              b"a: 1\n---\nb: 2\n", b"a: 1", b"---\na: 1\n", b"  # indented comment\n\n", b"x: '---'\n",
              "name: caf\u00e9\n".encode(), b"a: 1\n---\n", "\u00a0\n".encode(), b"\x1c\n", b"\x1f x\n",
              "# c\n  \u3000x\n".encode(), b"a: 1\r\n---\r\nb: 2\r\n", b"--- a: 1\n", b"\t\x0b\n"]
    rng = random.Random(7)
    cases = [list(c) for c in itertools.product(pieces, repeat=2)]
    cases += [rng.choices(pieces, k=rng.randint(1, 6)) for _ in range(500)]
    for data in cases:
        text = "---\n".join(d.decode("utf-8") for d in data)
        assert build_stage._count_files(data) == build_stage.count_objects(text), data


def test_a_damaged_build_index_vouches_for_nothing(example_repo, store):
    first = built(example_repo, store)
    index = _entry(store, "build", cache.key("build", "memo", "index"))
    body = index.read_bytes()
    digest = first.digests[next(iter(first.keys))]
    index.write_bytes(body.replace(digest.encode(), b"0" * 64, 1))  # the checksum line no longer matches
    again = built(example_repo, store)
    assert again.rebuilt == 0 and again.digests == first.digests and again.counts == first.counts
    assert dict(again.overlays) == dict(first.overlays)


def test_a_build_index_that_names_other_files_for_a_workloads_folder_is_refused(example_repo, store):
    """A team's workloads folder is known by its files' blob ids: when the build index (its checksum made to match)
    vouches for another digest than the rendered files give, asking for the folder's text stops the run (BuildLost)
    instead of handing over files other than those vouched for."""
    first = built_cached(example_repo, store)
    folder = next(o for o in first.overlays if o.endswith("/workloads"))
    index = _entry(store, "build", cache.key("build", "memo", "index"))
    body = index.read_bytes()[65:]
    assert body.count(first.digests[folder].encode()) == 1
    body = body.replace(first.digests[folder].encode(), b"0" * 64)
    index.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    again = built_cached(example_repo, store)
    assert again.digests[folder] == "0" * 64  # (vouched for: not read)
    with pytest.raises(build_stage.BuildLost):
        again.overlays[folder]
    with pytest.raises(build_stage.BuildLost):  # (nor as bytes, as the side a validate keeps reads them)
        again.overlays.data(folder)
    index.unlink()  # (as the message says: without the entry, the folder is known by its files again)
    third = built_cached(example_repo, store)
    assert dict(third.overlays)[folder] == first.overlays[folder]
    assert all(third.overlays.data(o) == first.overlays[o].encode("utf-8") for o in first.overlays)


def test_a_planted_validation_entry_cannot_pass_a_changed_output(example_repo, store):
    """Keys cover the exact output: marking one output clean says nothing about any other."""
    k1 = cache.key("kubeconform", "v0.8.0", "schemas", "apiVersion: v1\nkind: ConfigMap\n")
    k2 = cache.key("kubeconform", "v0.8.0", "schemas", "apiVersion: v1\nkind: ConfigMap\nbad: 1\n")
    store.put("valid", k1, b"ok")
    assert store.get("valid", k1) == b"ok" and store.get("valid", k2) is None
    passed = cache.Passes(store, "valid", "v0.8.0", "schemas")
    passed.add(k1, OVERLAY)
    passed.save()
    again = cache.Passes(store, "valid", "v0.8.0", "schemas")
    assert again.has(k1, OVERLAY) and not again.has(k2, OVERLAY)
    assert not cache.Passes(store, "valid", "v0.8.1", "schemas").has(k1, OVERLAY)  # another context knows nothing


def test_a_damaged_pass_list_passes_nothing(store):
    passed = cache.Passes(store, "policy", "code", "context")
    for k in ("a" * 64, "b" * 64):
        passed.add(k, OVERLAY)
    passed.save()
    entry = next(p for p in (store.folder / "policy").rglob("*") if p.is_file())
    entry.write_bytes(entry.read_bytes().replace(b"a" * 64, b"c" * 64))
    damaged = cache.Passes(store, "policy", "code", "context")
    assert not any(damaged.has(k * 64, OVERLAY) for k in "abc")


@pytest.mark.parametrize("before", ["same", "damaged body", "damaged check", "other bytes", "longer", "missing"])
def test_an_entry_is_written_unless_it_holds_exactly_those_bytes(store, before):
    """put writes nothing over an entry that is byte for byte what it would write (content-keyed data a run makes
    again); any other file at that key (damaged in its body or its checksum line, other bytes, another length,
    none) is written anew, and reads back as the body put."""
    body, k = b"apiVersion: v1\nkind: ConfigMap\n" * 1000, "ab" * 32
    store.put("render", k, body)
    path = store._path("render", k)
    written = path.read_bytes()
    changed = {"same": written, "damaged body": written[:-2] + b"X\n", "damaged check": b"0" + written[1:],
               "other bytes": written.replace(b"ConfigMap", b"Configmap"), "longer": written + b"\n"}
    if before == "missing":
        path.unlink()
    else:
        path.write_bytes(changed[before])
    inode = path.stat().st_ino if path.exists() else None
    store.put("render", k, body)
    assert store.lookup("render", k) == body and path.read_bytes() == written
    assert (path.stat().st_ino == inode) == (before == "same")  # rewritten: a new file renamed over the old one
    assert [p.name for p in path.parent.iterdir()] == [k]  # no temporary file left behind


def test_an_entry_put_with_the_sha256_its_caller_computed_reads_back_only_when_that_is_the_bodys(store):
    """put may take the body's sha256 from its caller (the render has just computed it for the entry's key), and
    writes it as the entry's checksum line: a digest that is not the body's gives an entry that never reads back
    (damaged, made again), never one taken for another body."""
    body = b"kind: ConfigMap\n" * 100
    store.put("render", "ab" * 32, body, hashlib.sha256(body).hexdigest())
    assert store.lookup("render", "ab" * 32) == body
    store.put("render", "cd" * 32, body, hashlib.sha256(body + b"x").hexdigest())
    assert store.lookup("render", "cd" * 32) is None
    store.put("render", "cd" * 32, body)  # then written anew (it does not hold these bytes under their checksum)
    assert store.lookup("render", "cd" * 32) == body


def test_a_pass_list_keeps_what_runs_use(store):
    first = cache.Passes(store, "valid", "ctx")
    for i in range(10):
        first.add(f"{i:064d}", OVERLAY)
    first.save()
    second = cache.Passes(store, "valid", "ctx")
    assert second.has(f"{3:064d}", OVERLAY)
    second.add("f" * 64, OVERLAY)  # the only key this run used besides one old one: ten old ones are more than 4 x 2
    second.save()
    third = cache.Passes(store, "valid", "ctx")
    third.has("f" * 64, OVERLAY)
    assert set(third.memos[cache._group(OVERLAY)].known) == {f"{3:064d}", "f" * 64}


def test_a_memo_holds_keys_learned_without_a_word_as_bytes_and_saves_what_one_dict_of_them_would(store):
    """Keys learned with no word (passes) are held as their 32 bytes, not as strings, until saved; the entry saved
    is the one a dict of every key put would give: sorted, each key once, the last word put for a key kept, a key
    that is not 64 lower-case hex digits kept as it is, and what was known kept with it."""
    known = cache.Memo(store, "rules", "ctx")
    known.put("9" * 64, "2")
    known.save()
    memo = cache.Memo(store, "rules", "ctx")
    bare = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    words: dict[str, str] = {"9" * 64: "2"}
    for k in bare + bare[:10]:  # some twice
        memo.put(k)
        words[k] = ""
    odd = ["A" * 64, "abc", "g" * 64, "0" * 63]  # not as key() gives it: kept as strings
    for k in odd:
        memo.put(k)
        words[k] = ""
    memo.put(bare[0], "3")  # a word after no word: the word
    memo.put("1" * 64, "4")
    memo.put("1" * 64)  # no word after a word: no word
    words.update({bare[0]: "3", "1" * 64: ""})
    assert len(memo.bare) == 32 * 61 and set(memo.new) == {bare[0], *odd}  # the 61 bare puts, as bytes
    memo.save()
    expected = "\n".join(f"{k} {v}" if v else k for k, v in sorted(words.items())).encode("ascii")
    assert store.lookup("rules", memo.k) == expected
    again = cache.Memo(store, "rules", "ctx")
    assert again.known == words


OVERLAY = "overlays/dev/teams/nlp/platform"


def _passed_whole(store, digests: dict[str, str], failing=(), checked: list | None = None) -> list[str]:
    """A run of a check over these overlays ({overlay: sha256 of its text}): the overlays it looked into, each
    passing whole but those failing (checked: those not found passed, so checked now)."""
    passed = cache.Passes(store, "valid", "ctx")
    looked = passed.unpassed(digests)
    for o in looked:
        if not passed.has(cache.key("whole", o, digests[o]), o, whole=True):
            (checked if checked is not None else []).append(o)
            if o not in failing:
                passed.add(cache.key("whole", o, digests[o]), o, whole=True)
    passed.save()
    return looked


def test_a_group_of_overlays_passes_whole_only_with_exactly_its_overlays_and_texts(store):
    """Overlays that all passed are not looked up one by one again: the run reads the groups' entry and the entries
    of the groups that changed. A group passes with exactly the overlays and texts it passed with: one overlay's
    other text, one more or one fewer overlay in it, or one that failed, and its overlays are looked into (and
    found one by one, those that passed); the other groups are not."""
    digests = {f"overlays/dev/teams/team-{i}/{kind}": f"{i}{kind}" * 8 for i in range(200)
               for kind in ("platform", "workloads")}
    assert _passed_whole(store, digests) == list(digests)
    reads = []
    real = store.read
    store.read = lambda kind, k: reads.append(k) or real(kind, k)
    assert _passed_whole(store, digests) == [] and len(reads) == 1  # the groups' entry
    group = lambda o: [x for x in digests if cache._group(x) == cache._group(o)]
    changed = "overlays/dev/teams/team-7/workloads"
    for variant in ({**digests, changed: "x" * 64}, {**digests, "overlays/dev/teams/new/platform": "y" * 64},
                    {o: d for o, d in digests.items() if o != changed}):
        reads.clear()
        checked = []
        moved = sorted(variant.keys() ^ digests.keys()) or [changed]
        assert _passed_whole(store, variant, checked=checked) == [o for o in variant if o in group(moved[0])
                                                                  or o in moved]
        assert len(reads) == 2  # the groups' entry and the changed group's
        assert checked == [o for o in moved if o in variant]  # the rest of its group found passed one by one
        assert _passed_whole(store, variant) == []  # and now it passed whole too
    failing = {changed: "z" * 64}
    assert _passed_whole(store, {**digests, **failing}, failing) == group(changed)
    assert _passed_whole(store, {**digests, **failing}, failing) == group(changed)  # not kept as passed


def test_a_damaged_groups_entry_passes_no_group_whole(store):
    digests = {f"overlays/prod/teams/team-{i}/platform": f"{i}" * 64 for i in range(100)}
    _passed_whole(store, digests)
    entry = store._path("valid", cache.Passes(store, "valid", "ctx").groups.k)
    entry.write_bytes(entry.read_bytes()[:-1] + b"0")
    passed = cache.Passes(store, "valid", "ctx")
    assert passed.unpassed(digests) == list(digests)  # each looked up in its group, where each one's pass is
    assert all(passed.has(cache.key("whole", o, d), o, whole=True) for o, d in digests.items())


def test_validate_reports_the_same_with_a_warm_cache(example_repo, store):
    team = example_repo / "specs/teams/nlp.yaml"
    cold = pipeline.validate(Options.at(example_repo, 1, False))
    warm1 = pipeline.validate(Options.at(example_repo, 2, True))
    warm2 = pipeline.validate(Options.at(example_repo, 2, True))
    assert cold.diagnostics == warm1.diagnostics == warm2.diagnostics == [] and cold.summary == warm2.summary
    # a policy or schema failure is never cached as a pass: a hand-kept base binding cluster-admin to everyone
    plant_base_binding(example_repo, "cluster-admin", "system:authenticated")
    for _ in range(2):
        report = pipeline.validate(Options.at(example_repo, 2, True))
        assert [d.code for d in report.errors] == ["KF612"] * 16  # 8 team platform overlays, 2 findings each
    assert team.exists()


# --- loaded specs and rendered files ----------------------------------------------------------------------------

def test_loaded_specs_come_from_the_cache_unchanged(example_repo, store):
    cold = pipeline.load(Options(example_repo))
    first = pipeline.load(Options(example_repo, store=store))
    assert store.hits == 0 and store.misses > 0
    second = pipeline.load(Options(example_repo, store=store))
    assert store.hits == store.misses  # every file of the second load came from the cache
    assert cold == first == second


def test_a_spec_change_or_a_kflowgen_change_is_checked_again(example_repo, store, monkeypatch):
    pipeline.load(Options(example_repo, store=store))
    spec = example_repo / "specs/teams/nlp.yaml"
    spec.write_text(spec.read_text().replace("owners:", "ownerz:"))
    model, diags = pipeline.load(Options(example_repo, store=store))
    assert model is None and "KF201" in {d.code for d in diags}
    again = pipeline.load(Options(example_repo, store=store))
    assert again[1] == diags  # findings come back from the cache exactly, and still fail
    monkeypatch.setattr(cache, "code_digest", lambda: "another kflowgen")
    before = store.misses
    specs = list((example_repo / "specs").rglob("*.yaml"))
    assert pipeline.load(Options(example_repo, store=store))[1] == diags and store.misses - before == len(specs) + 1  # and the rules


def test_a_damaged_spec_entry_is_checked_again_not_trusted(example_repo, store, tmp_path):
    want = pipeline.load(Options(example_repo, store=store))
    for entry in (tmp_path / "cache" / "spec").rglob("*"):
        if entry.is_file():
            entry.write_bytes(entry.read_bytes().replace(b'"cpu"', b'"cpv"'))
    assert pipeline.load(Options(example_repo, store=store)) == want


def _rewritten(entry: Path, change) -> None:
    """An entry whose body is changed and whose checksum line is made again to match: intact, as far as the
    checksum can tell."""
    body = change(entry.read_bytes().partition(b"\n")[2])
    entry.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def _one_result_fewer(body: bytes) -> bytes:
    """The entry of the group's files but the last, in the shape pack_results writes."""
    head, _, texts = body.partition(b"\n")
    digests, tops, found, sizes = json.loads(head)
    cut = len(texts) - sum(sizes[-3:])
    return json.dumps([digests[:-1], tops[:-1], found[:-1], sizes[:-3]]).encode() + b"\n" + texts[:cut]


@pytest.mark.parametrize("git", [False, True])
@pytest.mark.parametrize("damaged", [True, False])  # False: the control, an entry as written is trusted
def test_a_damaged_group_entry_of_specs_is_read_again_not_trusted(request, store, tmp_path, git, damaged):
    """The specs of a folder are cached together (one entry: a JSON list of their results, then their positions):
    an entry whose checksum does not match is never trusted, whether its files are read (plain folder) or only named
    by the blob ids git vouches for."""
    repo = request.getfixturevalue("committed_example" if git else "example_repo")
    want = pipeline.load(Options(repo))
    pipeline.load(Options(repo, store=store))
    groups = [e for e in (tmp_path / "cache" / "specs").rglob("*") if e.is_file()]
    assert groups
    for entry in groups if damaged else ():
        entry.write_bytes(entry.read_bytes() + b" ")
    for entry in (tmp_path / "cache" / "spec").rglob("*"):  # each file's own entry too: the files are checked again
        if entry.is_file():
            entry.unlink()
    hits, misses = store.hits, store.misses
    assert pipeline.load(Options(repo, store=store)) == want
    assert store.misses - misses == (len(list((repo / "specs").rglob("*.yaml"))) if damaged else 0)
    assert store.hits - hits == (1 if damaged else len(list((repo / "specs").rglob("*.yaml"))) + 1)  # and the rules


@pytest.mark.parametrize("git", [False, True])
@pytest.mark.parametrize("change", [
    _one_result_fewer,
    lambda body: body.partition(b"\n")[0],  # the specs' texts left out
    lambda body: body + b"{}",  # more text than the sizes say
    lambda body: b"not json\n" + body.partition(b"\n")[2],
    lambda body: b"\xff" + body,  # not UTF-8
])
def test_a_group_entry_not_of_one_result_per_file_is_not_trusted(request, store, tmp_path, git, change):
    """An entry that is intact (its checksum matches) but does not hold one result per file of its group, in the
    shape entry.pack_results writes, is read again, never used."""
    repo = request.getfixturevalue("committed_example" if git else "example_repo")
    want = pipeline.load(Options(repo))
    pipeline.load(Options(repo, store=store))
    for entry in (tmp_path / "cache" / "specs").rglob("*"):
        if entry.is_file():
            _rewritten(entry, change)
    hits, misses = store.hits, store.misses
    assert pipeline.load(Options(repo, store=store)) == want
    # every file's result comes from its own entry (and the rules' from theirs): no group entry was trusted
    assert store.hits - hits == len(list((repo / "specs").rglob("*.yaml"))) + 1 and store.misses == misses


def _bucket(repo: Path, store: cache.Cache) -> Path:
    """The cache entry of the one bucket (read.BUCKETS set to 1) of every group of the repository's spec files."""
    outs = survey.results(survey.specs(repo, True))
    listing = survey.find_output(outs.pop())
    known = survey.vouched(repo, outs, listing, "specs", exact=True)[0]
    wanted = [item for item in spec_files(repo, None, survey.find_paths(listing))
              if item[1] not in ("stray", "outside")]
    files = [item for _, group in read._groups(wanted) for item in group]
    return store._path("specs", read._group_key(files, known, {}))


def _spying(monkeypatch, store: cache.Cache) -> tuple[list[str], list[str]]:
    """The spec files this process reads, and the keys of the spec groups' entries it opens."""
    files: list[str] = []
    entries: list[str] = []
    read_file, read_entry = loader.read_file, store.read

    def opened(kind: str, k: str):
        if kind == "specs":
            entries.append(k)
        return read_entry(kind, k)

    monkeypatch.setattr(loader, "read_file", lambda root, rel: files.append(rel) or read_file(root, rel))
    monkeypatch.setattr(store, "read", opened)
    return files, entries


def test_unchanged_groups_are_recalled_from_their_bucket_as_a_cold_run_loads_them(committed_example, store,
                                                                                 monkeypatch):
    """The groups of spec files git vouches for are cached together in buckets (read._recall): a run that changes
    nothing opens one entry per bucket, reads no spec file, and loads what a run without the cache loads."""
    repo = committed_example
    monkeypatch.setattr(read, "BUCKETS", 1)  # every group in one bucket
    cold = pipeline.load(Options(repo))
    assert pipeline.load(Options(repo, store=store)) == cold  # every file read: its group, then the bucket, cached
    bucket = _bucket(repo, store)
    assert bucket.is_file()
    files, entries = _spying(monkeypatch, store)
    warm = pipeline.load(Options(repo, store=store))
    assert warm == cold and render(warm[0]) == render(cold[0]) and warm[0].inputs == cold[0].inputs
    assert files == [] and entries == [bucket.name]
    team = repo / "specs/experiments/vision/resnet-sweep.yaml"  # one file changes: its group is read, the others
    team.write_text(team.read_text().replace("python train.py", "python train2.py"))  # come from their entries
    git(repo, "commit", "-qam", "train2")
    files.clear()
    entries.clear()
    changed, read_now = pipeline.load(Options(repo, store=store)), sorted(files)
    assert changed == pipeline.load(Options(repo)) and changed != cold
    assert read_now == sorted(str(p.relative_to(repo)) for folder in ("models", "experiments")
                              for p in (repo / "specs" / folder / "vision").glob("*.yaml"))
    assert _bucket(repo, store).is_file() and _bucket(repo, store) != bucket  # kept for the new blobs


def _texts(body: bytes) -> tuple[list, bytes]:
    head, _, texts = body.partition(b"\n")
    return json.loads(head), texts


def _packed(head: list, texts: bytes) -> bytes:
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + texts


@pytest.mark.parametrize("change", [
    None,  # damaged: a byte more, the checksum left as it was
    _one_result_fewer,
    lambda body: body[:-1],  # the last text cut short
    lambda body: _packed([[None, *_texts(body)[0][0][1:]], *_texts(body)[0][1:]], _texts(body)[1]),  # a digest gone
    lambda body: _packed([*_texts(body)[0][:3], [-1, *_texts(body)[0][3][1:]]], _texts(body)[1]),  # a size < 0
    lambda body: _packed([*_texts(body)[0][:3], [_texts(body)[0][3][0] + 1, *_texts(body)[0][3][1:]]],
                        _texts(body)[1]),  # sizes that do not add up to the entry
    lambda body: body.replace(b"vision", b"visi\xc3\xb6", 1),  # not ASCII (its length kept)
    lambda body: _packed([*_texts(body)[0][:2], [["x"], *_texts(body)[0][2][1:]], _texts(body)[0][3]],
                        _texts(body)[1]),  # findings that are not a list of findings
])
def test_a_damaged_or_reshaped_bucket_entry_is_not_trusted(committed_example, store, monkeypatch, change):
    """A bucket's entry whose checksum does not match, or that is intact but not one result per file of its groups
    in the shape pack_results writes, is never used: its groups' own entries are, and it is written again."""
    repo = committed_example
    monkeypatch.setattr(read, "BUCKETS", 1)
    cold = pipeline.load(Options(repo))
    pipeline.load(Options(repo, store=store))
    bucket = _bucket(repo, store)
    if change is None:
        bucket.write_bytes(bucket.read_bytes() + b" ")
    else:
        _rewritten(bucket, change)
    tampered = bucket.read_bytes()
    files, entries = _spying(monkeypatch, store)
    assert pipeline.load(Options(repo, store=store)) == cold
    assert files == [] and len(entries) > 1  # from the groups' entries, not from the files
    assert bucket.read_bytes() != tampered and pipeline.load(Options(repo, store=store)) == cold


def test_a_cached_spec_decodes_its_values_when_asked_to_those_of_its_file(committed_example, store):
    """A spec from the cache gives its team, name, environments, sweep and workers without decoding its other values
    (loader.TOP), and, once asked, the data, raw texts and positions the file gives."""
    repo = committed_example
    cold, _ = pipeline.load(Options(repo))
    pipeline.load(Options(repo, store=store))
    model, _ = pipeline.load(Options(repo, store=store))
    pairs = list(zip(specs_of(model.experiments) + specs_of(model.served),
                     specs_of(cold.experiments) + specs_of(cold.served)))
    assert pairs and all("data" not in spec.__dict__ and "raw" not in spec.__dict__ for spec, _ in pairs)
    for spec, want in pairs:
        assert [spec.top(k, None) for k in loader.TOP] == [want.data.get(k) for k in loader.TOP]
        assert "data" not in spec.__dict__
        assert spec == want and spec.at("/name") == want.at("/name") and spec.raw == want.raw
    assert model.teams == cold.teams and model.platform == cold.platform and model == cold


@pytest.mark.parametrize("example", ["KF350-trainjob-on-a-platform-without-a-runtime", "KF350-tensorflow-on-kubeflow-trainer",
                                     "KF352-retries-on-a-trainjob-with-an-error"])
def test_the_rules_on_cached_specs_find_what_they_find_on_the_files(example, store, tmp_path):
    """The rules find on specs from the cache, whose values are decoded only where a rule asks, exactly what they
    find on the spec files; the distributed-training rule finds the distributed experiments by their workers, kept
    apart with the team and name (loader.TOP), and decodes only those."""
    from test_examples import EXAMPLES, make_repo
    from kflowgen import rules

    repo = make_repo(EXAMPLES / "invalid" / example, tmp_path)
    (distributed,) = (repo / "specs/experiments").rglob("*.yaml")
    for n in range(3):  # experiments on one machine beside it
        lines = distributed.read_text("utf-8").splitlines(True)
        (distributed.parent / f"single-{n}.yaml").write_text("".join(
            f"name: single-{n}\n" if line.startswith("name:") else line for line in lines
            if not line.startswith(("workers:", "retries:", "framework:"))), "utf-8")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    cold = read.read(Options(repo)).model  # the model the rules run on (load gives none when they find an error)
    read.read(Options(repo, store=store))
    model = read.read(Options(repo, store=store)).model
    specs = specs_of(model.experiments)
    assert len(specs) == 4 and all("data" not in s.__dict__ for s in specs)
    found = list(rules.RULES["distributed-training"](model))
    assert found and found == list(rules.RULES["distributed-training"](cold))
    assert {s.path for s in specs if "data" in s.__dict__} == {
        s.path for s in specs_of(cold.experiments) if s.data.get("workers", 1) > 1}
    assert rules.run(model) == rules.run(cold)


@pytest.mark.parametrize("change", [
    (b'["specs/experiments/vision/resnet-sweep.yaml",', b'!"specs/experiments/vision/resnet-sweep.yaml",'),
    (b'["specs/experiments/vision/resnet-sweep.yaml",', b'["specs/experiments/vision/resnet-sweeq.yaml",'),
    (b'resnet-sweep.yaml",{"team":"vision"', b'resnet-sweep.yaml",{"team":"visioN"'),  # not the team kept apart
])
def test_a_cached_spec_whose_values_were_altered_is_never_used(committed_example, store, monkeypatch, change):
    """A spec's values in an intact entry are decoded when first asked for: text that is not JSON, that is another
    file's, or whose team, name, environments or sweep are not those kept apart is refused there, never used."""
    repo = committed_example
    monkeypatch.setattr(read, "BUCKETS", 1)
    pipeline.load(Options(repo, store=store))
    pipeline.load(Options(repo, store=store))
    old, new = change
    assert _bucket(repo, store).read_bytes().count(old) == 1
    _rewritten(_bucket(repo, store), lambda body: body.replace(*change))
    model, _ = pipeline.load(Options(repo, store=store))  # the rules' results come from their own entry
    spec = next(s for s in specs_of(model.experiments) if s.path.endswith("/resnet-sweep.yaml"))
    with pytest.raises(ValueError, match="remove the cache"):
        spec.data


@pytest.mark.parametrize("forked", [False, True])
def test_rendered_files_come_from_the_cache_byte_identical(example_repo, store, monkeypatch, forked):
    if forked:  # forked render processes even for three teams
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    model, _ = pipeline.load(Options(example_repo, store=store))
    want = render(model)
    ids = {path: cache.blob_id(data) for path, data in want.items()}  # each file's git blob id, kept with it
    cold = render_cached(model, Options(Path('.'), 1, cache.Cache(None)))
    assert cold.files == want and list(cold.files) == list(want) and cold.ids == ids
    hits = store.hits
    first = render_cached(model, Options(Path('.'), 2, store))
    assert first.files == want and first.ids == ids and store.hits == hits
    again = render_cached(model, Options(Path('.'), 2, store))
    assert again.files == want and list(again.files) == list(want) and again.ids == ids
    assert store.hits == hits + 8 + 3  # teams, environments


def test_a_team_change_renders_that_team_again_and_nothing_else(example_repo, store):
    model, _ = pipeline.load(Options(example_repo, store=store))
    render_cached(model, Options(Path('.'), 1, store)).files
    spec = example_repo / "specs/experiments/vision/resnet-sweep.yaml"
    spec.write_text(spec.read_text().replace("python train.py", "python train2.py"))
    model, _ = pipeline.load(Options(example_repo, store=store))
    misses = store.misses
    rendered = render_cached(model, Options(Path('.'), 1, store))
    files = rendered.files
    assert store.misses - misses == 1  # vision in dev, where the experiment runs
    assert files == render(model) and rendered.ids == {p: cache.blob_id(d) for p, d in files.items()}
    assert all(b"train2.py" in data for path, data in files.items() if "/vision/workloads/job.resnet" in path)


def test_specs_not_read_from_files_are_rendered_not_cached(example_repo, store):
    model, _ = pipeline.load(Options(example_repo))
    model.teams[0].source.digest = ""  # e.g. a model built in a test: nothing to key its output on
    assert render_cached(model, Options(Path('.'), 1, store)).files == render(model)
    parts = {hub_parts.key(model, b) for b in range(hub_parts.PART_BUCKETS)}  # the teams' parts of the hub values,
    # of the teams read from files only
    entries = [e for e in (store.folder / "render").rglob("*") if e.is_file() and e.name not in parts]
    envs = len(model.teams[0].quota)
    assert len(entries) == 2 * ((8 - envs) + (3 - envs))  # its own files, and those its environments share (index
    # and data)
    kept = [part for k in parts for part in json.loads(store.lookup("render", k) or b"[]")]
    assert sorted(team for _, team, _, _ in kept) == sorted(f"{t.source.path}:{t.source.digest}" for t in model.teams[1:])


@pytest.mark.skipif(tools.find_batch() is None, reason="kflowgen-kbuild is not built (kflowgen tools install)")
def test_objects_the_builder_gives_are_the_parsed_yaml(example_repo):
    """Policy reads kflowgen-kbuild's JSON instead of parsing YAML: the same objects, so the same findings."""
    result = built(example_repo, cache.Cache(None))
    assert set(result.parsed) == {o for o in result.overlays if not layout.is_directory_source(o)}
    assert result.parsed == {o: parse(result.overlays[o]) for o in result.parsed}


@pytest.mark.parametrize("forked", [False, True])
def test_objects_the_renderer_gives_for_plain_directories_are_the_parsed_yaml(example_repo, store, monkeypatch, forked):
    """Plain directories (Argo CD's folders, the teams' workloads folders) are not parsed when their files were
    rendered in this run: the renderer's objects are what the files read as. Folders with files from the cache are
    parsed as before."""
    if forked:  # render workers hand the objects back
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    model, _ = pipeline.load(Options(example_repo))
    rendered = render_cached(model, Options(Path('.'), 2, store))
    result, diags = build(Options(example_repo, 2), rendered, overlays_of(rendered.files))
    plain = {o for o in result.overlays if layout.is_directory_source(o)}
    assert not diags and plain and set(result.parsed) == set(result.overlays)
    assert result.parsed == {o: parse(text) for o, text in result.overlays.items()}
    team = example_repo / "specs/teams/nlp.yaml"
    team.write_text(team.read_text() + "# changed\n")  # nlp's units are rendered again, the others come from the cache
    model, _ = pipeline.load(Options(example_repo))
    rendered = render_cached(model, Options(Path('.'), 2, store))
    every = [rel for folder in plain for rel in directory_files(rendered.files, folder)]
    assert 0 < len(rendered.objects) < len(every) and any(".nlp" in rel for rel in rendered.objects)
    again, _ = build(Options(example_repo, 2), rendered, overlays_of(rendered.files))
    # nlp's workloads folders were rendered whole in this run; the Argo CD folders hold files from the cache too
    rendered_whole = {o for o in plain if o.endswith("/teams/nlp/workloads")}
    assert len(rendered_whole) == 2
    assert set(again.parsed) == set(again.overlays) - (plain - rendered_whole) and again.overlays == result.overlays


@pytest.mark.parametrize("forked", [False, True])
def test_objects_handed_to_the_checks_are_held_packed_and_made_anew_for_each_reader(example_repo, monkeypatch, forked):
    """The objects the renderer and kflowgen-kbuild give are kept packed from the render and the build to the checks
    (at 1,000 teams, 200 MB less at the peak of a validate without the cache): each reader gets the same objects,
    made anew, none held between reads (and so none a reader could change for the next)."""
    if forked:  # render workers hand the objects back
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    model, _ = pipeline.load(Options(example_repo))
    rendered = render_cached(model, Options(Path('.'), 2, cache.Cache(None)))
    # (a render of many sets them aside in a temporary file, packed.Spill, as they arrive: see test_rendered_bytes)
    packed_as = At if forked else bytes
    assert rendered.objects and all(isinstance(o, packed_as) or o is None for o in rendered.objects.values())
    result, diags = build(Options(example_repo, 2), rendered, overlays_of(rendered.files))
    assert not diags and isinstance(result.parsed, Packed)
    given = [o for o in result.overlays if o in result.parsed]
    assert given == list(result.overlays) if tools.find_batch() else given
    for overlay in [o for o in given if result.counts and parse(result.overlays[o])]:
        first, second = result.given(overlay), result.given(overlay)
        assert first == second == parse(result.overlays[overlay]) and first is not second
        first[0]["kind"] = "Changed"  # a reader's change stays with that reader
        assert result.objects(overlay) == second and result.objects(overlay) is not result.objects(overlay)
    # a plain directory's files are known by the renderer's own maps of objects and blob ids, not a copy of them (at
    # 10,000 teams the copies were 20 to 40 MB of a validate's peak)
    assert result.part_objects is rendered.objects and result.part_ids is rendered.ids
    files = [rel for rel in result.part_objects if result.part_objects[rel] is not None]
    assert files and all(result.given(rel) == parse(rendered.files[rel].decode()) for rel in files)
    assert all(result.given(rel) == [] for rel in result.part_objects if result.part_objects[rel] is None)
    # and a plain directory's texts are decoded from the rendered files for each reader, not held either; the checks
    # take its files as the rendered bytes (decoded by none of them while the renderer's objects and blob ids do)
    assert result.parts and all(result.parts[f] == result.parts[f] and result.parts[f] is not result.parts[f]
                                and result.parts[f][0][1] is not result.parts[f][0][1] for f in result.parts)
    units = result.units()
    plain = {u: result.text(u) for u, o in units.items() if o in result.parts}
    assert plain and all(data is rendered.files[u] for u, data in plain.items())
    assert all(isinstance(result.text(u), str) for u, o in units.items() if o not in result.parts)
    unit, data = next(iter(plain.items()))
    assert dataclasses.replace(result, part_ids={}).unit_digest(unit) == cache.text_digest(data.decode())


def test_a_packed_mapping_holds_what_is_set_and_makes_what_is_given_packed_anew():
    held = Packed({"a": [{"kind": "A"}]})
    held["b"] = [{"kind": "B"}]
    held.put("c", pack([{"kind": "C", "spec": {"n": 1.5, "on": True, "none": None}}]))
    held.of_files("d", [pack({"kind": "D1"}), None, pack({"kind": "D2"})])
    assert held["a"] is held["a"] and held["b"] is held["b"]  # parsed here: held as they are
    assert held["c"] == [{"kind": "C", "spec": {"n": 1.5, "on": True, "none": None}}] and held["c"] is not held["c"]
    assert held["d"] == [{"kind": "D1"}, {"kind": "D2"}] and held["d"] is not held["d"]
    assert list(held) == ["a", "b", "c", "d"] and len(held) == 4 and "c" in held and "e" not in held
    assert held == {"a": [{"kind": "A"}], "b": [{"kind": "B"}], "c": held["c"], "d": held["d"]}
    del held["c"]
    assert "c" not in held and held.get("c") is None


@pytest.mark.parametrize("forked", [False, True])
def test_overlays_on_disk_are_built_in_place_only_when_they_hold_exactly_the_rendered_files(example_repo, monkeypatch,
                                                                                              forked):
    want = built(example_repo, cache.Cache(None))
    if forked:  # the overlays on disk are compared on forked processes
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    quota = example_repo / "overlays/prod/teams/recsys/platform/resourcequota.team.yaml"
    quota.write_text(quota.read_text().replace("requests.cpu:", "requests.cpu: '999'\n  x:"))
    (example_repo / "overlays/dev/teams/nlp/platform/extra.yaml").write_text("kind: ConfigMap\n")
    roots = {}
    for name in ("kustomize_batch", "kustomize_build"):
        real = getattr(build_stage, name)

        def spy(tool, at, group, *args, real=real, **kw):
            roots.update({o: at for o in group})
            return real(tool, at, group, *args, **kw)
        monkeypatch.setattr(build_stage, name, spy)
    assert built(example_repo, cache.Cache(None)).overlays == want.overlays  # from the specs, not the edits
    drifted = {"overlays/prod/teams/recsys/platform", "overlays/dev/teams/nlp/platform"}
    assert {o for o, at in roots.items() if at != example_repo} == drifted
    plain = [o for o in want.overlays if layout.is_directory_source(o)]
    assert len(roots) == len(want.overlays) - len(plain)  # every other kustomize overlay was built where it is


def test_rule_findings_come_from_the_cache_only_for_the_same_specs(example_repo, store):
    spec = example_repo / "specs/teams/vision.yaml"
    spec.write_text(spec.read_text().replace("a100: 4", "a100: 400", 1))  # over the environment's capacity
    cold = pipeline.load(Options(example_repo))[1]
    assert "KF306" in {d.code for d in cold}
    assert pipeline.load(Options(example_repo, store=store))[1] == cold and pipeline.load(Options(example_repo, store=store))[1] == cold
    spec.write_text(spec.read_text().replace("a100: 400", "a100: 4", 1))
    assert pipeline.load(Options(example_repo, store=store)) == pipeline.load(Options(example_repo))


def test_drift_found_on_forked_processes_is_the_drift_found_here(example_repo, monkeypatch):
    from kflowgen.write import writer

    model, _ = pipeline.load(Options(example_repo))
    files = render(model)
    quota = example_repo / "overlays/prod/teams/recsys/platform/resourcequota.team.yaml"
    quota.write_text(quota.read_text() + "# edited\n")
    (example_repo / "overlays/dev/argocd/application.vision-platform.yaml").unlink()
    here = writer.check(example_repo, files, jobs=1)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    forked = writer.check(example_repo, files, jobs=2)
    assert forked == here
    assert here[0].changed == [quota.relative_to(example_repo).as_posix()]
    assert here[0].added == ["overlays/dev/argocd/application.vision-platform.yaml"]


@pytest.mark.parametrize("stream", [
    b"==> 5 ok A\nkind:",  # cut short: 5 bytes announced, 5 sent, then the json record is missing
    b"==> 50 ok A\nkind: ConfigMap\n",  # fewer bytes than announced
    b"==> 2 ok A\n{}==> 2 ok B\n[]",  # a second ok where the json record belongs
    b"==> x ok A\n",  # a header that is not one
    b"==> 2 ok A\n{}==> 3 json A\n[1,",  # json that does not parse
])
def test_a_damaged_batch_stream_fails_the_overlays_and_is_never_taken_for_a_build(tmp_path, stream):
    fake = tmp_path / "kflowgen-kbuild"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\nsys.stdout.buffer.write({stream!r})\n")
    fake.chmod(0o755)
    got, objects = kustomize.kustomize_batch(fake, tmp_path, ["A", "B"], 1, with_objects=True)
    assert [(d.path, d.code) for d in got.values()] == [("A", "KF902"), ("B", "KF902")] and objects == {}


def test_a_good_batch_stream_is_read_exactly(tmp_path):
    fake = tmp_path / "kflowgen-kbuild"
    stream = b"==> 14 ok A\nkind: Service\n==> 20 json A\n[{\"kind\":\"Service\"}]==> 12 error B\nError: nope\n"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\nsys.stdout.buffer.write({stream!r})\n")
    fake.chmod(0o755)
    got, objects = kustomize.kustomize_batch(fake, tmp_path, ["A", "B"], 1, with_objects=True)
    assert got["A"] == "kind: Service\n" and objects == {"A": [{"kind": "Service"}]}
    assert got["B"].code == "KF401" and "nope" in got["B"].message


def test_a_policy_pass_is_keyed_on_the_overlay_and_kflowgens_code(example_repo, store, monkeypatch):
    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, store)
    overlay = "overlays/prod/teams/recsys/platform"
    text = result.overlays[overlay]
    assert policy.checked(model, None, Built({overlay: text}), store) == []
    hits = store.hits
    assert policy.checked(model, None, Built({overlay: text}), store) == [] and store.hits == hits + 1
    # the same text under another overlay's path is checked again: the rules read the path
    assert policy.checked(model, None, Built({"overlays/prod/teams/vision/workloads": text}), store) != []
    monkeypatch.setattr(cache, "code_digest", lambda: "another kflowgen")
    misses = store.misses
    policy.checked(model, None, Built({overlay: text}), store)
    assert store.misses == misses + 1


def test_a_policy_pass_is_keyed_on_every_team_spec(example_repo, store):
    """The policies judge an overlay against every team's people and namespaces (the RBAC policy: a user or group
    another team names): another team's spec changed, a pass is checked again."""
    model, _ = pipeline.load(Options(example_repo))
    overlay = "overlays/prod/teams/recsys/platform"
    text = built(example_repo, store).overlays[overlay]
    assert policy.checked(model, None, Built({overlay: text}), store) == []
    spec = example_repo / "specs/teams/vision.yaml"
    spec.write_text(spec.read_text().replace("  - alice@example.com\n", "  - alice@example.com\n  - bob@example.com\n"))
    edited, _ = pipeline.load(Options(example_repo))
    misses = store.misses
    assert policy.checked(edited, None, Built({overlay: text}), store) == [] and store.misses == misses + 1
    hits = store.hits
    assert policy.checked(edited, None, Built({overlay: text}), store) == [] and store.hits == hits + 1


def test_a_quota_change_judges_no_overlay_again(example_repo, store):
    """A team's quota is not in what the policies know (Context): the most common platform pull request, a quota,
    checks no policy again (at 10,000 teams, judging every overlay again took 190 s)."""
    model, _ = pipeline.load(Options(example_repo))
    overlay = "overlays/prod/teams/recsys/platform"
    text = built(example_repo, store).overlays[overlay]
    assert policy.checked(model, None, Built({overlay: text}), store) == []
    spec = example_repo / "specs/teams/vision.yaml"
    assert "gpu: {a100: 16}" in spec.read_text()
    spec.write_text(spec.read_text().replace("gpu: {a100: 16}", "gpu: {a100: 12}"))
    edited, _ = pipeline.load(Options(example_repo))
    hits, misses = store.hits, store.misses
    assert policy.checked(edited, None, Built({overlay: text}), store) == []
    assert (store.hits, store.misses) == (hits + 1, misses)


def test_a_policy_verdict_in_its_environments_context_is_the_verdict_in_every_environments(example_repo, store):
    """Once the context is named in the cache, an overlay is judged in its own environment's context only: every
    overlay of the example, and others' texts under a team's paths in each environment (refused), get exactly the
    findings that judging in the whole context gives."""
    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, cache.Cache(None))
    texts = {o: result.overlays[o] for o in result.overlays}
    for env in ("dev", "staging", "prod"):
        mine = sorted(o for o in texts if o.startswith(f"overlays/{env}/teams/"))
        texts[f"{mine[-1]}-copy"] = texts[mine[0]]  # (a team's files under another team's path)
    judged = Built(texts)
    whole = policy.checked(model, None, judged, cache.Cache(None))
    assert {d.path.split("/")[1] for d in whole} == {"dev", "staging", "prod"}
    policy.checked(model, None, Built({}), store)  # (names the context in the cache, judging nothing)
    assert policy.checked(model, None, judged, store) == whole


def test_a_schema_pass_needs_no_kubeconform_and_is_keyed_on_both_validators(example_repo, store, monkeypatch):
    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, cache.Cache(None))
    assert result.parsed, "kflowgen-kbuild hands over the built objects"

    plain = {u for u, o in result.units().items() if layout.is_directory_source(o)}  # no JSON from kbuild

    def kubeconform(tool, files, *args):  # all clean, and only ever asked about files of plain directories
        assert set(files) <= plain, f"kubeconform ran on objects the prechecker passes: {sorted(set(files) - plain)}"
        return []

    monkeypatch.setattr(kubeconform_adapter, "run", kubeconform)
    check = lambda: verify.manifests(example_repo, model, result, 2, cache.default_folder(), store)
    assert check() == []
    hits = store.hits
    files = sum(len(parts) for parts in result.parts.values())  # plain directories are checked file by file
    assert files > len(result.parts) > 0
    assert check() == [] and store.hits == hits + len(result.overlays)  # every overlay passed whole
    real = cache.dist_version  # another jsonschema-rs installed: its version, wherever kflowgen reads it
    monkeypatch.setattr(cache, "dist_version", lambda m: "0.0.1" if m == "jsonschema_rs" else real(m))
    cache.code_digest.cache_clear()
    misses = store.misses
    try:
        # another validator: every overlay checked again, a plain directory's files each looked up
        assert check() == [] and store.misses == misses + len(result.overlays) + files
    finally:
        cache.code_digest.cache_clear()


def test_schema_findings_are_kubeconforms_with_or_without_the_prechecker(example_repo, tmp_path):
    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, cache.Cache(None))
    overlay = "overlays/prod/teams/recsys/workloads"
    objects = [o for o in yaml.safe_load_all(result.overlays[overlay]) if o]
    objects[0]["metadata"]["bogusField"] = 1
    text = yaml.safe_dump_all(objects)
    found = [verify.manifests(example_repo, model, Built({overlay: text}, parsed=given), 2, tmp_path)
             for given in ({}, {overlay: objects})]
    assert found[0] == found[1] and [d.code for d in found[0]] == ["KF402"], found
    assert found[0][0].message.startswith("ConfigMap recsys/ranker-config: /metadata"), found  # kubeconform's words


def test_a_new_parsing_or_schema_library_is_a_new_code_digest(monkeypatch):
    """Spec results, renders and rule findings are keyed on the code digest: it names PyYAML's, jsonschema's and
    jsonschema-rs's versions as well as kflowgen's code."""
    real = cache.dist_version
    assert real("jsonschema_rs") == Prechecker.version() != "unknown" and real("yaml") != "unknown"
    before = cache.code_digest()
    for module in cache.LIBRARIES:
        cache.code_digest.cache_clear()
        monkeypatch.setattr(cache, "dist_version", lambda m, module=module: "0.0.1" if m == module else real(m))
        try:
            assert cache.code_digest() != before, module
        finally:
            cache.code_digest.cache_clear()
    monkeypatch.setattr(cache, "dist_version", real)
    assert cache.code_digest() == before


def test_a_librarys_version_is_read_from_its_install_record(monkeypatch):
    """The versions in the code digest are those importlib.metadata gives, read from each library's install record
    (name-version.dist-info beside it) without it: importlib.metadata costs every command 10-30 ms to import."""
    import importlib.metadata

    wanted = {m: importlib.metadata.version(d) for m, d in cache.LIBRARIES.items()}

    def refused(name):
        raise AssertionError(f"importlib.metadata asked for {name}")

    monkeypatch.setattr(importlib.metadata, "version", refused)
    assert {m: cache.dist_version.__wrapped__(m) for m in cache.LIBRARIES} == wanted


def test_packed_files_come_back_byte_for_byte_with_their_blob_ids():
    """A unit's index entry gives each file's path, size and blob id, its folders, those naming bases/ and the sha256
    of its data entry, which holds the bytes; an index that does not add up is not used."""
    files = {"overlays/dev/a b/ü.yaml": "x: ü\n".encode(), "overlays/dev/empty.yaml": b"", "c": b"1 2\n3 4\n" * 50,
             "overlays/dev/k/kustomization.yaml": b"resources: [../../../../bases/team]\n"}
    index, data = cached.pack(files)
    paths, sizes, ids, folders, based, digest = cached.unpack(index)
    assert paths == sorted(files) and dict(zip(paths, pieces.sliced(data, sizes))) == files
    assert digest == hashlib.sha256(data).hexdigest() and pieces.sliced(data + b"x", sizes) is None
    assert ids == [cache.blob_id(files[p]) for p in paths]
    assert ids[paths.index("overlays/dev/empty.yaml")] == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    assert folders == ["c", "overlays/dev", "overlays/dev/a b", "overlays/dev/k"] and based == ["overlays/dev/k"]
    assert cached.unpack(cached.pack({})[0]) == ([], [], [], [], [], hashlib.sha256(b"").hexdigest())
    no_folders, _ = cached._pack(paths, pieces.sliced(data, sizes), ids, [])  # an index without its folders
    too_many, _ = cached._pack(paths, pieces.sliced(data, sizes), ids, ["a", "b", "c", "d", "e"])  # more than files
    for broken in (b"", index[:-1], index + b"x", index.replace(b"4 ", b"5 ", 1), b"x" + index, no_folders, too_many,
                   index.replace(digest.encode(), digest[:-1].encode())):
        assert cached.unpack(broken) is None, broken[:20]


def _units_written(model) -> dict[str, str]:
    """{folder: sha256 of the entry of the one unit that writes it} for folders only one unit writes, from the units
    rendered one by one and packed as a render entry is: what Rendered.origin must say."""
    writers: dict[str, set[str]] = {}
    for u in targets.units(model):
        files = targets.unit(model, *u).files
        digest = hashlib.sha256(cached.pack(files)[0]).hexdigest()
        for path in files:
            writers.setdefault(path.rsplit("/", 1)[0], set()).add(digest)
    return {folder: digests.pop() for folder, digests in writers.items() if len(digests) == 1}


def test_each_folder_one_cached_unit_writes_names_that_units_entry_and_a_cut_folder_list_is_not_trusted(
        example_repo, store):
    """Rendered.origin (an overlay's build is keyed on it instead of on its files) names, for each folder whose files
    all come from one unit, the sha256 of that unit's entry: as written (cold) and as read back (warm), from the
    folders each entry lists. An entry whose folder list is gone (its checksum made again) does not add up: the unit
    is rendered again and its entry written as it was."""
    model, _ = pipeline.load(Options(example_repo, store=store))
    want = _units_written(model)
    assert "overlays/dev/teams/vision/workloads" in want and "overlays/dev/argocd" not in want  # shared with teams
    cold = render_cached(model, Options(Path('.'), 1, cache.Cache(None)))
    written = render_cached(model, Options(Path('.'), 1, store))
    misses = store.misses
    warm = render_cached(model, Options(Path('.'), 1, store))
    assert store.misses == misses and cold.origin == written.origin == warm.origin == want
    assert cold.files == written.files == warm.files and list(cold.files) == list(warm.files)
    assert cold.ids == warm.ids
    digest = want["overlays/dev/teams/vision/workloads"]
    entry = next(e for e in (store.folder / "render").rglob("*")
                 if e.is_file() and hashlib.sha256(e.read_bytes().partition(b"\n")[2]).hexdigest() == digest)
    kept = entry.read_bytes()
    paths, sizes, ids, folders, _, data = cached.unpack(kept.partition(b"\n")[2])
    assert "overlays/dev/teams/vision/workloads" in folders
    cut, _ = cached._pack(paths, pieces.read(store, data, sizes), ids, [])
    entry.write_bytes(hashlib.sha256(cut).hexdigest().encode() + b"\n" + cut)
    again = render_cached(model, Options(Path('.'), 1, store))
    assert store.misses == misses + 1 and again.origin == want and again.files == cold.files
    assert entry.read_bytes() == kept  # rendered again, and kept as it was


def test_of_two_units_writing_one_path_the_later_wins_cached_as_uncached(example_repo, store, monkeypatch):
    """Files are merged in path order and, of two units writing one path, the later unit's bytes win, as render()
    gives them: cold, while entries are written and when every unit comes from the cache. (The renderer never writes
    one path twice; here every unit also writes one path that all of an environment's units share.)"""
    real = targets.unit

    def overlapping(model, env, name, known=None):
        made = real(model, env, name, known)
        return targets.Unit({f"overlays/{env}/argocd/zz.yaml": f"{env} {name}\n".encode(), **made.files},
                            made.objects)

    monkeypatch.setattr(targets, "unit", overlapping)
    monkeypatch.setattr(cached, "unit", overlapping)
    model, _ = pipeline.load(Options(example_repo, store=store))
    want = render(model)
    last = [name for env, name in targets.units(model) if env == "dev"][-1]
    assert want["overlays/dev/argocd/zz.yaml"] == f"dev {last}\n".encode()
    ids = {path: cache.blob_id(data) for path, data in want.items()}
    for store_now in (cache.Cache(None), store, store):  # cold, writing, reading
        got = render_cached(model, Options(Path('.'), 1, store_now))
        assert got.files == want and list(got.files) == list(want) and got.ids == ids


def test_a_unit_is_keyed_on_exactly_the_spec_files_of_its_environment(example_repo):
    """What a team's unit is keyed on: the platform, the team, and its models and experiments that run in that
    environment (their specs' `environments`), in model order; an environment's shared unit: the platform and the
    teams there."""
    from kflowgen.specs.model import specs_of

    model, _ = pipeline.load(Options(example_repo))
    served, experiments = specs_of(model.served), specs_of(model.experiments)
    left_out = 0
    for env, name in targets.units(model):
        got = targets.unit_sources(model, env, name)
        if not name:
            assert got == [model.platform.source] + [t.source for t in model.teams if env in t.quota]
            continue
        team = next(t for t in model.teams if t.name == name)
        runs = lambda specs: [s for s in specs if s.data["team"] == name and env in s.data["environments"]]
        assert got == [model.platform.source, team.source] + runs(served) + runs(experiments), (env, name)
        left_out += sum(s.data["team"] == name and env not in s.data["environments"] for s in served + experiments)
    assert left_out  # some model or experiment runs in some of its team's environments only
    assert [t.name for t in model.teams_in("dev")] == [t.name for t in model.teams if "dev" in t.quota]
    assert model.teams_in("dev") is not model.teams_in("dev")  # a list of one's own


def test_a_hub_values_pass_is_cached_and_changed_values_are_checked_again(example_repo, tmp_path, monkeypatch):
    store = cache.Cache(tmp_path / "cache")
    model, _ = pipeline.load(Options(example_repo, 1, store))
    files = render(model)
    merged = []
    real = verify.merge_values
    monkeypatch.setattr(verify, "merge_values",  # counts the merges of a whole values file (not its recursion)
                        lambda d, o: (merged.append(1) if isinstance(o, dict) and "singleuser" in o else None)
                        or real(d, o))
    assert verify.hub_values(example_repo, model, files, ["dev", "staging"], store) == [] and len(merged) == 2
    assert verify.hub_values(example_repo, model, files, ["dev", "staging"], store) == [] and len(merged) == 2  # cached
    rel = "overlays/dev/jupyterhub/values.yaml"
    broken = {**files, rel: files[rel] + b"proxy: {service: {type: Banana}}\n"}
    found = verify.hub_values(example_repo, model, broken, ["dev", "staging"], store)
    assert [(d.path, d.code) for d in found] == [(rel, "KF404")] and len(merged) == 3
    again = verify.hub_values(example_repo, model, broken, ["dev"], store)  # a failure is never cached
    assert [(d.path, d.code) for d in again] == [(rel, "KF404")] and len(merged) == 4
    assert verify.hub_values(example_repo, model, files, ["dev"], cache.Cache(None)) == [] and len(merged) == 5
    # one values file for two environments (as jupyterhub.values_file gives it when they hold the same teams): checked
    # once, and found wrong in each environment's file; the same bytes in another object are the same file too
    prod = "overlays/prod/jupyterhub/values.yaml"
    for dev_bytes in (broken[rel], files[rel] + b"proxy: {service: {type: Banana}}\n"):
        both = verify.hub_values(example_repo, model, {**files, rel: dev_bytes, prod: broken[rel]}, ["dev", "prod"],
                                 cache.Cache(None))
        assert [(d.path, d.code) for d in both] == [(rel, "KF404"), (prod, "KF404")]
        assert both[0].message == both[1].message == found[0].message
    assert len(merged) == 7


def test_one_changed_file_of_a_plain_directory_is_the_one_checked_again(example_repo, store, monkeypatch):
    """A team's workloads folder is checked file by file: after one file changes (here only by a comment), the
    schema check and the policies look at that file only, and the rest of the folder comes from the pass list."""
    import dataclasses

    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, cache.Cache(None))
    ids = {rel: cache.blob_id(t.encode()) for o in result.parts for rel, t in result.parts[o]}
    assert {rel: result.part_ids[rel] for rel in ids if rel in result.part_ids} in ({}, ids)  # (the render's ids)
    result = dataclasses.replace(result, part_ids=ids)
    check = lambda b: (verify.manifests(example_repo, model, b, 2, cache.default_folder(), store),
                       policy.checked(model, None, b, store))
    assert check(result) == ([], [])
    overlay = "overlays/dev/teams/vision/workloads"
    parts = list(result.parts[overlay])
    assert len(parts) >= 4
    rel, text = parts[1]
    parts[1] = (rel, text + "# edited by hand\n")
    every = {o: parts if o == overlay else list(result.parts[o]) for o in result.parts}
    edited = dataclasses.replace(result, overlays={**result.overlays, overlay: "---\n".join(t for _, t in parts)},
                                 parts=build_stage.Parts({r: t.encode() for o in every for r, t in every[o]},
                                                         {o: [r for r, _ in every[o]] for o in every}), parsed={},
                                 digests={o: d for o, d in result.digests.items() if o != overlay},
                                 part_ids={**ids, rel: cache.blob_id(parts[1][1].encode())})
    hashed = []  # a plain directory's files are known by their blob ids: no text of one is hashed
    real_digest = cache.text_digest
    monkeypatch.setattr(cache, "text_digest", lambda text: hashed.append(text) or real_digest(text))
    validated, judged = [], []  # (the objects come from the texts here: the schema check is kubeconform's)
    real_kubeconform, real_run = kubeconform_adapter.run, policy.run
    monkeypatch.setattr(kubeconform_adapter, "run", lambda tool, files, *a: validated.extend(files) or
                        real_kubeconform(tool, files, *a))
    monkeypatch.setattr(policy, "run", lambda units, *a, **k: judged.extend(units) or real_run(units, *a, **k))
    assert check(edited) == ([], [])
    assert judged == [rel] and validated == [rel]
    assert not {t for _, t in parts} & set(hashed)
    judged.clear()
    validated.clear()
    assert check(edited) == ([], []) and judged == validated == []  # and now the folder passed whole


@pytest.mark.parametrize("damage", [None, "body", "shape"])
def test_a_plain_directory_that_passed_whole_is_looked_up_by_the_files_its_listing_does_not_hold(
        example_repo, store, monkeypatch, damage):
    """A plain directory of LISTED_FROM files or more keeps the listing ({path: blob id}) it passed whole with. After
    some of its files change, the schema check and the policies look up no key of the files the listing holds with
    the same blob id, and check the rest: a file edited, one at a new path (its blob id unchanged), one now wrong,
    which is found as a run without the cache finds it. A damaged listing, or one of another shape, vouches for
    nothing: every file is looked up by its key."""
    import dataclasses

    monkeypatch.setattr(cache, "LISTED_FROM", 2)  # (the example's workloads folders hold 2 to 8 Jobs)
    model, _ = pipeline.load(Options(example_repo))
    result = built(example_repo, cache.Cache(None))
    ids = {rel: cache.blob_id(t.encode()) for o in result.parts for rel, t in result.parts[o]}
    result = dataclasses.replace(result, part_ids=ids)
    check = lambda b, s=store: (verify.manifests(example_repo, model, b, 2, cache.default_folder(), s),
                                policy.checked(model, None, b, s))
    listed = []
    real_put = cache.Cache.put
    monkeypatch.setattr(cache.Cache, "put", lambda self, kind, k, body, *a: (
        listed.append((kind, k)) if b"\0" in body else None) or real_put(self, kind, k, body, *a))
    assert check(result) == ([], [])
    overlay = "overlays/dev/teams/vision/workloads"
    parts = list(result.parts[overlay])
    assert len(parts) >= 4
    # every plain directory of 2 files or more kept its listing, once for the schema check and once for policy
    assert sorted(kind for kind, _ in listed) == sorted(
        ["policy", "valid"] * sum(len(result.parts[o]) >= 2 for o in result.parts))
    for kind, k in listed:
        if damage == "body":
            path = store._path(kind, k)
            path.write_bytes(path.read_bytes()[:-1] + b"x")
        elif damage == "shape":
            real_put(store, kind, k, b"odd\0" + store.lookup(kind, k))
    (edited_rel, edited), (moved_rel, moved), (wrong_rel, wrong) = parts[1], parts[2], parts[3]
    parts[1] = (edited_rel, edited + "# edited by hand\n")
    parts[2] = (moved_rel.replace("/job.", "/job.moved-"), moved)
    parts[3] = (wrong_rel, wrong.replace("  namespace: vision\n", "  namespace: kube-system\n", 1)
                .replace("  backoffLimit: 1\n", "  backoffLimit: 1\n  bogusField: 1\n", 1))
    assert parts[3][1].count("kube-system") == 1 and "bogusField" in parts[3][1]
    changed = {rel for rel, _ in parts[1:4]}

    def with_folder(folder: str, files: list[tuple[str, str]]) -> Built:
        """result with the folder's files these (its parts read from bytes, as a build gives them: build.Parts)."""
        every = {o: files if o == folder else list(result.parts[o]) for o in result.parts}
        return dataclasses.replace(
            result, overlays={**result.overlays, folder: "---\n".join(t for _, t in files)},
            parts=build_stage.Parts({rel: t.encode() for o in every for rel, t in every[o]},
                                    {o: [rel for rel, _ in every[o]] for o in every}), parsed={},
            digests={o: d for o, d in result.digests.items() if o != folder},
            part_ids={**ids, **{rel: cache.blob_id(t.encode()) for rel, t in files}})
    edited_built = with_folder(overlay, parts)
    looked, validated, judged = [], [], []
    real_has, real_kubeconform, real_run = cache.Passes.has, kubeconform_adapter.run, policy.run
    monkeypatch.setattr(cache.Passes, "has", lambda self, k, o, whole=False: (
        looked.append((self.kind, o, whole)) or real_has(self, k, o, whole)))
    monkeypatch.setattr(kubeconform_adapter, "run", lambda tool, files, *a: validated.extend(files) or
                        real_kubeconform(tool, files, *a))
    monkeypatch.setattr(policy, "run", lambda units, *a, **k: judged.extend(units) or real_run(units, *a, **k))
    found = check(edited_built)
    mine, judged_now, validated_now = list(looked), list(judged), list(validated)  # (not the cold run's)
    cold = check(edited_built, cache.Cache(None))
    assert found == cold and {d.code for d in found[0]} == {"KF402"} and found[1]
    assert {d.path for d in found[0] + found[1]} == {overlay}
    # the files looked up one by one: the three that changed, or (damaged) every file of the folder
    per_file = [(kind, whole) for kind, o, whole in mine if o == overlay and not whole]
    assert sorted(per_file) == sorted([("policy", False), ("valid", False)] * (3 if damage is None else len(parts)))
    # and checked: those three (the others passed: by the listing, or by their keys)
    assert sorted(judged_now) == sorted(changed) and set(validated_now) <= changed and wrong_rel in validated_now
    # the folder did not pass: its listing is not the one it holds now, and the wrong file is found again
    judged.clear()
    assert check(edited_built) == cold and judged == [wrong_rel]
    # a folder one file shorter, the others unchanged: every file it holds passed, so it passes whole (the next run
    # does not look into it)
    other = next(o for o in result.parts if o != overlay and len(result.parts[o]) >= 3)
    shorter = with_folder(other, list(result.parts[other])[:-1])
    asked = []
    real_unchanged = cache.Passes.unchanged
    monkeypatch.setattr(cache.Passes, "unchanged", lambda self, o, listing: asked.append(o) or real_unchanged(
        self, o, listing))
    assert check(shorter) == ([], []) and asked.count(other) == 2
    asked.clear()
    assert check(shorter) == ([], []) and other not in asked


def test_a_kept_listing_vouches_only_in_its_own_check_context_and_folder(store):
    """A plain directory's listing, kept when it passed whole (Passes.add), vouches for its files in that check and
    context and for that folder only, each file only with the blob id it passed with; none is kept below LISTED_FROM
    files."""
    folder = "overlays/dev/teams/nlp/workloads"
    listing = {f"{folder}/job.exp-{i}.yaml": f"{i:040x}" for i in range(cache.LISTED_FROM)}
    passed = cache.Passes(store, "policy", "code", "context")
    passed.add("a" * 64, folder, whole=True, listing=listing)
    passed.add("b" * 64, folder + "-small", whole=True, listing=dict(list(listing.items())[1:]))
    passed.save()
    assert cache.Passes(store, "policy", "code", "context").unchanged(folder, listing) == set(listing)
    first = next(iter(listing))
    assert cache.Passes(store, "policy", "code", "context").unchanged(folder, {**listing, first: "f" * 40}) == \
        set(listing) - {first}
    for kind, context, at in [("policy", ("code", "other"), folder), ("policy", ("other", "context"), folder),
                              ("valid", ("code", "context"), folder), ("policy", ("code", "context"), "overlays/x"),
                              ("policy", ("code", "context"), folder + "-small")]:
        assert cache.Passes(store, kind, *context).unchanged(at, listing) == set(), (kind, context, at)


def test_keys_sharing_their_first_parts_are_the_keys_of_all_parts():
    keyed = cache.keyed("policy", "a" * 64, b"bytes")
    assert keyed("overlays/dev/x", "b" * 64) == cache.key("policy", "a" * 64, b"bytes", "overlays/dev/x", "b" * 64)
    assert keyed("x", "y") != keyed("xy") != keyed("x", "y", "")  # parts keep their bounds
    assert cache.keyed()("p") == cache.key("p")


def test_a_key_is_the_sha256_of_its_parts_each_after_its_length():
    """The format of a key, spelled out: a faster way of feeding the parts must give the same keys (a cache filled
    by an earlier kflowgen of the same cache VERSION stays readable)."""
    parts = ["policy", "a" * 64, b"bytes", 3, "\u00fc"]
    h = hashlib.sha256(cache.VERSION.encode())
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    assert cache.key(*parts) == h.hexdigest() == cache.keyed(*parts[:2])(*parts[2:])


def test_experiments_are_checked_again_only_for_the_teams_whose_inputs_changed(example_repo, store, monkeypatch):
    """The experiments rule runs team by team, each team's findings cached under its experiments, its team file and
    the platform file: a change to one team checks that team's experiments again, and every finding is what a run
    without a cache finds."""
    from kflowgen import rules

    checked, real = [], rules.RULES["experiments"]
    monkeypatch.setitem(rules.RULES, "experiments", lambda m, exps=None, whole=True: (
        exps is not None and not whole and checked.append(sorted({e.team for e in exps}))) or real(m, exps, whole))

    def load() -> set:
        checked.clear()
        found = set(pipeline.load(Options(example_repo, store=store))[1])
        assert found == set(pipeline.load(Options(example_repo))[1])  # a run without the cache
        return found

    assert load() == set() and sorted(checked[:3]) == [["nlp"], ["recsys"], ["vision"]]
    sweep = example_repo / "specs/experiments/vision/resnet-sweep.yaml"
    sweep.write_text(sweep.read_text().replace("cpu: 8, memory: 32Gi", "cpu: 80, memory: 32Gi"))
    found = load()
    assert {d.code for d in found} == {"KF324"} and checked[0] == ["vision"]
    nlp = example_repo / "specs/teams/nlp.yaml"
    nlp.write_text(nlp.read_text().replace("cpu: 16", "cpu: 12", 1))
    assert load() == found and checked[0] == ["nlp"]  # vision's finding comes from its entry
    vision = example_repo / "specs/teams/vision.yaml"
    vision.write_text(vision.read_text().replace("cpu: 64", "cpu: 320", 1))  # dev's quota now holds the trials
    assert load() == set() and checked[0] == ["vision"]
    vision.write_text(vision.read_text().replace("cpu: 320", "cpu: 64", 1))
    entries = [e for e in (store.folder / "rules").rglob("*") if e.is_file()]
    for entry in entries:  # damaged: nothing in them is trusted, every team is checked again
        entry.write_bytes(entry.read_bytes().replace(b"KF324", b"KF999").replace(b" 0", b" 7"))
    assert load() == found and sorted(checked[:3]) == [["nlp"], ["recsys"], ["vision"]]
    sweep.write_text(sweep.read_text().replace("team: vision", "team: visio"))  # a team that does not exist
    assert {d.code for d in load()} == {"KF320", "KF321"} and checked[0] == ["visio"]


def test_hub_values_from_each_teams_cached_part_are_the_values_rendered_whole(example_repo, store, monkeypatch):
    """An environment's hub values name every team's profiles: rendered again when one team changes, the other
    teams' parts (their profile list entries, as YAML and as the values digest reads them) come from the cache, and
    the file is byte for byte the one rendered whole, also when the parts entry is damaged."""
    from kflowgen.targets import emit, jupyterhub

    made = []
    real = jupyterhub._profiles
    monkeypatch.setattr(jupyterhub, "_profiles", lambda p, teams: made.extend(t.name for t in teams) or real(p, teams))

    def values(cached: bool) -> dict[str, bytes]:
        jupyterhub.PARTS.clear()  # as a new process starts
        made.clear()
        opts = Options(example_repo, 2, store if cached else cache.Cache(None))
        model, _ = pipeline.load(opts)
        files = render_cached(model, opts).files
        rendered = set(made)  # the teams whose part was made, not recalled
        whole = {p: d for p, d in render(model).items() if p.endswith("/jupyterhub/values.yaml")}
        assert {p: files[p] for p in whole} == whole and len(whole) == 3
        for env in model.platform.environments:
            teams = model.teams_in(env)
            assert jupyterhub.values_text(model.platform, teams) == emit.dump(jupyterhub.values(model.platform, teams))
        return rendered

    assert values(cached=False) == values(cached=True) == {"nlp", "recsys", "vision"}
    team = example_repo / "specs/teams/nlp.yaml"
    team.write_text(team.read_text().replace("cpu: 16", "cpu: 12", 1))
    assert values(cached=True) == {"nlp"}
    model, _ = pipeline.load(Options(example_repo))
    buckets = {hub_parts.bucket_of(jupyterhub.part_key(model.platform, t)) for t in model.teams}
    assert len(buckets) == 3  # one team's part in each
    entry = next(e for e in (store.folder / "render").rglob("*")
                 if e.is_file() and b"kubespawner_override" in e.read_bytes() and e.read_bytes()[65:66] == b"["
                 and b"specs/teams/vision.yaml" in e.read_bytes())
    entry.write_bytes(entry.read_bytes().replace(b"kubespawner_override", b"kubespawner_overrode", 1))
    team.write_text(team.read_text().replace("cpu: 12", "cpu: 13", 1))
    assert values(cached=True) == {"nlp", "vision"}  # a damaged bucket gives no part: its team's is made again
    for entry in (e for e in (store.folder / "render").rglob("*") if e.is_file() and e.read_bytes()[65:66] == b"["):
        entry.write_bytes(entry.read_bytes().replace(b"kubespawner_override", b"kubespawner_overrode", 1))
    team.write_text(team.read_text().replace("cpu: 13", "cpu: 14", 1))
    assert values(cached=True) == {"nlp", "recsys", "vision"}  # damaged entries give no part
    inodes = {b: store._path("render", hub_parts.key(model, b)).stat().st_ino for b in buckets}
    team.write_text(team.read_text().replace("cpu: 14", "cpu: 15", 1))
    assert values(cached=True) == {"nlp"}  # each bucket was written again whole
    nlp = hub_parts.bucket_of(jupyterhub.part_key(model.platform, model.team("dev", "nlp")))
    assert {b for b in buckets if store._path("render", hub_parts.key(model, b)).stat().st_ino != inodes[b]} == {nlp}
@pytest.mark.parametrize("git_tree", [False, True])
def test_specs_from_the_cache_read_on_forked_processes_are_the_cold_ones(request, store, monkeypatch, git_tree):
    """Groups looked up by forked readers (a plain folder's, or git's when files changed) come back to the parent
    with their values still undecoded, and decode there to what a run without the cache reads."""
    repo = request.getfixturevalue("committed_example" if git_tree else "example_repo")
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    if git_tree:  # every file changed since its commit: each group is read, and its entry looked up, by a reader
        for path in (repo / "specs").rglob("*.yaml"):
            path.write_bytes(path.read_bytes() + b"\n")
    cold = pipeline.load(Options(repo, 2))
    pipeline.load(Options(repo, 2, store))
    warm = pipeline.load(Options(repo, 2, store))
    assert all("_data" in spec.__dict__ for spec in specs_of(warm[0].experiments))  # not decoded yet
    assert warm == cold and render(warm[0]) == render(cold[0])


def test_hub_values_where_the_parts_mark_is_also_a_name_are_rendered_whole(example_repo, monkeypatch):
    """The teams' parts go where a mark stands in the values written without them; a person or group named like the
    mark puts it elsewhere too, and then the values are rendered whole (the same bytes, never a part spliced twice)."""
    from kflowgen.targets import emit, jupyterhub

    team = example_repo / "specs/teams/nlp.yaml"
    team.write_text(team.read_text().replace("  - bob@example.com", f"  - bob@example.com\n  - {jupyterhub._MARK}"))
    model, diags = pipeline.load(Options(example_repo))
    assert model is not None, diags
    whole = []
    real = jupyterhub.values
    monkeypatch.setattr(jupyterhub, "values", lambda p, teams: whole.append(1) or real(p, teams))
    for env in model.platform.environments:
        teams = model.teams_in(env)
        assert jupyterhub.values_text(model.platform, teams) == emit.dump(real(model.platform, teams))
    assert whole  # (the nlp environments' values fell back to the whole render)


def test_environments_holding_the_same_teams_share_one_hub_values_text(example_repo, monkeypatch):
    """The hub values are made once for environments that hold the same team objects (in the same order); other
    teams, fewer of them, another order or a changed team make them anew, and each text is the one rendered whole."""
    import dataclasses

    from kflowgen.targets import emit, jupyterhub

    model, diags = pipeline.load(Options(example_repo))
    assert model is not None, diags
    p, teams = model.platform, model.teams_in("prod")
    made = []
    real = jupyterhub._values_text
    monkeypatch.setattr(jupyterhub, "_values_text", lambda p, teams: made.append(len(teams)) or real(p, teams))
    changed = dataclasses.replace(teams[0], owners=(*teams[0].owners, "someone-else"))
    for given, new in ((teams, True), (list(teams), False), (teams[:-1], True), (teams[::-1], True),
                       (teams, True), ([changed, *teams[1:]], True), ([changed, *teams[1:]], False)):
        count = len(made)
        assert jupyterhub.values_text(p, given) == emit.dump(jupyterhub.values(p, given))
        assert len(made) == count + new
    assert "someone-else" in jupyterhub.values_text(p, [changed, *teams[1:]])
    # and the files: one bytes object for the same teams and header, made anew for another header or other teams
    first = jupyterhub.values_file("# a\n", p, teams)
    assert first == ("# a\n" + emit.dump(jupyterhub.values(p, teams))).encode()
    assert jupyterhub.values_file("# a\n", p, list(teams)) is first
    assert jupyterhub.values_file("# b\n", p, teams) == b"# b\n" + first[4:]
    assert b"someone-else" in jupyterhub.values_file("# b\n", p, [changed, *teams[1:]])
    assert b"someone-else" not in jupyterhub.values_file("# b\n", p, teams)


def test_a_gate_reads_the_files_of_no_unchanged_unit(committed_example, store, monkeypatch):
    """An unchanged unit's files come from the cache as their paths and blob ids: the drift check, the builds (an
    overlay one unit wrote by its entry, overlays/<env>/argocd by its files' blob ids), the checks and the diff side
    read none of their bytes; only the shared units' (the hub values the checks and the diff read). The report is the
    one a run without the cache gives."""
    repo = committed_example
    for _ in range(2):
        assert not pipeline.checked(Options(repo, store=store), drift=True).report.errors
    spec = repo / "specs/experiments/vision/resnet-sweep.yaml"
    spec.write_text(spec.read_text("utf-8").replace("epochs: 10", "epochs: 12"), "utf-8")
    assert not pipeline.render_to_disk(Options(repo, store=cache.Cache(None)), False).errors
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "vision: two more epochs")  # the pull request, as CI checks it out
    loads = []
    real = cached._data_of
    monkeypatch.setattr(cached, "_data_of", lambda *a: loads.append(a[2][a[-1]][0]) or real(*a))  # (env, team)
    done = pipeline.checked(Options(repo, store=store), drift=True)
    side = pipeline.head_side(Options(repo, store=store), done, keep=False)
    assert sorted(loads) == [("dev", ""), ("prod", ""), ("staging", "")] and side is not None  # the hub values
    cold = pipeline.checked(Options(repo, store=cache.Cache(None)), drift=True)
    assert (done.report.diagnostics, done.report.summary) == (cold.report.diagnostics, cold.report.summary)
    assert dict(done.rendered.files.items()) == dict(cold.rendered.files.items()) and loads  # now read


def test_a_units_files_gone_from_the_cache_are_rendered_again_and_never_others(example_repo, store, monkeypatch):
    """A unit whose index is cached but whose data entry is gone or damaged is rendered again when its bytes are
    asked for: the same files, kept again. Rendered to other blob ids than its index gives, it stops the run
    (RenderLost) rather than giving files the index does not vouch for."""
    model, _ = pipeline.load(Options(example_repo))
    want = render(model)
    render_cached(model, Options(Path('.'), 1, store))
    kept = {e: e.read_bytes() for e in (store.folder / "render").rglob("*") if e.is_file()}
    indexes = [found for body in kept.values() if (found := cached.unpack(body.partition(b"\n")[2]))]
    data = [e for e in kept if e.name in {cached.data_key(found[5]) for found in indexes}]
    assert len(data) == len(indexes) > 2
    for n, e in enumerate(data):
        e.unlink() if n % 2 else e.write_bytes(kept[e][:-1])  # gone, or cut short
    again = render_cached(model, Options(Path('.'), 1, store))
    assert dict(again.files.items()) == want and all(e.read_bytes() == body for e, body in kept.items())
    for e in data:
        e.unlink()
    real = cached.unit
    monkeypatch.setattr(cached, "unit", lambda m, env, name, known=None: targets.Unit(
        {p: d + b"#" for p, d in real(m, env, name, known).files.items()}, {}))
    lost = render_cached(model, Options(Path('.'), 1, store))
    assert list(lost.files) == list(want)  # the paths and ids from the index
    with pytest.raises(cached.RenderLost, match="delete the result cache"):
        lost.files[next(iter(want))]


def _render_reads(monkeypatch, store) -> list[str]:
    """The keys of the render entries this process reads."""
    keys: list[str] = []
    real = store.read
    monkeypatch.setattr(store, "read", lambda kind, k: (keys.append(k) if kind == "render" else None) or real(kind, k))
    return keys


def test_the_units_of_a_bucket_are_recalled_from_one_entry(example_repo, store, monkeypatch):
    """The indexes of a bucket's units are kept together too: a run that changes nothing reads one entry per bucket;
    a change to one team reads its bucket's units one by one, and keeps the bucket again; the files are a cold
    render's each time."""
    monkeypatch.setattr(cached, "BUCKETS", 2)
    model, _ = pipeline.load(Options(example_repo))
    want = render(model)
    units = targets.units(model)
    assert dict(render_cached(model, Options(Path('.'), 1, store)).files.items()) == want  # buckets kept
    reads = _render_reads(monkeypatch, store)
    warm = render_cached(model, Options(Path('.'), 1, store))
    assert len(reads) == 2 and dict(warm.files.items()) == want
    spec = example_repo / "specs/experiments/vision/resnet-sweep.yaml"
    spec.write_text(spec.read_text("utf-8").replace("epochs: 10", "epochs: 12"), "utf-8")
    model, _ = pipeline.load(Options(example_repo))
    reads.clear()
    changed = render_cached(model, Options(Path('.'), 1, store))
    missed = {zlib.crc32(f"{env}/{team}".encode()) % 2 for env, team in units if team == "vision" and env == "dev"}
    members = sum(zlib.crc32(f"{env}/{team}".encode()) % 2 in missed for env, team in units)
    assert len(reads) == 2 + members + 1  # the buckets; the missed one's units, and vision's new entry to keep it
    assert dict(changed.files.items()) == render(model) and changed.origin == warm.origin | {
        f: changed.origin[f] for f in changed.origin if "/vision/" in f}
    reads.clear()
    again = render_cached(model, Options(Path('.'), 1, store))
    assert len(reads) == 2 and again.origin == changed.origin and again.ids == changed.ids


def _cut(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-1])  # its checksum line no longer matches


SPOILT = {
    "cut short": _cut,
    "a line that is not a length and a sha256 for each unit": lambda entry: _rewritten(
        entry, lambda body: body.replace(b" ", b"  ", 1)),
    "one unit more than the bucket has": lambda entry: _rewritten(
        entry, lambda body: body.replace(b"\n", b" 0 " + b"0" * 64 + b"\n", 1)),
    "an index that does not add up": lambda entry: _rewritten(
        entry, lambda body: body.replace(b"\n", b"\n2", 1)[:-1]),
}


@pytest.mark.parametrize("spoil", SPOILT)
def test_a_bucket_that_does_not_add_up_is_not_used(example_repo, store, monkeypatch, spoil):
    """A bucket's entry that is damaged, or intact but not the bucket's indexes in the shape _keep_bucket writes,
    is not used: its units are recalled one by one (and the bucket kept again), the files a cold render's."""
    monkeypatch.setattr(cached, "BUCKETS", 1)
    model, _ = pipeline.load(Options(example_repo))
    want = render(model)
    render_cached(model, Options(Path('.'), 1, store))
    keys = cached._unit_keys(model, targets.units(model))
    entry = store._path("render", cached._bucket_key(list(keys), keys))
    kept = entry.read_bytes()
    SPOILT[spoil](entry)
    reads = _render_reads(monkeypatch, store)
    got = render_cached(model, Options(Path('.'), 1, store))
    assert len(reads) == 1 + len(keys) and dict(got.files.items()) == want  # (kept from the entries read)
    assert entry.read_bytes() == kept


def test_a_value_per_bytes_object_is_never_taken_for_another_object_at_the_same_address():
    """The hub values file that environments share is hashed once per bytes object (cache.PerObject, used by the
    render, the diff's side and the chart-schema check): an object freed meanwhile leaves its address to the next
    one, which must get its own value, not the freed one's (keyed by id() alone, 198 of these 200 are wrong)."""
    made = []
    digest_of = cache.PerObject(lambda data: made.append(data) or hashlib.sha256(data).hexdigest())
    for i in range(200):
        data = bytes([i % 256]) * 1000  # freed when the next one is made, at the same address most often
        assert digest_of(data) == hashlib.sha256(data).hexdigest()
    shared = b"values" * 100
    assert [digest_of(shared) for _ in range(3)] == [hashlib.sha256(shared).hexdigest()] * 3
    assert len(made) == 201  # once per object, and once for the object given three times
