"""kflowgen-kbuild (tools/kbuild): many `kustomize build`s in one process, byte-identical to the pinned kustomize.

Each test compares the batch stream with `kustomize build DIR` run once per overlay, on the example repository, a
generated 20-team repository, a failing overlay, and a few kustomize features kflowgen does not use today
(custom OpenAPI schema, strategic-merge and JSON 6902 patches, generators, build flags).
Build the binary with: kflowgen tools install (it builds in a digest of tools/kbuild, which kflowgen checks).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kflowgen.flow import pipeline
from kflowgen import tools
from kflowgen.targets import render
from kflowgen.build import overlays_of
from kflowgen.options import Options
from kflowgen.specs import layout

PROJECT = Path(__file__).resolve().parents[1]
KBUILD = tools.tools_dir() / "kflowgen-kbuild"
KUSTOMIZE = tools.tools_dir() / "kustomize"
HEADER = re.compile(rb"==> (\d+) (ok|error|json) ([^\n]*)\n")

pytestmark = [
    pytest.mark.skipif(not KBUILD.is_file(), reason=f"{KBUILD} is not built: "
                       "kflowgen tools install"),
    pytest.mark.skipif(not KUSTOMIZE.is_file(), reason=f"the pinned kustomize is not in {KUSTOMIZE.parent}: "
                       "kflowgen tools install"),
]


# --- helpers ------------------------------------------------------------------------------------------------------

def parse_stream(data: bytes) -> list[tuple[str, str, bytes]]:
    """(dir, status, payload) per overlay; fails on anything that is not exactly header + payload, repeated."""
    out, pos = [], 0
    while pos < len(data):
        m = HEADER.match(data, pos)
        assert m, f"no header at byte {pos}: {data[pos:pos + 80]!r}"
        size = int(m.group(1))
        start = m.end()
        assert start + size <= len(data), f"payload of {m.group(3)!r} is cut short"
        out.append((m.group(3).decode(), m.group(2).decode(), data[start:start + size]))
        pos = start + size
    return out


def kbuild(dirs: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KBUILD), *args], input="".join(d + "\n" for d in dirs).encode(),
                          capture_output=True, timeout=600)


def batch(dirs: list[str], *args: str) -> dict[str, tuple[str, bytes]]:
    run = kbuild(dirs, *args)
    assert run.returncode in (0, 1), run.stderr.decode()
    results = parse_stream(run.stdout)
    assert [d for d, _, _ in results] == dirs, "results are not in input order"
    assert run.returncode == (1 if any(s == "error" for _, s, _ in results) else 0)
    return {d: (s, p) for d, s, p in results}


def kustomize(d: str, *flags: str) -> tuple[str, bytes]:
    """What the stream should hold for d: ('ok', stdout) or ('error', stderr) of the pinned kustomize binary."""
    run = subprocess.run([str(KUSTOMIZE), "build", *flags, d], capture_output=True, timeout=300)
    return ("ok", run.stdout) if run.returncode == 0 else ("error", run.stderr)


def kustomize_all(dirs: list[str], *flags: str) -> dict[str, tuple[str, bytes]]:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(dirs, pool.map(lambda d: kustomize(d, *flags), dirs)))


def assert_identical(got: dict[str, tuple[str, bytes]], want: dict[str, tuple[str, bytes]]) -> None:
    assert list(got) == list(want)
    differ = [d for d in want if got[d] != want[d]]
    assert not differ, f"{len(differ)} of {len(want)} overlays differ from kustomize build, first: {differ[0]}\n" \
                       f"kbuild:    {got[differ[0]][0]} {got[differ[0]][1][:300]!r}\n" \
                       f"kustomize: {want[differ[0]][0]} {want[differ[0]][1][:300]!r}"


def render_into(repo: Path, dest: Path) -> list[str]:
    """Render repo's specs into dest with a copy of its bases/, as pipeline.build does; the overlay folders."""
    model, diags = pipeline.load(Options(repo))
    assert model is not None, [str(d) for d in diags if d.severity == "error"]
    files = render(model)
    if (repo / "bases").is_dir():
        shutil.copytree(repo / "bases", dest / "bases", symlinks=False)
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return [str(dest / o) for o in overlays_of(files) if not layout.is_directory_source(o)]


# --- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example(tmp_path_factory) -> list[str]:
    return render_into(PROJECT, tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def example_built(example) -> dict[str, tuple[str, bytes]]:
    return kustomize_all(example)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[str]:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        from generate import generate
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    repo = generate(tmp_path_factory.mktemp("gen") / "repo", 20)
    return render_into(repo, tmp_path_factory.mktemp("gen-rendered"))


# --- byte-identical output ----------------------------------------------------------------------------------------

# Scalars of every kind and style kustomize may meet, and constructs kflowgen-kbuild's short cut for printing leaves to
# kustomize's own code: each overlay below must print exactly as `kustomize build` prints it. Keys holding digits
# are left out of the keyed mapping: yaml.v2 orders such keys ("0o17", "1.0", "1_000") by a comparison that is not a
# consistent order, so kustomize itself prints them in a different order from run to run (and yaml.v2 refuses NEL
# in a key).
TRICKY_STRINGS = ["yes", "No", "on", "OFF", "y", "~", "null", "Null", "true", "False", "1e3", "0x1F", "0o17", "017",
                  "1_000", "+1", "-0", ".5", ".inf", "-.Inf", ".NaN", "1:20", "190:20:30", "2001-12-14",
                  "2001-12-14t21:59:43.10-05:00", "", " ", " lead", "trail ", "a: b", "a #b", "#c", "- x", "[x]",
                  "{y}", "*ref", "&anc", "!tag", "%dir", "@at", "`tick", "'single'", '"double"', "back\\slash",
                  "tab\there", "line\nbreak", "ends\n", "\n\nleading", "crlf\r\nx", "é漢字", "emoji \U0001F600",
                  "nbsp\u00a0x", "bell\u0007", "nel\u0085x", "ls\u2028x", "bom\ufeffx", "x" * 200,
                  "=", "<<", "?", "|", ">", "-", "---", "...", "1.0", "1e+21", "12345678901234567890"]


def quoted(text: str) -> str:
    """A YAML double-quoted scalar: JSON's, with the characters YAML refuses raw written as escapes."""
    return "".join(f"\\u{ord(c):04x}" if c in "\x7f\x85\u2028\u2029\ufeff" else c
                   for c in json.dumps(text, ensure_ascii=False))


TRICKY_DOCS = {
    "plain": "\n".join(["apiVersion: example.com/v1", "kind: Widget", "metadata:", "  name: plain", "spec:",
                        "  ints: [0, 7, -3, 0x1F, 0o17, 1_000, 12345678901234567890, 9223372036854775807]",
                        "  floats: [1.0, 0.1, 1e21, 1.5e-7, -0.0, .5, 6.02e+23, 3.141592653589793]",
                        "  bools: [true, false, True, FALSE]", "  nulls: [null, ~, Null, ]", "  empty: {}",
                        "  emptyList: []", "  nested: [[1, [2]], {a: {b: [c]}}]",
                        "  keys: {b: 1, a: 2, a10: 3, a9: 4, A: 5, _: 6, '1': 7, '': 8, ' ': 9}", ""]),
    "strings": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: strings\nspec:\n  values:\n" +
               "".join(f"  - {quoted(v)}\n" for v in TRICKY_STRINGS) +
               "  keyed:\n" + "".join(f"    {quoted(v)}: {i}\n" for i, v in enumerate(TRICKY_STRINGS)
                                     if "\x85" not in v and not any(c.isdigit() for c in v)),
    "blocks": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: blocks\nspec:\n"
              "  literal: |\n    line one\n      indented\n    line three\n"
              "  folded: >\n    folded\n    text\n\n    para\n  keep: |+\n    kept\n\n  strip: |-\n    stripped\n",
    "tags": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: tags\nspec:\n"
            "  when: 2001-12-14\n  stamp: 2001-12-14t21:59:43.10-05:00\n  str: !!str 12\n  int: !!int '12'\n"
            "  float: !!float '1'\n  bin: !!binary aGVsbG8=\n",
    "control": 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: control\nspec: {v: "del\\x7f"}\n',
    "intKeys": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: int-keys\nspec: {1: a, 2: b}\n",
    "aliases": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: aliases\nspec:\n"
               "  base: &b {x: 1, y: [2]}\n  copy: *b\n  merged: {<<: *b, z: 3}\n",
    # empty values in flow collections print as '' (text), not null
    "flowNulls": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {note: }\nspec:\n  containers:\n"
                 "  - {name: c, image: nginx, imagePullPolicy: , env: [{name: X, value: }], ports: [{hostPort: }]}\n",
    # the replicas transformer sets an int tag on a value quoted in the file: kustomize prints it quoted (text)
    "quotedCount": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: \"3\"\n"
                   "  template:\n    spec:\n      containers: [{name: c, image: nginx}]\n",
}
EXTRA_KUSTOMIZATION = {"quotedCount": "replicas:\n- name: web\n  count: 5\n"}


def test_scalars_of_every_kind_print_as_kustomize_prints_them(tmp_path):
    dirs = []
    for name, doc in TRICKY_DOCS.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "widget.yaml").write_text(doc, encoding="utf-8")
        (folder / "kustomization.yaml").write_text("resources: [widget.yaml]\nnamespace: team-a\n"
                                                   "labels:\n- pairs: {kflowgen.dev/team: team-a}\n"
                                                   + EXTRA_KUSTOMIZATION.get(name, ""))
        dirs.append(str(folder))
    want = kustomize_all(dirs)
    assert [s for s, _ in want.values()] == ["ok"] * 4 + ["error"] * 2 + ["ok"] * 3, want
    assert b'replicas: "5"' in want[str(tmp_path / "quotedCount")][1] and b'hostPort: ""' in want[str(tmp_path / "flowNulls")][1]
    # (yaml.v2 refuses DEL; JSON has no integer keys)
    assert_identical(batch(dirs), want)
    checked = kbuild(dirs, "-selfcheck", "-json")  # also: each object's JSON is the printed YAML as kubeconform reads it
    assert b"selfcheck" not in checked.stdout, checked.stdout.decode()[-1000:]


def test_selfcheck_agrees_on_the_generated_repository(generated):
    run = kbuild(generated, "-selfcheck", "-json", "-j", "2")
    assert run.returncode == 0 and b"selfcheck" not in run.stdout, run.stdout[-500:]


@pytest.mark.parametrize("jobs", ["1", "2", "8"])
def test_example_repository_is_byte_identical(example, example_built, jobs):
    assert len(example) >= 8  # the teams' platform overlays (workloads folders are plain directories)
    assert all(s == "ok" for s, _ in example_built.values())
    assert_identical(batch(example, "-j", jobs), example_built)


def test_generated_20_teams_is_byte_identical(generated):
    assert len(generated) >= 60  # 20 teams x 3 environments: their platform overlays
    want = kustomize_all(generated)
    assert all(s == "ok" for s, _ in want.values())
    assert_identical(batch(generated, "-j", "2"), want)


def test_broken_overlay_reports_kustomize_error_and_others_still_build(tmp_path, example, example_built):
    repo = tmp_path / "repo"
    pristine = Path(example[0].split("/overlays/")[0])  # <scratch>/overlays/<env>/... -> <scratch>
    shutil.copytree(pristine, repo)
    dirs = [str(repo / Path(d).relative_to(pristine)) for d in example]
    broken = next(d for d in dirs if d.endswith("/platform"))
    kust = Path(broken, "kustomization.yaml").read_text()
    victim = next(v for v in re.findall(r"^- (\S+\.yaml)$", kust, re.M) if not v.startswith("../"))
    Path(broken, victim).unlink()
    missing = str(tmp_path / "no-such-overlay")
    dirs.insert(1, missing)

    got = batch(dirs, "-j", "2")
    assert got[broken][0] == "error"
    assert got[broken] == kustomize(broken)
    assert victim.encode() in got[broken][1] and got[broken][1].startswith(b"Error: ")
    assert got[missing] == ("error", kustomize(missing)[1])
    for d in dirs:
        if d not in (broken, missing):
            assert got[d] == example_built[str(pristine / Path(d).relative_to(repo))], d  # as in the pristine copy


# --- the stream ---------------------------------------------------------------------------------------------------

def test_stream_keeps_input_order_repeats_and_odd_paths(tmp_path, example, example_built):
    shutil.copytree(Path(example[0].split("/overlays/")[0]), tmp_path / "a dir with spaces" / "repo")
    rel = Path(example[1]).relative_to(example[0].split("/overlays/")[0])
    spaced = str(tmp_path / "a dir with spaces" / "repo" / rel)
    dirs = list(reversed(example)) + [example[0], spaced, example[0]]
    run = kbuild(dirs + [""], "-j", "3")  # an empty line is skipped
    assert run.returncode == 0, run.stderr.decode()
    results = parse_stream(run.stdout)
    assert [d for d, _, _ in results] == dirs
    for d, s, p in results:
        assert (s, p) == example_built[example[1] if d == spaced else d]


def test_json_records_hold_each_built_object_as_the_yaml_reads(example, example_built, generated):
    for dirs, want in ((example, example_built), (generated, None)):
        run = kbuild(dirs, "-json", "-j", "2")
        assert run.returncode == 0, run.stderr.decode()
        records = parse_stream(run.stdout)
        assert [(d, s) for d, s, _ in records] == [(d, s) for d in dirs for s in ("ok", "json")]
        for (d, _, yml), (_, _, objects) in zip(records[::2], records[1::2]):
            if want:
                assert ("ok", yml) == want[d]  # the YAML record is unchanged by -json
            assert json.loads(objects) == [o for o in yaml.safe_load_all(yml) if o is not None], d


def test_json_scalars_are_typed_as_the_yaml_says(tmp_path):
    (tmp_path / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations: {a: \"1\", b: 'true', c: \"<&>\"}\n"
        "data:\n  s: 'null'\n  t: \"0755\"\n  u: \"line\\nbreak \\u00e9\"\n")
    (tmp_path / "job.yaml").write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  backoffLimit: 3\n  completions: 0x10\n"
        "  suspend: false\n  activeDeadlineSeconds: 1e3\n  template: {spec: {restartPolicy: Never, containers: []}}\n"
        "  ttlSecondsAfterFinished: null\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml, job.yaml]\n")
    records = parse_stream(kbuild([str(tmp_path)], "-json").stdout)
    cm, job = json.loads(records[1][2])
    assert cm["metadata"]["annotations"] == {"a": "1", "b": "true", "c": "<&>"}
    assert cm["data"] == {"s": "null", "t": "0755", "u": "line\nbreak \u00e9"}
    assert job["spec"]["backoffLimit"] == 3 and job["spec"]["completions"] == 16 and job["spec"]["suspend"] is False
    assert job["spec"]["activeDeadlineSeconds"] == 1000.0 and job["spec"]["ttlSecondsAfterFinished"] is None
    assert [cm, job] == list(yaml.safe_load_all(records[0][2]))


def test_json_record_follows_only_a_built_overlay(tmp_path, example):
    missing = str(tmp_path / "no-such-overlay")
    records = parse_stream(kbuild([missing, example[0]], "-json").stdout)
    assert [s for _, s, _ in records] == ["error", "ok", "json"]


def test_protocol_is_the_one_kflowgen_reads():
    run = subprocess.run([str(KBUILD), "-version"], capture_output=True, text=True, check=True)
    assert tools.BATCH_PROTOCOL in run.stdout and tools.find_batch() == KBUILD


def test_a_build_from_other_source_is_not_used(monkeypatch):
    """The binary names the digest of the source it was built from; after an edit to tools/kbuild it is rebuilt by
    `tools install` and, until then, kflowgen runs kustomize processes instead."""
    assert f"source {tools._kbuild_digest()}" in tools.batch_version(KBUILD)
    monkeypatch.setattr(tools, "_kbuild_digest", lambda: "0123456789abcdef")
    assert tools.find_batch() is None


def test_empty_input_gives_empty_stream():
    run = kbuild([])
    assert (run.returncode, run.stdout) == (0, b"")


def test_usage_errors_exit_2():
    assert kbuild([], "-j", "0").returncode == 2
    assert kbuild([], "--", "--output", "/tmp/x").returncode == 2
    assert kbuild([], "--", "--load-restrictor", "bogus").returncode == 2
    assert kbuild([], "--", "somedir").returncode == 2


def test_version_names_the_modules_of_the_pinned_kustomize():
    run = subprocess.run([str(KBUILD), "-version"], capture_output=True, text=True, check=True)
    assert "sigs.k8s.io/kustomize/kustomize/v5@v5.8.1" in run.stdout
    assert "sigs.k8s.io/kustomize/api@v0.21.1" in run.stdout
    if shutil.which("go"):
        deps = subprocess.run(["go", "version", "-m", str(KUSTOMIZE)], capture_output=True, text=True).stdout
        pinned = dict(re.findall(r"^\s*(?:dep|mod)\s+(sigs\.k8s\.io/kustomize/\S+)\s+(\S+)", deps, re.M))
        for module in ("sigs.k8s.io/kustomize/api", "sigs.k8s.io/kustomize/kyaml"):
            assert f"{module}@{pinned[module]}" in run.stdout


# --- kustomize features beyond today's overlays ------------------------------------------------------------------

SCHEMA = """{"definitions": {"v1alpha1.Widget": {
  "type": "object",
  "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Widget", "version": "v1alpha1"}],
  "properties": {"spec": {"type": "object", "properties": {"parts": {
    "type": "array", "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge",
    "items": {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "string"}}}}}}}}}}
"""

WIDGET = """apiVersion: example.com/v1alpha1
kind: Widget
metadata:
  name: w
spec:
  parts:
  - {name: a, size: "1"}
  - {name: b, size: "2"}
"""

WIDGET_PATCH = """patches:
- patch: |-
    apiVersion: example.com/v1alpha1
    kind: Widget
    metadata:
      name: w
    spec:
      parts:
      - {name: b, size: "20"}
"""

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - {name: web, image: nginx:1.0, env: [{name: A, value: "1"}]}
      - {name: side, image: busybox}
"""


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def features(tmp_path) -> list[str]:
    """Overlays that use a custom OpenAPI schema (kustomize's process-wide state) mixed with ordinary ones."""
    write(tmp_path, {
        # a custom schema: the strategic-merge patch merges the list by name
        "custom/kustomization.yaml": "resources: [widget.yaml]\nopenapi:\n  path: schema.json\n" + WIDGET_PATCH,
        "custom/schema.json": SCHEMA, "custom/widget.yaml": WIDGET,
        # the same patch without a schema replaces the list: must not see the schema of the build before it
        "plain/kustomization.yaml": "resources: [widget.yaml]\n" + WIDGET_PATCH, "plain/widget.yaml": WIDGET,
        # a base with a schema under an overlay without one
        "base-schema/kustomization.yaml": "resources: [widget.yaml]\nopenapi:\n  path: schema.json\n",
        "base-schema/schema.json": SCHEMA, "base-schema/widget.yaml": WIDGET,
        "via-base/kustomization.yaml": "resources: [../base-schema]\n" + WIDGET_PATCH,
        # built-in schema: strategic merge on a Deployment, JSON 6902, images, generators with hashes, prefixes
        "smp/kustomization.yaml": "namePrefix: p-\ncommonLabels: {app: web}\nresources: [deployment.yaml]\n"
        "images: [{name: nginx, newTag: '2.0'}]\n"
        "configMapGenerator: [{name: cfg, literals: [k=v]}]\n"
        "patches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: web}\n"
        "    spec:\n      template:\n        spec:\n          containers:\n"
        "          - {name: web, env: [{name: B, value: '2'}]}\n"
        "- target: {kind: Deployment}\n  patch: |-\n    - {op: add, path: /spec/replicas, value: 3}\n",
        "smp/deployment.yaml": DEPLOYMENT,
        "sorted/kustomization.yaml": "resources: [deployment.yaml, ns.yaml]\n"
        "sortOptions: {order: fifo}\n",
        "sorted/deployment.yaml": DEPLOYMENT, "sorted/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    })
    names = ["custom", "plain", "smp", "via-base", "plain", "sorted", "custom", "smp", "plain"]
    return [str(tmp_path / n) for n in names]


@pytest.mark.parametrize("jobs", ["1", "4"])
def test_custom_openapi_schema_does_not_leak_between_overlays(features, jobs):
    want = {d: kustomize(d) for d in dict.fromkeys(features)}
    assert all(s == "ok" for s, _ in want.values())
    custom, plain = want[features[0]][1], want[features[1]][1]
    assert b'size: "20"' in custom and b"name: a" in custom  # merged by name
    assert b"name: a" not in plain  # replaced
    run = kbuild(features, "-j", jobs)
    assert run.returncode == 0, run.stderr.decode()
    got = parse_stream(run.stdout)
    assert [d for d, _, _ in got] == features
    for d, s, p in got:
        assert (s, p) == want[d], d


def test_kustomize_build_flags_after_double_dash(tmp_path):
    write(tmp_path, {"shared/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
                     "overlay/kustomization.yaml": "resources: [../shared/cm.yaml]\n"})
    d = str(tmp_path / "overlay")
    restricted = batch([d])
    assert restricted[d] == kustomize(d) and restricted[d][0] == "error"  # rootOnly, as `kustomize build`
    loose = batch([d], "--", "--load-restrictor", "LoadRestrictionsNone")
    assert loose[d] == kustomize(d, "--load-restrictor", "LoadRestrictionsNone") and loose[d][0] == "ok"


def test_managed_by_label_names_the_pinned_kustomize_version(example, monkeypatch):
    monkeypatch.setenv("KUSTOMIZE_ENABLE_MANAGEDBY_LABEL", "on")  # both processes inherit it
    got = batch(example[:2])
    for d in example[:2]:
        assert got[d] == kustomize(d)
        assert b"app.kubernetes.io/managed-by: kustomize-v5.8.1" in got[d][1]
