"""What a run holds of the rendered files' bytes: a render of many units leaves each unit's bytes in the result cache
once they are there, the stages after it read a unit's back when they ask for one of its files and hold only the units
read last, and the schema and policy checks read a file's bytes only when they judge it by its text."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kflowgen import cache, parallel, tools
from kflowgen import build as build_stage
from kflowgen.build import build, overlays_of
from kflowgen.build.views import Texts
from kflowgen.checks import kubeconform as kubeconform_adapter, policy, verify
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.packed import At, Packed, Span, Spill, loads, pack, unpacked, unpacked_all
from kflowgen.targets import files as files_module
from kflowgen.targets.cached import render_cached
from kflowgen.targets.files import Files


def test_files_hold_the_units_read_last_and_read_a_unit_let_go_again(monkeypatch):
    monkeypatch.setattr(files_module, "HOLD", 8)  # bytes
    units = {0: {"a/1": b"xx", "a/2": b"yy"}, 1: {"b/1": b"zzzz"}, 2: {"c/1": b"wwww"}}
    loads: list[int] = []

    def load(n: int) -> dict[str, bytes]:
        loads.append(n)
        return dict(units[n])

    at = {"a/1": 0, "a/2": 0, "b/1": 1, "c/1": 2, "d/1": b"rendered here"}
    files = Files(at, load)
    assert files["a/1"] == b"xx" and files["a/2"] == b"yy" and loads == [0]  # one read for the unit's files
    assert files["b/1"] == b"zzzz" and loads == [0, 1]  # 4 + 4 bytes: both held
    assert files["a/1"] == b"xx" and loads == [0, 1]  # held, and now the unit read last
    assert files["c/1"] == b"wwww" and loads == [0, 1, 2]  # 12 bytes: the unit read longest ago (1) let go
    assert files["a/2"] == b"yy" and loads == [0, 1, 2]
    assert files["b/1"] == b"zzzz" and loads == [0, 1, 2, 1]  # read again; 2 let go
    assert files["c/1"] == b"wwww" and loads == [0, 1, 2, 1, 2]
    assert files["d/1"] == b"rendered here" and loads == [0, 1, 2, 1, 2]  # bytes given are never let go
    assert list(files) == list(at) and len(files) == 5 and "a/1" in files and "e/1" not in files


def test_a_unit_larger_than_the_hold_is_still_read_once_for_its_files(monkeypatch):
    monkeypatch.setattr(files_module, "HOLD", 1)
    loads: list[int] = []
    files = Files({"a/1": 0, "a/2": 0, "b/1": 1}, lambda n: loads.append(n) or {0: {"a/1": b"aa", "a/2": b"bb"},
                                                                                 1: {"b/1": b"cc"}}[n])
    assert [files[p] for p in ("a/1", "a/2", "a/1", "b/1", "a/2")] == [b"aa", b"bb", b"aa", b"cc", b"bb"]
    assert loads == [0, 1, 0]


def test_files_read_from_two_threads_read_a_unit_once_and_keep_count(monkeypatch):
    """The schema check's thread and the hub values' check read files at once: a unit both ask for is read once, and
    what is held adds up (a miscount would let every unit go at every read)."""
    monkeypatch.setattr(files_module, "HOLD", 100)
    loads: list[int] = []

    def load(n: int) -> dict[str, bytes]:
        loads.append(n)
        time.sleep(0.05)  # long enough for the other thread to ask meanwhile
        return {f"{n}/a": b"x" * 10, f"{n}/b": b"y" * 10}

    files = Files({f"{n}/{f}": n for n in range(3) for f in "ab"}, load)
    start = threading.Barrier(2)

    def read(name: str) -> bytes:
        start.wait()
        return files[name]

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(read, ["0/a", "0/b"])) == [b"x" * 10, b"y" * 10]
    assert loads == [0] and files._held == sum(size for _, size in files._recent.values()) == 20


def _held(rendered) -> dict[str, bytes]:
    """The rendered files whose bytes the render holds (white-box: Files keeps a cached unit's as its number)."""
    return {p: v for p, v in rendered.files._at.items() if isinstance(v, bytes)}


def test_a_render_of_many_units_leaves_their_bytes_in_the_cache(example_repo, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)  # the example's units count as many (and are rendered forked)
    model, _ = pipeline.load(Options(example_repo))
    without = render_cached(model, Options(Path("."), 2, cache.Cache(None)))
    assert len(_held(without)) == len(without.files)  # no cache to leave them in: held
    rendered = render_cached(model, Options(Path("."), 2, cache.Cache(tmp_path / "cache")))
    assert _held(rendered) == {}
    assert dict(rendered.files.items()) == dict(without.files.items())
    assert rendered.ids == without.ids and rendered.objects.keys() == without.objects.keys()
    assert all(unpacked(rendered.objects[p]) == unpacked(o) for p, o in without.objects.items())


def test_a_unit_whose_bytes_the_cache_did_not_take_is_held(example_repo, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    model, _ = pipeline.load(Options(example_repo))
    want = dict(render_cached(model, Options(Path("."), 2, cache.Cache(None))).files.items())
    real = cache.Cache.put

    def put(self, kind, k, body, digest=None):  # a full disk, for any entry that names one team
        return False if b"recsys" in body else real(self, kind, k, body, digest)

    monkeypatch.setattr(cache.Cache, "put", put)
    rendered = render_cached(model, Options(Path("."), 2, cache.Cache(tmp_path / "cache")))
    held = _held(rendered)
    assert {p for p in want if "/teams/recsys/" in p} <= set(held) and len(held) < len(want)
    assert dict(rendered.files.items()) == want


def test_the_checks_read_no_file_they_judge_by_the_renderers_objects(example_repo, tmp_path, monkeypatch):
    """A first run: every plain directory's file is known by its blob id and judged by the object the renderer gave
    (the schema prechecker passes them all), so neither check reads its bytes; a changed file is read by the one
    that must (kubeconform, when its object is not given)."""
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    result, diags = build(opts, rendered, overlays_of(rendered))
    assert not diags and result.parts
    plain = {u for u, o in result.units().items() if o in result.parts}
    assert plain and all(result.given(u) is not None for u in plain)
    read: list[str] = []
    real = build_stage.Parts.file
    monkeypatch.setattr(build_stage.Parts, "file", lambda self, rel: read.append(rel) or real(self, rel))
    ran: list[str] = []
    monkeypatch.setattr(kubeconform_adapter, "run", lambda tool, files, *a: ran.extend(files) or [])
    assert verify.manifests(example_repo, model, result, 2, cache.default_folder(), opts.store) == []
    assert policy.checked(model, None, result, opts.store) == []
    assert read == [] and not set(ran) & plain
    # a file whose object was not given: read once, by the one check that reads text (kubeconform)
    rel = sorted(plain)[0]
    result = dataclasses.replace(result, part_objects={k: v for k, v in result.part_objects.items() if k != rel},
                                 parsed=Packed())
    fresh = cache.Cache(tmp_path / "other")
    assert verify.manifests(example_repo, model, result, 2, cache.default_folder(), fresh) == []
    assert rel in ran and read.count(rel) == 1


def test_a_build_of_many_overlays_holds_no_text_it_can_read_again(example_repo, tmp_path, monkeypatch):
    """The texts of overlays built now are read again from the build cache (a plain directory's: joined again from
    the rendered files) when asked for, not held; the checks ask for none of them when the builder gave the objects
    (they know an overlay by the digest the build gave)."""
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)  # the example's overlays count as many
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    monkeypatch.setattr(cache, "_DIGESTS", {})  # (what text_digest remembers keeps the text too)
    result, diags = build(opts, rendered, overlays_of(rendered))
    assert not diags and result.overlays._texts == {}  # (white-box: Texts holds what was not read again)
    assert not any(o not in result.parts and result.digests[o] in cache._DIGESTS.values() for o in result.overlays)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 10**6)
    held, _ = build(Options(example_repo, 2, cache.Cache(None)), rendered, overlays_of(rendered))
    assert set(held.overlays._texts) >= {o for o in held.overlays if o not in held.parts}  # a few: held
    assert result.digests == held.digests and result.counts == held.counts
    loads: list[str] = []
    real = Texts.__getitem__
    monkeypatch.setattr(Texts, "__getitem__", lambda self, o: loads.append(o) or real(self, o))
    monkeypatch.setattr(kubeconform_adapter, "run", lambda tool, files, *a: [])
    assert verify.manifests(example_repo, model, result, 2, cache.default_folder(), opts.store) == []
    assert policy.checked(model, None, result, opts.store) == []
    if tools.find_batch():  # kflowgen-kbuild hands over every overlay's objects
        assert loads == []
    assert all(result.overlays[o] == held.overlays[o] for o in held.overlays)


def _built_now(monkeypatch) -> list:
    """What kustomize_batch and kustomize_build return to the build, each call's {overlay: what is kept}."""
    returned: list = []
    for name in ("kustomize_batch", "kustomize_build"):
        real = getattr(build_stage, name)

        def kept(*args, real=real, **kwargs):
            out = real(*args, **kwargs)
            returned.append(out[0] if isinstance(out, tuple) else out)
            return out
        monkeypatch.setattr(build_stage, name, kept)
    return returned


@pytest.mark.parametrize("batch", [True, False], ids=["kflowgen-kbuild", "a kustomize process each"])
def test_a_build_of_many_overlays_keeps_each_text_in_the_cache_as_it_arrives(example_repo, tmp_path, monkeypatch,
                                                                             batch):
    """Each overlay's text goes to the build cache as kustomize gives it; what a build of many keeps of it is its
    digest and object count, so that every overlay's text is never held at once; the same digests and counts, and
    the same texts read back, as a build that holds them."""
    if batch and not tools.find_batch():
        pytest.skip("kflowgen-kbuild is not installed (kflowgen tools install)")
    if not batch:
        monkeypatch.setattr(tools, "find_batch", lambda: None)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    returned = _built_now(monkeypatch)
    result, diags = build(opts, rendered, overlays_of(rendered))
    kept = [value for out in returned for value in out.values()]
    assert not diags and kept and all(isinstance(value, build_stage.Made) for value in kept)
    assert result.overlays._texts == {}
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 10**6)
    returned.clear()
    held, _ = build(Options(example_repo, 2, cache.Cache(tmp_path / "other")), rendered, overlays_of(rendered))
    assert [value for out in returned for value in out.values()] and all(
        isinstance(value, str) for out in returned for value in out.values())
    assert result.digests == held.digests and result.counts == held.counts
    assert all(result.overlays[o] == held.overlays[o] for o in held.overlays)


def test_a_built_text_the_cache_did_not_take_is_held(example_repo, tmp_path, monkeypatch):
    """In a build of many, an overlay whose text the cache did not take (a full or read-only disk) keeps it: there
    is nowhere to read it again from."""
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    real = cache.Cache.put
    monkeypatch.setattr(cache.Cache, "put", lambda self, kind, k, body: kind != "build" and real(self, kind, k, body))
    result, diags = build(opts, rendered, overlays_of(rendered))
    built = {o for o in result.overlays if o not in result.parts}
    assert not diags and built and set(result.overlays._texts) >= built
    assert all(cache.text_digest(result.overlays._texts[o]) == result.digests[o] for o in built)


def test_a_spill_gives_back_what_was_set_aside_and_leaves_no_file(tmp_path, monkeypatch):
    """Bytes set aside in a Spill come back as they were, from threads at once too; a file that holds no object
    stays None; the temporary file has no name in the folder it was made in, so nothing is left behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spill = Spill()
    datas = [pack({"kind": "Job", "n": n, "pad": "x" * (n * 37 % 5000)}) for n in range(400)]
    with ThreadPoolExecutor(4) as pool:
        places = list(pool.map(spill.put, datas))
    assert spill.put(None) is None and list(tmp_path.iterdir()) == []
    assert [p.size for p in places] == list(map(len, datas))
    spans = sorted((p.start, p.start + p.size) for p in places)  # one after another, none over another
    assert spans[0][0] == 0 and all(end == start for (_, end), (start, _) in zip(spans, spans[1:]))
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(loads, places)) == [loads(d) for d in datas]
    assert unpacked_all([places[3], None, datas[5]]) == [loads(datas[3]), loads(datas[5])]


def test_bytes_set_aside_as_a_span_read_back_as_their_slices():
    """A Span reads back any slice of the bytes set aside (as a spec's values are read from its group's entry), and
    is the bytes themselves when the spill cannot take them."""
    spill = Spill()
    spill.put(b"before")
    data = bytes(range(256)) * 7
    span = spill.span(data)
    spill.put(b"after")
    assert isinstance(span, Span) and len(span) == len(data)
    for a, b in [(0, len(data)), (5, 300), (1000, 1792), (1792, 1800), (17, 17), (300, 5), (None, 9), (-9, None)]:
        assert span[a:b] == data[a:b]
    with pytest.raises(ValueError):
        span[::2]
    broken = Spill()
    broken._file = None
    assert broken.span(data) is data


def test_a_run_of_many_units_sets_aside_the_objects_it_hands_to_the_checks(example_repo, tmp_path, monkeypatch):
    """A render and a build of many (the first run) set aside in a Spill the objects of the plain folders' files and
    those kflowgen-kbuild handed over, as they arrive, instead of holding them: the checks get the same objects as
    from a run that holds them."""
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    result, diags = build(opts, rendered, overlays_of(rendered))
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 10**6)
    few = Options(example_repo, 2, cache.Cache(None))
    held_rendered = render_cached(model, few)
    held, _ = build(few, held_rendered, overlays_of(held_rendered))
    assert not diags and rendered.objects.keys() == held_rendered.objects.keys()
    assert {type(v) for v in rendered.objects.values()} - {type(None)} == {At}
    assert {type(v) for v in held_rendered.objects.values()} - {type(None)} == {bytes}
    assert all(unpacked(rendered.objects[p]) == unpacked(held_rendered.objects[p]) for p in rendered.objects)
    given = [o for o in result.parsed if o not in result.parts]  # kflowgen-kbuild's
    if tools.find_batch():
        assert given and all(isinstance(result.parsed._items[o].args[0], At) for o in given)
    assert result.parsed.keys() == held.parsed.keys()
    assert all(result.parsed[o] == held.parsed[o] for o in held.parsed)
    assert all(result.given(u) == held.given(u) for u in held.units())


def test_the_side_a_validate_keeps_for_later_diffs_holds_no_text_it_reads(example_repo, tmp_path, monkeypatch):
    """The side a validate keeps for the diffs that take it as their base reads the texts that no build or render
    entry holds (a folder several units write, such as the Argo CD folder: 34 MB an environment at 10,000 teams)
    once, to keep them in the cache, as the bytes of its files (never decoded into a text, which was two copies more
    at that stage's peak), and does not hold them after; what it kept is the build's text."""
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    opts = Options(example_repo, 2, cache.Cache(tmp_path / "cache"))
    done = pipeline.checked(opts)
    assert done.built is not None and done.built.overlays._texts == {}
    with monkeypatch.context() as m:
        m.setattr(Texts, "__getitem__", lambda *a, **k: pytest.fail("a text decoded to be kept"))
        pipeline.head_side(opts, done)
    assert done.built.overlays._texts == {}
    read = [o for o in done.built.overlays if o not in done.built.keys and o not in done.rendered.units]
    assert read and any(o.endswith("/argocd") for o in read)
    for overlay in read:
        found = opts.store.read("text", done.built.digest(overlay))
        assert found is not None and found[0].decode("utf-8") == done.built.overlays[overlay]


def test_a_spill_that_cannot_write_holds_the_bytes(tmp_path, monkeypatch):
    """A full disk, or no temporary folder at all: what cannot be set aside is held, as before, and read the same."""
    data = pack({"kind": "Job", "metadata": {"name": "a"}})
    spill = Spill()
    assert isinstance(spill.put(data), At)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    held = spill.put(data)
    assert held is data and unpacked(held) == unpacked(data)
    monkeypatch.undo()
    assert loads(spill.put(data)) == loads(data)  # (and what was set aside before and after is intact)
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    assert Spill().put(data) is data
