"""End-to-end tests on a real, local, throw-away control plane (etcd, kube-apiserver, kube-controller-manager built
from source by `kflowgen tools install --server`): server-side dry-run of the example repository, rejections
reported per object, GPU quota and Pod Security admission, and no process left behind. Nothing here mocks the API
server."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from kflowgen import codes, diagnostics, tools, upstream
from kflowgen.flow import pipeline
from kflowgen.checks import server, verify
from kflowgen.checks.objects import identity
from kflowgen.diagnostics import Diagnostic
from kflowgen.checks.schemas import crd_files_in
from kflowgen.targets import render
from kflowgen.build import Built, build, overlays_of
from kflowgen.options import Options

from conftest import PROJECT, UPSTREAM  # tests/ is on sys.path (pytest prepend mode)

GPU = "nvidia.com/gpu"


def _timing(name: str, seconds: float) -> None:
    print(f"\n[timing] {name}: {seconds:.2f}s")


def test_server_codes_are_registered():
    for code, title in server.CODES.items():
        assert codes.CODES[code] == title


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    found = tools.find_all(tools.SERVER)
    if isinstance(found, Diagnostic):
        # absent: `make tools-server` builds them (10-20 minutes the first time). The suite builds them itself only
        # when asked to (KFLOWGEN_BUILD_SERVER=1), so that `make test` stays quick where they were not built.
        if not os.environ.get("KFLOWGEN_BUILD_SERVER"):
            pytest.skip(f"control-plane binaries not built: run `make tools-server` ({found.message})")
        if shutil.which("go") and (tools.APISERVER_SOURCE / "go.mod").is_file():
            t0 = time.monotonic()
            rc = tools.install(tools.SERVER)
            _timing("control-plane build (go install)", time.monotonic() - t0)
            found = tools.find_all(tools.SERVER)
            if isinstance(found, Diagnostic):
                pytest.skip(f"control-plane binaries absent and the build failed (exit {rc}): {found.message}")
        else:
            pytest.skip("control-plane binaries absent and cannot be built here "
                        f"(needs Go and {tools.APISERVER_SOURCE}): {found.message}")
    return found


@pytest.fixture(scope="session")
def example() -> tuple:
    """The example repository, loaded, rendered and built (kustomize) as `kflowgen validate` does."""
    model, diags = pipeline.load(Options(PROJECT))
    assert model is not None, diags
    files = render(model)
    built, diags = build(Options(PROJECT, os.cpu_count() or 1), files, overlays_of(files))
    assert not diags, diags
    return model, built


def _docs(text: str) -> list[dict]:
    return [obj for _, obj in server.documents(text)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions text (the control plane's temporary folder)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes() and _alive(int(d.name)):
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _assert_gone(pids: list[int], folder: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (any(map(_alive, pids)) or _processes_mentioning(str(folder))):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "control-plane processes left running"
    assert not _processes_mentioning(str(folder)), "a process still uses the control plane's folder"


# --- building, and reading what the API server says ----------------------------------------------------------------

def test_install_keeps_binaries_already_at_the_pinned_version(binaries):
    logged: list[str] = []
    assert tools.install(tools.SERVER, binaries["etcd"].parent, log=logged.append) == 0
    assert logged == [f"kflowgen: {b.name} {b.version} already in {binaries['etcd'].parent}" for b in tools.SERVER]
    for b in tools.SERVER:
        assert tools.built_version(binaries[b.name], b) == b.version
    kustomize = tools.find("kustomize")
    if not isinstance(kustomize, Diagnostic) and Path(kustomize.argv[0]).is_file():
        assert tools.built_version(Path(kustomize.argv[0]), tools.SERVER[1]) == ""  # another program: rebuild


def test_documents_keep_each_objects_own_text():
    stream = "a: 1\n---\n# comment only\n--- # x\nkind: B\nb: [1, 2]\n---\n\n"
    docs = server.documents(stream)
    assert [obj for _, obj in docs] == [{"a": 1}, {"kind": "B", "b": [1, 2]}]
    assert docs[1][0].strip() == "kind: B\nb: [1, 2]"


def test_documents_of_a_build_pair_its_texts_with_the_objects_it_parsed():
    stream = "a: 1\n---\n# comment only\n--- # x\nkind: B\nb: [1, 2]\n---\n\n"
    objects = [{"a": 1}, {"kind": "B", "b": [1, 2]}]
    docs = server.dryrun.paired(stream, objects)
    assert [t for t, _ in docs] == [t for t, _ in server.documents(stream)]
    assert [obj for _, obj in docs] == objects and all(a is b for (_, a), b in zip(docs, objects))
    # not lined up (a document that is not a mapping, or another build's objects): parsed as documents() does
    for stream, objects in (("a: 1\n---\n- x\n", [{"a": 1}]), ("kind: A\n", [{"kind": "B"}])):
        assert server.dryrun.paired(stream, objects) == server.documents(stream)
    docs, diags = server.built_documents(Built({"overlays/dev/x": "a: [1\n", "overlays/dev/y": "kind: A\n"}))
    assert list(docs) == ["overlays/dev/y"] and docs["overlays/dev/y"] == [("kind: A\n", {"kind": "A"})]
    assert [(d.path, d.code) for d in diags] == [("overlays/dev/x", "KF405")]
    assert diags[0].message.startswith("built output is not valid YAML: ")


def test_warning_headers_are_unquoted():
    assert server.client._warnings(['299 - "metadata.finalizers: \\"x\\": prefer a domain"', "odd"]) == [
        'metadata.finalizers: "x": prefer a domain', "odd"]


# --- (a) the example repository -----------------------------------------------------------------------------------

def test_example_repository_passes_server_side_dry_run(binaries, example, monkeypatch):
    model, built = example
    crd_files = verify.crd_files(PROJECT, model.platform)  # the CRDs kflowgen ships: nothing from ../shared
    assert crd_files and all(upstream.FOLDER in f.parents for f in crd_files)
    t0 = time.monotonic()
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        _timing("control plane start (etcd + kube-apiserver)", time.monotonic() - t0)
        assert cp.request("GET", "/version").body["gitVersion"] == tools.KUBERNETES_VERSION
        t1 = time.monotonic()
        parsed = []  # the build's objects are paired with their texts, no stream parsed again (dryrun.documents)
        real = server.dryrun.documents
        monkeypatch.setattr(server.dryrun, "documents", lambda stream: parsed.append(stream) or real(stream))
        docs, parse_errors = server.built_documents(built)
        monkeypatch.undo()
        assert parse_errors == [] and docs.keys() == built.overlays.keys() and parsed == []
        for overlay, text in built.overlays.items():  # each object's own text, with the object the build parsed
            assert [t for t, _ in docs[overlay]] == [t for t, _ in server.documents(text)]
            assert [obj for _, obj in docs[overlay]] == built.objects(overlay)
        diags = server.dry_run(cp, docs, crd_files)
        _timing(f"dry-run of the example repository ({sum(built.counts.values())} objects, 3 environments)",
                time.monotonic() - t1)
        assert cp.stats["objects"] + cp.stats["namespaces"] == sum(built.counts.values()) == 205
        # only the CRDs of kinds the objects use are installed (Application, AppProject; no ApplicationSet)
        crds = {c["metadata"]["name"] for c in cp.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").body["items"]}
        assert {"applications.argoproj.io", "appprojects.argoproj.io"} <= crds
        assert "applicationsets.argoproj.io" not in crds and cp.stats["crds"] == len(crds)
        errors = [d for d in diags if d.severity == diagnostics.ERROR]
        assert not errors, "\n".join(f"{d.path}: {d.message}" for d in errors)
        # no warnings either: Applications carry Argo CD's path-qualified foreground finalizer
        # (resources-finalizer.argocd.argoproj.io/foreground), which Kubernetes 1.34 does not warn about
        assert diags == [], "\n".join(f"{d.path}: {d.message}" for d in diags)
        # Namespaces were created for real, with the last environment's labels; Applications went to argocd
        ns = cp.request("GET", "/api/v1/namespaces/vision").body
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert cp.request("GET", "/api/v1/namespaces/argocd").ok
        # dry-run persisted nothing else
        assert cp.request("GET", "/apis/batch/v1/namespaces/vision/jobs").body["items"] == []
        assert cp.request("GET", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications").body["items"] == []
        # kubectl can use the kubeconfig
        out = subprocess.run(["kubectl", "--kubeconfig", str(cp.kubeconfig), "get", "crd", "-o", "name"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "customresourcedefinition.apiextensions.k8s.io/applications.argoproj.io" in out.stdout


def test_every_crd_kflowgen_ships_installs_and_is_established(binaries):
    """The CRDs in kflowgen/upstream are the upstream ones without description texts: still CRDs the API server takes."""
    shipped = sorted(upstream.FOLDER.glob("*/*/*-crd.json")) + sorted(upstream.FOLDER.glob("*/*/*_*.json"))
    assert len(shipped) == 12
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        diags = server.dry_run(cp, {}, shipped, all_crds=True)
        assert not [d for d in diags if d.severity == diagnostics.ERROR], diags
        served = cp.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").body["items"]
        assert sorted(c["metadata"]["name"] for c in served) == [
            "applications.argoproj.io", "appprojects.argoproj.io", "clusterqueues.kueue.x-k8s.io",
            "clustertrainingruntimes.trainer.kubeflow.org", "cohorts.kueue.x-k8s.io",
            "inferenceservices.serving.kserve.io", "localqueues.kueue.x-k8s.io", "pytorchjobs.kubeflow.org",
            "resourceflavors.kueue.x-k8s.io", "tfjobs.kubeflow.org", "trainingruntimes.trainer.kubeflow.org",
            "trainjobs.trainer.kubeflow.org"]


def test_wait_established_returns_once_discovery_lists_the_crds_resources(binaries):
    """The API server marks a CRD Established before its discovery lists the resources; a client that looks in
    between is told the kind does not exist (CI saw Kueue's controller start then and exit: no matches for kind
    Workload). wait_established returns once both lists name every served version's resource: the group version's
    and the aggregated one, which the pinned API server serves and REST mappers read."""
    from kflowgen.checks.server.client import AGGREGATED_DISCOVERY
    crds = [json.loads(f.read_text()) for f in sorted((PROJECT / "kflowgen/upstream/kueue").glob("*/*.json"))]
    wanted = {(c["spec"]["group"], v["name"], c["spec"]["names"]["plural"]) for c in crds
              for v in c["spec"]["versions"] if v.get("served")}
    kinds = {(f"{c['spec']['group']}/{v['name']}", c["spec"]["names"]["kind"]) for c in crds
             for v in c["spec"]["versions"] if v.get("served")}
    assert ("kueue.x-k8s.io", "v1beta2", "localqueues") in wanted and len(kinds) == len(wanted)
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        assert cp.request("GET", "/apis", accept=AGGREGATED_DISCOVERY).body["kind"] == "APIGroupDiscoveryList"
        assert not cp.discovered(kinds)
        answers = []
        discovered = cp.discovered
        cp.discovered = lambda asked: answers.append((set(asked), discovered(asked))) or answers[-1][1]
        for crd in crds:
            assert cp.apply(crd).ok, crd["metadata"]["name"]
        cp.wait_established([c["metadata"]["name"] for c in crds])
        assert answers and answers[-1] == (kinds, True), answers  # it asked discovery, last with every kind
        for group, version, plural in wanted:  # and right away, with no wait, both lists name each resource
            r = cp.request("GET", f"/apis/{group}/{version}")
            assert plural in {res["name"] for res in r.body["resources"]}, (group, version, plural)
        aggregated = cp.request("GET", "/apis", accept=AGGREGATED_DISCOVERY).body["items"]
        assert wanted <= {(g["metadata"]["name"], v["version"], res["resource"])
                          for g in aggregated for v in g["versions"] for res in v["resources"]}
        assert not discovered(kinds | {("kueue.x-k8s.io/v1beta2", "Workload")})  # a kind not installed
        assert not discovered({("kueue.x-k8s.io/v9", "LocalQueue")})  # a version not served
        assert discovered(set())
        assert cp.resource("kueue.x-k8s.io/v1beta2", "LocalQueue") == ("localqueues", True)


def _golden_built(name: str, tmp_path: Path):
    """tests/golden/<name> built as validate builds it (with the project's bases/): the built overlays and the CRD files
    its platform needs."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / f"tests/golden/{name}/specs", root / "specs")
    shutil.copytree(PROJECT / "bases", root / "bases")
    model, diags = pipeline.load(Options(root))
    assert model is not None, diags
    files = render(model)
    built, diags = build(Options(root, os.cpu_count() or 1), files, overlays_of(files))
    assert not diags, diags
    return built, verify.crd_files(root, model.platform)


def test_queueing_golden_case_passes_server_side_dry_run_with_the_kueue_crds(binaries, tmp_path):
    """tests/golden/queueing built as validate builds it (with the project's bases/), dry-run against the Kueue CRDs
    kflowgen ships: the API server takes every flavor, Cohort, ClusterQueue and LocalQueue, with their CEL rules; and
    refuses a ClusterQueue that borrows without a Cohort, which no JSON schema can say."""
    built, crd_files = _golden_built("queueing", tmp_path)
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        docs, parse_errors = server.built_documents(built)
        assert parse_errors == []
        diags = server.dry_run(cp, docs, crd_files)
        assert diags == [], "\n".join(f"{d.path}: {d.message}" for d in diags)
        crds = {c["metadata"]["name"] for c in cp.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").body["items"]}
        assert {f"{k}.kueue.x-k8s.io" for k in ("resourceflavors", "cohorts", "clusterqueues", "localqueues")} <= crds
        queue = next(o for _, o in docs["overlays/lab/queueing"] if o["kind"] == "ClusterQueue")
        alone = copy.deepcopy(queue)
        del alone["spec"]["cohortName"]
        found = server.dry_run(cp, {"overlays/lab/queueing": [(yaml.safe_dump(alone), alone)]}, crd_files)
        assert [(d.code, d.path) for d in found] == [("KF405", "overlays/lab/queueing")], found
        assert "borrowingLimit must be nil when cohort is empty" in found[0].message


def test_trainer_golden_case_passes_server_side_dry_run_with_the_trainer_crds(binaries, tmp_path):
    """tests/golden/trainer built as validate builds it, dry-run against the Kubeflow Trainer v2.3.0 CRDs kflowgen
    ships: the API server takes every TrainJob (queued and not) with the CRD's own rules (name a DNS-1035 label of at
    most 63 characters, runtimeRef, runtimePatches keyed by manager); and refuses a TrainJob whose name breaks them,
    and one with two patches of one manager, which no JSON schema can say."""
    built, crd_files = _golden_built("trainer", tmp_path)
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        docs, parse_errors = server.built_documents(built)
        assert parse_errors == []
        jobs = [o for overlay in docs.values() for _, o in overlay if o["kind"] == "TrainJob"]
        assert len(jobs) == 4 and {o["spec"].get("suspend", False) for o in jobs} == {True, False}
        diags = server.dry_run(cp, docs, crd_files)
        assert diags == [], "\n".join(f"{d.path}: {d.message}" for d in diags)
        crds = {c["metadata"]["name"] for c in cp.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").body["items"]}
        assert "trainjobs.trainer.kubeflow.org" in crds
        overlay = "overlays/prod/teams/alpha/workloads"
        job = next(o for _, o in docs[overlay] if o["kind"] == "TrainJob")
        long_name = copy.deepcopy(job)
        long_name["metadata"]["name"] = "x" * 64
        twice = copy.deepcopy(job)
        twice["spec"]["runtimePatches"].append(copy.deepcopy(twice["spec"]["runtimePatches"][0]))
        for broken, words in ((long_name, "no more than 63 characters"),
                              (twice, 'duplicate entries for key [manager="kflowgen.dev/trial"]')):
            found = server.dry_run(cp, {overlay: [(yaml.safe_dump(broken), broken)]}, crd_files)
            assert [(d.code, d.path) for d in found] == [("KF405", overlay)], found
            assert words in found[0].message, found[0].message


def test_kserve_golden_case_passes_server_side_dry_run_with_the_inference_service_crd(binaries, tmp_path):
    """tests/golden/kserve built as validate builds it, dry-run against KServe v0.20.0's InferenceService CRD (which
    kflowgen installs only for a platform that serves with KServe): the API server takes every InferenceService, the
    canaries among them, and refuses a canary share over 100%. KServe's controller and webhook do not run here (its
    module pins 12 replacements and needs Knative and cert-manager): what they would refuse beyond the CRD is read
    from its code (tests/test_kserve.py)."""
    built, crd_files = _golden_built("kserve", tmp_path)
    assert crd_files[-1].name == "serving.kserve.io_inferenceservices.json"
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        docs, parse_errors = server.built_documents(built)
        assert parse_errors == []
        diags = server.dry_run(cp, docs, crd_files)
        assert diags == [], "\n".join(f"{d.path}: {d.message}" for d in diags)
        workloads = "overlays/prod/teams/shop/workloads"
        isvc = next(o for _, o in docs[workloads] if o["kind"] == "InferenceService" and "canary" in o["spec"])
        over = copy.deepcopy(isvc)
        over["spec"]["canary"][0]["trafficPercent"] = 150
        found = server.dry_run(cp, {workloads: [(yaml.safe_dump(over), over)]}, crd_files)
        assert [(d.code, d.path) for d in found] == [("KF405", workloads)], found
        assert "spec.canary[0].trafficPercent" in found[0].message and "100" in found[0].message


@pytest.mark.skipif(not (UPSTREAM / "crds").is_dir(), reason="needs ../shared/upstream beside the project")
def test_every_upstream_crd_installs_and_is_established(binaries):
    crd_files = crd_files_in([UPSTREAM / "crds"])
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        t0 = time.monotonic()
        diags = server.dry_run(cp, {}, crd_files, all_crds=True)
        _timing(f"installing all {cp.stats['crds']} upstream CRDs", time.monotonic() - t0)
        assert not [d for d in diags if d.severity == diagnostics.ERROR], diags
        served = cp.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").body["items"]
        assert len(served) == cp.stats["crds"] == sum(len(server.documents(f.read_text())) for f in crd_files)


def test_check_is_what_validate_server_runs(binaries, example):
    model, built = example
    one = [o for o in built.overlays if o.startswith("overlays/staging/")]
    diags, summary = server.check(PROJECT, verify.crd_files(PROJECT, model.platform), built, overlays=one)
    assert not [d for d in diags if d.severity == diagnostics.ERROR]
    assert summary and summary[0].startswith(f"{built.counts['staging']} objects sent to kube-apiserver v1.34.4")


# --- (b) rejections and warnings, per object ----------------------------------------------------------------------

def test_broken_objects_are_reported_with_their_identity(binaries, example):
    _, built = example
    platform = _docs(built.overlays["overlays/dev/teams/vision/platform"])
    namespace = next(o for o in platform if o["kind"] == "Namespace")
    job = next(o for o in _docs(built.overlays["overlays/dev/teams/vision/workloads"]) if o["kind"] == "Job")
    app = next(o for o in _docs(built.overlays["overlays/dev/argocd"]) if o["kind"] == "Application")

    unknown = copy.deepcopy(job)
    unknown["metadata"]["name"] = "unknown-field"
    unknown["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    privileged = copy.deepcopy(job)
    privileged["metadata"]["name"] = "privileged"
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    bad_app = copy.deepcopy(app)
    bad_app["spec"]["syncPolicyy"] = {}
    bad_name = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": "vision"}}
    long_port = copy.deepcopy(job)  # a container port name is an IANA service name: at most 15 characters
    long_port["metadata"]["name"] = "long-port-name"
    long_port["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "metrics-endpoint", "containerPort": 9090}]
    duplicate = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: duplicate
          namespace: vision
        data:
          a: "1"
          a: "2"
        """)
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine", "namespace": "vision"}}
    docs = [namespace, unknown, privileged, bad_name, long_port, good]
    dev = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs) + "---\n" + duplicate
    prod = yaml.safe_dump(bad_app, sort_keys=False)
    crd_files = [f for f in upstream.crd_files("3.6.2") if "argo-cd" in f.parts]  # the ones kflowgen ships
    with server.ControlPlane(binaries, controller_manager=False) as cp:
        diags = server.dry_run(cp, {"overlays/dev/teams/vision/x": server.documents(dev),
                                    "overlays/prod/argocd": server.documents(prod)}, crd_files)

    def one(code: str, ident: str) -> Diagnostic:
        found = [d for d in diags if d.code == code and d.message.startswith(ident + ": ")]
        assert len(found) == 1, (code, ident, diags)
        return found[0]

    d = one("KF405", "Job vision/unknown-field")
    assert d.severity == diagnostics.ERROR and d.path == "overlays/dev/teams/vision/x"
    assert "imagePullPolicyy" in d.message and "field not declared in schema" in d.message
    assert "strict field validation" in d.hint  # the API server answers 500 here (kubernetes#122480)
    assert "RFC 1123" in one("KF405", "ConfigMap vision/Bad_Name").message
    d = one("KF405", "Job vision/long-port-name")
    assert "must be no more than 15 characters" in d.message and "HTTP 422 Invalid" in d.hint
    d = one("KF405", "ConfigMap vision/duplicate")  # caught because each object is sent as the YAML it was built as
    assert 'key "a" already set in map' in d.message and "\n" not in d.message
    assert "syncPolicyy" in one("KF405", f"Application argocd/{app['metadata']['name']}").message
    # a workload breaking Pod Security in a namespace kflowgen labels: the API server warns (pods would be refused)
    w = one("KF406", "Job vision/privileged")
    # (warn has no pinned version in the rendered Namespace, so the API server checks restricted:latest)
    assert w.severity == diagnostics.WARNING and 'would violate PodSecurity "restricted:' in w.message
    assert not [d for d in diags if "vision/fine" in d.message]
    assert {d.code for d in diags} == {"KF405", "KF406"}
    assert len([d for d in diags if d.code == "KF405"]) == 5


# --- (c, d) quota and Pod Security, end to end ---------------------------------------------------------------------

TEAM, ENV = "vision", "dev"


@pytest.fixture(scope="module")
def team(binaries, example):
    """A control plane with the controller manager, and the team's platform objects of one environment applied
    for real: Namespace (Pod Security restricted), ResourceQuota, LimitRange, ServiceAccount, RoleBindings..."""
    _, built = example
    objects = _docs(built.overlays[f"overlays/{ENV}/teams/{TEAM}/platform"])
    with server.ControlPlane(binaries, controller_manager=True) as cp:
        # dev queues training: the platform overlay has the team's LocalQueue, whose CRD (Kueue's, shipped) comes first
        kueue = [json.loads(f.read_text()) for f in sorted((PROJECT / "kflowgen/upstream/kueue").glob("*/*.json"))]
        for crd in kueue:
            assert cp.apply(crd).ok, crd["metadata"]["name"]
        cp.wait_established([c["metadata"]["name"] for c in kueue])
        for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
            r = cp.apply(obj)
            assert r.ok, (identity(obj), r.message)
        quota = next(o for o in objects if o["kind"] == "ResourceQuota")

        def counted() -> bool:  # the resourcequota controller has computed the quota's status
            status = cp.get(quota).body.get("status") or {}
            return f"requests.{GPU}" in (status.get("hard") or {}) and f"requests.{GPU}" in (status.get("used") or {})

        cp.wait_for("the quota controller to fill the ResourceQuota's status", counted, timeout=60)
        yield cp, built, quota


def _pod_from_job(built, name: str, gpus: int | None = None) -> dict:
    """A bare Pod made from a rendered training Job's pod template (what the Job controller would create)."""
    job = next(o for o in _docs(built.overlays[f"overlays/{ENV}/teams/{TEAM}/workloads"])
               if o["kind"] == "Job" and GPU in o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"])
    template = copy.deepcopy(job["spec"]["template"])
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {**template.get("metadata", {}), "name": name, "namespace": job["metadata"]["namespace"]},
           "spec": template["spec"]}
    if gpus is not None:
        for part in ("requests", "limits"):
            if GPU in pod["spec"]["containers"][0]["resources"].get(part, {}):
                pod["spec"]["containers"][0]["resources"][part][GPU] = str(gpus)
    return pod


def _gpu(cp, quota, which: str) -> int:
    return int((cp.get(quota).body["status"][which]).get(f"requests.{GPU}", "0"))


def test_pod_asking_for_more_gpus_than_the_quota_is_refused(team):
    cp, built, quota = team
    hard = _gpu(cp, quota, "hard")
    assert hard == int(quota["spec"]["hard"][f"requests.{GPU}"]) == 6  # 4, and 2 that Kueue may admit on loan
    r = cp.create(_pod_from_job(built, "too-many-gpus", gpus=hard + 1))
    assert r.status == 403, r.body
    assert "exceeded quota: team" in r.message and f"requests.{GPU}={hard + 1}" in r.message, r.message
    assert cp.get({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "too-many-gpus", "namespace": TEAM}}).status == 404


def test_pods_within_the_quota_are_admitted_until_it_is_used_up(team):
    cp, built, quota = team
    hard, used = _gpu(cp, quota, "hard"), _gpu(cp, quota, "used")
    r = cp.create(_pod_from_job(built, "one-trial"))  # the rendered template as is
    assert r.status == 201, r.message
    assert r.body["status"]["phase"] == "Pending"  # no nodes: it stays Pending, which is fine
    gpus = int(r.body["spec"]["containers"][0]["resources"]["limits"][GPU])
    assert _gpu(cp, quota, "used") == used + gpus  # quota admission charged it
    rest = hard - used - gpus
    assert rest > 0
    r = cp.create(_pod_from_job(built, "rest-of-quota", gpus=rest))
    assert r.status == 201, r.message
    assert _gpu(cp, quota, "used") == hard
    r = cp.create(_pod_from_job(built, "one-more", gpus=1))
    assert r.status == 403 and "exceeded quota" in r.message, r.message


def test_pod_breaking_pod_security_restricted_is_refused_in_a_team_namespace(team):
    cp, built, _ = team
    labels = cp.request("GET", f"/api/v1/namespaces/{TEAM}").body["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # as kflowgen rendered it
    privileged = _pod_from_job(built, "privileged", gpus=0)
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    r = cp.create(privileged)
    assert r.status == 403, r.body
    assert 'violates PodSecurity "restricted:v1.34"' in r.message and "privileged" in r.message, r.message
    no_seccomp = _pod_from_job(built, "no-seccomp", gpus=0)
    no_seccomp["spec"].pop("securityContext")
    no_seccomp["spec"]["containers"][0]["securityContext"].pop("seccompProfile")
    r = cp.create(no_seccomp)
    assert r.status == 403 and "seccompProfile" in r.message, r.message
    # the same privileged Pod is admitted in a namespace without the labels: the refusal is Pod Security's
    assert cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unlabelled"}}).ok
    cp.wait_for("the default ServiceAccount", lambda: cp.request(
        "GET", "/api/v1/namespaces/unlabelled/serviceaccounts/default").ok)
    privileged["metadata"]["namespace"] = "unlabelled"
    privileged["spec"]["serviceAccountName"] = "default"
    r = cp.create(privileged)
    assert r.status == 201, r.message


# --- (e) nothing left running ---------------------------------------------------------------------------------------

def test_no_process_left_after_the_block_ends_or_raises(binaries):
    with server.ControlPlane(binaries) as first:
        pids, folder = first.pids(), first.dir
        assert len(pids) == 3 and all(map(_alive, pids)) and folder.is_dir()
    _assert_gone(pids, folder)
    assert not folder.exists() and first not in server.process._LIVE

    with pytest.raises(KeyboardInterrupt):  # what Ctrl-C raises
        with server.ControlPlane(binaries) as cp:
            pids, folder = cp.pids(), cp.dir
            raise KeyboardInterrupt
    _assert_gone(pids, folder)
    assert not folder.exists() and cp not in server.process._LIVE  # the atexit hook has nothing left to stop


def test_no_process_left_when_start_fails(binaries):
    cp = server.ControlPlane(binaries, timeout=0.5)  # the API server cannot be ready that fast
    with pytest.raises(server.ControlPlaneError, match="not ready|exited"):
        cp.start()
    assert cp.pids() and cp.dir is not None
    _assert_gone(cp.pids(), cp.dir)
    assert not cp.dir.exists()


SCRIPT = """
import json, signal, sys, time
# Ctrl-C in a terminal raises KeyboardInterrupt; a shell that started the tests in the background (`cmd &`) makes
# SIGINT ignored for all it starts, so the default is set back here
signal.signal(signal.SIGINT, signal.default_int_handler)
from kflowgen.checks import server
cp = server.ControlPlane(controller_manager=True)
cp.start()
print(json.dumps({"pids": cp.pids(), "dir": str(cp.dir)}), flush=True)
try:
    time.sleep(600)
finally:
    cp.stop()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_no_process_left_when_kflowgen_is_interrupted_or_killed(binaries, sig):
    env = dict(os.environ, KFLOWGEN_TOOLS=str(binaries["kube-apiserver"].parent))
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        started = json.loads(line)
        pids, folder = started["pids"], Path(started["dir"])
        assert all(map(_alive, pids))
        proc.send_signal(sig)
        try:
            proc.wait(timeout=300)  # a hang guard, not a time limit: the stop itself takes a second
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread of it was
            pytest.fail(f"still running 300 s after {sig.name}:\n{proc.communicate(timeout=60)[1][-6000:]}")
        _assert_gone(pids, folder)
        if sig == signal.SIGINT:
            assert not folder.exists()  # KeyboardInterrupt ran the cleanup
        else:
            shutil.rmtree(folder, ignore_errors=True)  # SIGKILL: the kernel killed the children, no cleanup ran
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _can(cp, user: str, groups: list[str], verb: str, resource: str, namespace: str, group: str = "") -> bool:
    """The API server's own answer (a SubjectAccessReview, decided by its RBAC authorizer)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups,
                       "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                              "resource": resource}}}
    r = cp.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert r.ok, r.message
    return bool(r.body["status"].get("allowed"))


def test_offboarding_step_one_leaves_the_team_reading_and_writing_nothing(binaries, tmp_path):
    """docs/repository.md, "Offboarding a team": with `offboarding: true` the team's owners and members read their
    namespace and write nothing in it; before it, they write. Asked of the API server with the rendered RoleBindings
    applied (the ClusterRoles view, edit and admin are the API server's own)."""
    repo = tmp_path / "repo"
    for part in ("specs", "bases"):
        shutil.copytree(PROJECT / part, repo / part)
    spec = repo / "specs/teams/recsys.yaml"
    owner, group = "carol@example.com", "recsys-ds"

    def built_platform() -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "kflowgen", "build", ENV, "--team", "recsys", "-C", str(repo)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d and d.get("metadata", {}).get("namespace") in
                ("recsys", None) and d["kind"] in ("Namespace", "RoleBinding", "Role", "ServiceAccount")]

    writes = [("create", "pods", ""), ("create", "jobs", "batch"), ("delete", "persistentvolumeclaims", ""),
              ("update", "configmaps", ""), ("create", "pods/exec", ""), ("create", "deployments", "apps")]
    reads = [("get", "pods", ""), ("list", "jobs", "batch"), ("get", "persistentvolumeclaims", ""),
             ("get", "pods/log", "")]
    # the controller manager aggregates the API server's view, edit and admin ClusterRoles
    with server.ControlPlane(binaries, controller_manager=True) as cp:
        before = built_platform()
        for obj in sorted(before, key=lambda o: o["kind"] != "Namespace"):
            assert cp.apply(obj).ok, identity(obj)
        for who in ((owner, []), ("someone@example.com", [group])):  # the aggregated roles may take a moment
            cp.wait_for(f"{who[0]} to write in recsys",
                        lambda: all(_can(cp, *who, v, r, "recsys", g) for v, r, g in reads + writes[:2]), timeout=30)
        spec.write_text(spec.read_text().replace("storage:\n", "offboarding: true\nstorage:\n", 1))
        after = built_platform()
        names = {o["metadata"]["name"] for o in after if o["kind"] == "RoleBinding"}
        for obj in before:  # what Argo CD prunes: the RoleBindings the head no longer renders
            if obj["kind"] == "RoleBinding" and obj["metadata"]["name"] not in names:
                assert cp.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/recsys/rolebindings/"
                                            f"{obj['metadata']['name']}").ok
        for obj in after:
            assert cp.apply(obj).ok, identity(obj)
        for who in ((owner, []), ("someone@example.com", [group])):
            assert [x for x in reads if not _can(cp, *who, x[0], x[1], "recsys", x[2])] == [], who
            assert [x for x in writes if _can(cp, *who, x[0], x[1], "recsys", x[2])] == [], who
        assert not _can(cp, "someone@example.com", ["other-team"], "get", "pods", "recsys")  # never anyone else
