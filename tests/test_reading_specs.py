"""Table tests for strict spec loading: values, positions, and refusals (each refusal is one line)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PROJECT
from kflowgen.specs.loader import MAX_DEPTH, load_text


def data(text):
    spec, diags = load_text(text, "f.yaml")
    assert diags == [], diags
    return spec.data


def problem(text):
    spec, diags = load_text(text, "f.yaml")
    assert spec is None and len(diags) == 1, diags
    d = diags[0]
    return d.code, (d.line, d.col)


@pytest.mark.parametrize("text, value", [
    ("a: 1", 1), ("a: -3", -3), ("a: 0.5", 0.5), ("a: 1e-3", 0.001), ("a: 1.0e+10", 1e10),
    ("a: true", True), ("a: False", False), ("a: null", None), ("a: ~", None), ("a:", None),
    ("a: 'no'", "no"), ('a: "on"', "on"), ("a: '0777'", "0777"), ("a: '2024-01-01'", "2024-01-01"),
    ("a: 0o17", 15), ("a: 0x1f", 31), ("a: 0", 0), ("a: 10", 10), ("a: true", True),
    ("a: '1'", "1"), ('a: "true"', "true"), ("a: !!str 10", "10"), ("a: !!int '7'", 7),
    ("a: 16Gi", "16Gi"), ("a: [1, x]", [1, "x"]), ("a: {b: c}", {"b": "c"}),
])
def test_values_follow_yaml_1_2_core(text, value):
    assert data(text + "\n")["a"] == value


def test_infinity_nan_and_overflow_stay_text():
    # no spec field wants them, and as text they fail the schema's patterns with a location
    assert data("a: .inf\nb: -.Inf\nc: .nan\nd: 1e400\n") == {"a": ".inf", "b": "-.Inf", "c": ".nan", "d": "1e400"}


def test_positions_of_keys_and_values():
    spec, _ = load_text("a:\n  b: [x, {c: 1}]\n", "f.yaml")
    assert spec.values["/a/b/1/c"] == (2, 14)
    assert spec.keys["/a/b"] == (2, 3)
    assert spec.at("/a/b/9") == (2, 6)  # a missing pointer falls back to its parent


def test_plain_scalars_keep_their_spelling():
    spec, _ = load_text("h: {lr: 1e-3, d: 0.50, n: 10, q: '1e-3'}\n", "f.yaml")
    assert spec.raw == {"/h/lr": "1e-3", "/h/d": "0.50", "/h/n": "10"}


@pytest.mark.parametrize("text, code, pos", [
    ("a: 1\na: 2\n", "KF102", (2, 1)),
    ("a:\n  b: 1\n  c: 2\n  b: 3\n", "KF102", (4, 3)),
    ("a: &x 1\n", "KF103", (1, 4)),
    ("a: &x [1]\nb: *x\n", "KF103", (1, 4)),
    ("a: !!python/object/apply:os.system [ls]\n", "KF103", (1, 4)),
    ("a: !custom x\n", "KF103", (1, 4)),
    ("", "KF104", (1, 1)),
    ("# only a comment\n", "KF104", (1, 1)),
    ("- a\n", "KF104", (1, 1)),
    ("just text\n", "KF104", (1, 1)),
    ("a: 1\n---\nb: 2\n", "KF104", (2, 1)),
    ("1: a\n", "KF106", (1, 1)),
    ("true: a\n", "KF106", (1, 1)),
    ("? [a]\n: b\n", "KF106", (1, 3)),
    ("a:\n\tb: 1\n", "KF101", (2, 1)),
    ("a: no\n", "KF107", (1, 4)), ("a: [On]\n", "KF107", (1, 5)), ("a: y\n", "KF107", (1, 4)),
    ("a: 0777\n", "KF108", (1, 4)), ("a: 1:30\n", "KF108", (1, 4)), ("a: 2024-01-01\n", "KF109", (1, 4)),
    ("a: [1\n", "KF101", (2, 1)),
    ("a: 'x\n", "KF101", (2, 1)),
])
def test_refusals(text, code, pos):
    assert problem(text) == (code, pos)


@pytest.mark.parametrize("text, pos, fix", [
    ("a: 1\n  b: 2\n", (2, 3), "'b' is indented under 'a' (line 1), which already has a value: start 'b' in column 1"),
    ("a:\n  b: 1\n   c: 2\n", (3, 4), "'c' is indented under 'b' (line 2), which already has a value: start 'c' in "
     "column 3"),
    ("a:\n    b: 1\n   c: 2\n", (3, 4), "'c' starts in column 4; start it in column 5, like 'b' on line 2"),
    ("a:\n  b:\n    c: 1\n d: 2\n", (4, 2), "'d' starts in column 2; start it in column 3, like 'b' on line 2"),
    ("a:\n  - x\n - y\n", (3, 2), "'- y' starts in column 2; start it in column 3, like '- x' on line 2"),
    ("a:\nb: 1\n  c: 2\n", (2, 1), "'b' is not indented under 'a' (line 1), which has no value: start 'b' in column 3"),
    ("a: b: c\n", (1, 5), "quote a value that contains ': '"),  # not indentation: a colon in the value
    ("a:b\nc: 1\n", (2, 2), "put a space after the ':' on line 1"),
])
def test_an_indentation_mistake_gets_a_fix_about_indentation(text, pos, fix):
    _, (d,) = load_text(text, "f.yaml")
    assert ((d.code, d.line, d.col), d.hint[:len(fix)]) == (("KF101",) + pos, fix)


def test_duplicate_key_names_both_lines():
    _, diags = load_text("team: a\nname: x\nteam: b\n", "f.yaml")
    assert "first at line 1" in diags[0].message and diags[0].line == 3


def test_depth_limit_before_building():
    text = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    assert problem(text)[0] == "KF105"


def test_size_limit():
    assert problem("a: '" + "x" * (1 << 20) + "'\n")[0] == "KF105"


def test_billion_laughs_is_refused_at_the_first_anchor():
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
    assert problem(bomb) == ("KF103", (1, 4))


def test_inlined_schema_references_give_the_same_errors_as_the_schemas():
    """specschema validates with $refs inlined; on every spec file in the examples the errors are the ones the
    schema as written gives: same message, instance path and schema keyword."""
    import json

    from kflowgen.specs import schema as specschema
    from kflowgen.specs.loader import load_file

    root = Path(__file__).parent / "examples"
    kinds = {"teams": "team", "experiments": "experiment", "models": "model"}
    checked = 0
    for path in sorted(root.rglob("specs/**/*.yaml")):
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/specs/", 1)[1].split("/")
        kind = "platform" if parts == ["platform.yaml"] else kinds.get(parts[0])
        spec, _ = load_file(root, rel)
        if kind is None or spec is None:
            continue
        schema = json.loads(specschema.schema_text(kind))
        inlined = specschema.inline_refs(schema)
        assert "$ref" not in json.dumps({k: v for k, v in inlined.items() if k != "$defs"})

        def errors(s):
            v = specschema.validator_class()(s)
            return sorted((e.message, list(e.absolute_path), e.validator) for e in v.iter_errors(spec.data))
        assert errors(inlined) == errors(schema), rel
        checked += 1
    assert checked > 100


def test_jsonschema_rs_vouches_only_for_specs_python_jsonschema_passes():
    """specschema lets jsonschema-rs pass a spec without Python's jsonschema only when Python's would pass it too:
    on every spec file of the examples and of the project, and every single-point mutation of each."""
    from conftest import mutations
    from kflowgen.specs import schema as specschema
    from kflowgen.specs.loader import load_file

    kinds = {"teams": "team", "experiments": "experiment", "models": "model"}
    docs = []
    for root in (Path(__file__).parent / "examples", Path(__file__).parents[1]):
        for path in sorted(root.rglob("specs/**/*.yaml")):
            rel = path.relative_to(root).as_posix()
            parts = rel.split("specs/", 1)[1].split("/")
            kind = "platform" if parts == ["platform.yaml"] else kinds.get(parts[0])
            spec, _ = load_file(root, rel)
            if kind is not None and spec is not None:
                docs += [(kind, spec.data)] + [(kind, m) for m in mutations(spec.data)]
    docs += [("team", {"name": "a\x85b"}), ("platform", {"name": 6.0})]
    assert any(e.validator == "pattern" for e in specschema._validator("team").iter_errors({"name": "team-a\n"}))
    vouched = passed = 0
    for kind, data in docs:
        python = not any(specschema._validator(kind).iter_errors(data))
        fast = specschema._vouched(kind, data)
        assert python or not fast, (kind, data)
        vouched += fast
        passed += python and specschema._plain(data)
    assert vouched == passed > 1000, (vouched, passed, len(docs))  # and it is not merely cautious


@pytest.mark.parametrize("cached", [False, True])
def test_a_validate_that_finds_nothing_in_a_spec_never_decodes_its_positions(example_repo, tmp_path, cached):
    """Where each value of a spec sits is looked up only for a finding: a clean experiment or model keeps its
    positions packed through the whole validate (at 1,000 teams, 25 MiB of positions decoded for nothing before),
    whether the rules ran or their findings came from the cache."""
    from kflowgen import cache
    from kflowgen.flow import pipeline
    from kflowgen.options import Options

    store = cache.Cache(tmp_path / "cache" if cached else None)
    if cached:  # the second run reads the specs from the cache
        pipeline.checked(Options(example_repo, 2, store))
    done = pipeline.checked(Options(example_repo, 2, store))
    named = {d.path for d in done.report.diagnostics}
    specs = [s.source for s in [*done.model.experiments, *done.model.served] if s.source.path not in named]
    assert len(specs) > 5 and all(spec.packed is not None for spec in specs), [s.path for s in specs if not s.packed]


def test_a_spec_from_the_cache_tells_the_same_positions():
    from kflowgen.specs.entry import from_json, to_json
    from kflowgen.specs.loader import load_bytes

    raw = b"name: vision\nquota:\n  dev: {cpu: 4, memory: 8Gi}\nowners:\n  - ana\n"
    spec, found = load_bytes(raw, "specs/teams/vision.yaml")
    again, found_again = from_json(to_json(spec, found))
    assert again.packed is not None  # positions are decoded only when first asked
    for pointer in ("/quota/dev/memory", "/owners/0", "/quota/prod/cpu", ""):
        assert again.at(pointer) == spec.at(pointer) and again.at(pointer, key=True) == spec.at(pointer, key=True)
    assert again.has("/owners/0") and not again.has("/owners/1")
    assert again == spec and (found_again, again.digest) == (found, spec.digest)


def test_a_key_spelt_like_no_other_keeps_its_position_and_text():
    """Keys are not recorded under a placeholder pointer: a key such as "\\0key" (which once collided with the
    placeholder) keeps its position, its raw text and the YAML 1.1 check of its value."""
    spec, diags = load_text('name: x\n"\\0key": 12\nother: 1\n', "specs/teams/x.yaml")
    assert not diags and spec.at("/\x00key", key=True) == (2, 1) and spec.at("/\x00key") == (2, 10)
    assert spec.raw["/\x00key"] == "12"
    assert [d.code for d in load_text('name: x\n"\\0key": y\n', "specs/teams/x.yaml")[1]] == ["KF107"]


def test_spec_schemas_use_no_pattern_properties():
    """specschema reads a `pattern`'s `$` as the end of the text (JSON Schema's meaning, not Python's), but only for
    the `pattern` keyword: a patternProperties would need the same care before a schema uses one."""
    from importlib import resources

    schemas = resources.files("kflowgen").joinpath("schemas")
    texts = {p.name: p.read_text("utf-8") for p in schemas.iterdir() if p.name.endswith(".json")}
    assert len(texts) >= 4 and not [name for name, text in texts.items() if '"patternProperties"' in text]


def test_has_says_of_the_data_what_the_positions_say():
    """has() on a spec whose positions are still packed looks into its data: for every pointer of every example spec
    (and pointers next to them that are not there) it answers as the positions table does."""
    from kflowgen.specs.entry import from_json, to_json
    from kflowgen.specs.loader import load_bytes

    files = sorted(p for p in (PROJECT / "specs").rglob("*.yaml"))
    raw = b'name: x\n"a/b": {"~c": [1, {d: null}]}\n"": 2\nlist: []\n'
    checked = 0
    for path, data in [(str(p.relative_to(PROJECT)), p.read_bytes()) for p in files] + [("specs/teams/x.yaml", raw)]:
        spec, found = load_bytes(data, path)
        assert spec is not None, found
        pointers = set(spec.values) | set(spec.keys)
        near = {q for p in pointers for q in (p + "/0", p + "/x", p + "/00", p + "/-1", p + "/1", p + "/01")}
        for pointer in sorted(pointers | near | {"/nothing", "/~1", "/a~1b/~0c/1/d", "/a~1b/~0c/2", ""}):
            packed, _ = from_json(to_json(spec, found))
            assert packed.has(pointer) == spec.has(pointer) == (pointer in spec.values), (path, pointer)
            checked += 1
    assert checked > 1000


def test_a_spec_from_a_group_entry_is_the_spec_read():
    """A group's cache entry (entry.pack_results) gives back each spec as read: its data, raw texts, digest and
    every value's and key's position, odd keys (an empty one, '~' and '/' in names, list items) included, and its
    team, name, environments and sweep before the rest is decoded; a file without a spec, its findings."""
    from kflowgen.specs import entry
    from kflowgen.specs.loader import TOP, load_bytes

    texts = [b'team: a\nname: "x"\nenvironments: [dev]\nsweep: {grid: {lr: [1e-3, 2]}}\n"": 1\n"a/b": {"~c": [1, '
             b'{d: null}]}\nq: 0.5\n', b"name: vision\nquota:\n  dev: {cpu: 4, memory: 8Gi}\nowners:\n  - ana\n",
             b"name: [unclosed\n"]
    paths = ["specs/experiments/a/x.yaml", "specs/teams/vision.yaml", "specs/teams/broken.yaml"]
    read = [load_bytes(raw, path) for raw, path in zip(texts, paths)]
    assert read[2][0] is None and read[2][1]
    body = entry.pack_results([entry.to_json(spec, found) for spec, found in read])
    again = entry.unpack_results(body, paths)
    assert again is not None and entry.unpack_results(body, paths[:2]) is None
    for (spec, found), (cached, cached_found) in zip(read, again):
        assert cached_found == found
        if spec is None:
            assert cached is None
            continue
        assert "data" not in cached.__dict__ and cached.packed is not None
        assert [cached.top(k, None) for k in TOP] == [spec.data.get(k) for k in TOP]
        for pointer in [*spec.values, *spec.keys, "/nothing"]:
            assert cached.at(pointer) == spec.at(pointer) and cached.at(pointer, key=True) == spec.at(pointer, key=True)
        assert cached == spec and cached.raw == spec.raw and cached.digest == spec.digest


@pytest.mark.parametrize("forked", [False, True], ids=["read here", "read on forked processes"])
@pytest.mark.parametrize("cached", [False, True], ids=["--no-cache", "an empty cache"])
def test_specs_read_now_keep_their_values_as_the_group_entry_bytes(example_repo, tmp_path, monkeypatch, forked,
                                                                    cached):
    """Specs read now (a first run, --no-cache, a changed file) come back as a recalled group's do: each spec's
    values stay the group entry's bytes until asked for (a first run's model at 1,000 teams took 41 MiB instead of
    65, and a reader process sends that back, not the decoded values), and are those of the file as parsed."""
    from kflowgen import cache, packed, parallel
    from kflowgen.options import Options
    from kflowgen.specs import read
    from kflowgen.specs.loader import load_bytes

    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1 if forked else 10**6)
    store = cache.Cache(tmp_path / "cache" if cached else None)
    specs = read.read(Options(example_repo, 2, store))
    assert specs.model is not None and not specs.diagnostics and store.hits == 0
    deferred = [s for s in specs.sources if s.path.startswith(("specs/experiments/", "specs/models/"))]
    assert len(deferred) > 5 and all("data" not in s.__dict__ and s.packed is not None for s in deferred)
    assert len(specs.model.experiments) + len(specs.model.served) == len(deferred)  # (made from them when asked)
    # read now in a run of many: the entries' bytes set aside (one place for each group's entry), else held
    entries = [s.packed[0] for s in specs.sources]
    assert {type(e) for e in entries} == ({packed.Span} if forked else {bytes})
    assert all(s.__dict__["_data"][0] is s.__dict__["_raw"][0] is s.packed[0] for s in deferred)
    assert len({id(e) for e in entries}) < len(entries)  # a group's specs share its entry, set aside once
    if forked:
        assert len({id(e) for e in entries}) == len({e.at.start for e in entries})
    for spec in specs.sources:
        parsed, found = load_bytes((example_repo / spec.path).read_bytes(), spec.path)
        assert not found and spec == parsed and spec.raw == parsed.raw and spec.digest == parsed.digest
        assert all(spec.at(p) == parsed.at(p) and spec.at(p, key=True) == parsed.at(p, key=True)
                   for p in [*parsed.values, *parsed.keys])
