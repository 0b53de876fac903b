"""How the generated JupyterHub values are read and merged over the chart's defaults before the chart's schema
checks them: read from the YAML parser's events (kflowgen.checks.lean_yaml), exactly the objects yaml.load gives, for
every document kflowgen writes and for those it does not (these read by yaml.load itself); merged as helm merges,
changing neither side."""
from __future__ import annotations

import copy
import datetime

import pytest
import yaml

from kflowgen import upstream
from kflowgen.checks import lean_yaml, verify

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# read from events: what kflowgen's renderer writes, and the scalars YAML's core schema resolves
PLAIN = [
    "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 1_000]\nc: {d: e, f: null, g: ~, h: ''}\n",
    "t: true\nf: False\nn: .inf\nm: -.Inf\nnan: .nan\nq: '1'\nqq: \"true\"\ndate: 2026-12-06\n"
    "stamp: 2026-12-06T01:02:03Z\nbin: !!binary aGVsbG8=\nstr: !!str 12\nint: !!int '7'\n",
    "- 1\n- - 2\n  - {x: [y, {z: w}]}\n- []\n- {}\n",
    "key with spaces: |\n  literal\n  text\nfolded: >\n  folded\n  text\n1: one\n2.5: float key\nnull: null key\n",
    "dup: 1\ndup: 2\n",  # the later wins, as in yaml.load
    "just a scalar\n",
    "",  # an empty document: None
    "--- !!map\na: !!seq [1]\n...\n",
    "\ufeffa: 1\n",
]
# read by yaml.load: anchors and aliases, merge keys, other tags, keys that are collections
OTHER = [
    "base: &b {x: 1}\nuse: *b\n",
    "base: &b {x: 1}\nuse: {<<: *b, y: 2}\n",
    "s: !!set {a, b}\n",
    "o: !!omap [{a: 1}, {b: 2}]\n",
    "? [a, b]\n: complex key\n",
    "a: !custom 1\n",
    "a: !!python/name:os.system\n",
    "= : value key\n",
    "a: !!map x\n",  # a collection's tag on a scalar: yaml.load refuses it
    "a: !!seq x\n",
    "a: !!omap x\n",
    "a: !!set x\n",
]


def test_the_renderers_hub_values_read_the_same_from_events(example_repo):
    data = (example_repo / "overlays/dev/jupyterhub/values.yaml").read_bytes()
    assert lean_yaml._from_events(data) == yaml.load(data, Loader=LOADER) and lean_yaml.load(data)["singleuser"]


@pytest.mark.parametrize("text", PLAIN)
def test_a_document_of_the_core_schema_reads_as_yaml_load_reads_it_without_it(text, monkeypatch):
    want = yaml.load(text, Loader=LOADER)
    monkeypatch.setattr(yaml, "load", lambda *a, **k: pytest.fail("read by yaml.load"))
    got = lean_yaml.load(text.encode())
    assert _nan_equal(got, want)
    assert type(got) is type(want)


@pytest.mark.parametrize("text", OTHER)
def test_anything_else_is_read_by_yaml_load(text):
    try:
        want = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as e:
        with pytest.raises(type(e)):
            lean_yaml.load(text)
        return
    with pytest.raises(lean_yaml._Other):
        lean_yaml._from_events(text)
    assert lean_yaml.load(text) == want


@pytest.mark.parametrize("text", ["a: [1\n", "a: 1\n---\nb: 2\n", "a: b: c\n"])
def test_a_broken_stream_or_more_than_one_document_fails_as_in_yaml_load(text):
    with pytest.raises(yaml.YAMLError) as want:
        yaml.load(text, Loader=LOADER)
    with pytest.raises(yaml.YAMLError) as got:
        lean_yaml.load(text)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def _nan_equal(a, b) -> bool:
    """Equal, where a float NaN equals a float NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_nan_equal, a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def test_timestamps_and_dates_are_what_yaml_load_makes():
    got = lean_yaml.load("d: 2026-12-06\nt: 2026-12-06 01:02:03\n")
    assert got == {"d": datetime.date(2026, 12, 6), "t": datetime.datetime(2026, 12, 6, 1, 2, 3)}


def test_merging_over_the_chart_defaults_changes_neither_side(example_repo):
    defaults = upstream.chart("4.4.0").values
    values = lean_yaml.load((example_repo / "overlays/dev/jupyterhub/values.yaml").read_bytes())
    values["hub"]["image"] = {"tag": "mine"}  # merged into the chart's hub.image mapping
    values["cull"] = None  # null deletes the chart's key
    before, theirs = copy.deepcopy(values), copy.deepcopy(defaults)
    merged = verify.merge_values(defaults, values)
    assert values == before and defaults == theirs
    assert merged["hub"]["image"] == {**theirs["hub"]["image"], "tag": "mine"} and "cull" not in merged
    assert merged["singleuser"]["profileList"] == values["singleuser"]["profileList"]
    assert verify.merge_values(defaults, values) == merged  # the same again: nothing was changed by the first
    assert {k: merged[k] for k in theirs if k not in values} == {k: theirs[k] for k in theirs if k not in values}
