"""End to end, with real Argo CD: the example repository's environments bootstrapped the way the README tells a
platform team to, on a local stack per environment (tests/e2e: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok's fake GPU nodes from specs/platform.yaml, Argo CD's repo-server and application-controller,
Redis), synced from a local git copy of the repository. Nothing is mocked: kwok only plays the kubelet.

Needs `make tools-e2e` (Argo CD, kube-scheduler, kwok; Redis from Debian's packages); without them every test here
skips and says what is missing. Timings are printed as `[timing]` lines (`pytest -s` shows them)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from e2e.argocd import summary
from e2e.cluster import GPU_TYPE_LABEL
from e2e.stack import PROJECT, Stack, missing_tools

pytestmark = pytest.mark.e2e

MISSING = missing_tools()
if MISSING:
    pytest.skip(f"e2e tools not built: run `make tools-e2e` (missing: {', '.join(MISSING)})", allow_module_level=True)
HUB_MISSING = missing_tools(hub=True)


def _timing(name: str, seconds: float) -> None:
    print(f"\n[timing] {name}: {seconds:.1f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def dev():
    stack = Stack(("dev",), hub=not HUB_MISSING)
    try:
        stack.start()
        for k, v in stack.timings.items():
            _timing(f"dev: {k}", v)
        yield stack
    finally:
        stack.stop()


def _items(cp, path: str) -> list[dict]:
    r = cp.request("GET", path)
    assert r.ok, r.message
    return r.body["items"]


def test_the_local_repository_differs_from_the_example_only_in_where_it_points(dev):
    """What Argo CD syncs is the example's rendered overlays, with only the repository URL, the cluster URL (and the
    chart repository) of the platform spec pointing at the local stack."""
    changed = []
    for f in sorted((dev.repo.path / "overlays").rglob("*")):
        if not f.is_file():
            continue
        text = f.read_text()
        for old, new in dev.repo.changes.items():
            text = text.replace(new, old)
        original = PROJECT / f.relative_to(dev.repo.path)
        if not original.is_file() or original.read_text() != text:
            changed.append(str(f.relative_to(dev.repo.path)))
    assert not changed, changed
    assert sorted(p.relative_to(PROJECT) for p in (PROJECT / "overlays").rglob("*") if p.is_file()) == \
        sorted(p.relative_to(dev.repo.path) for p in (dev.repo.path / "overlays").rglob("*") if p.is_file())


def test_bootstrap_dev_syncs_every_application_and_runs_every_training_job_on_its_gpu_type(dev):
    env = dev.environments["dev"]
    cp, argocd = env.cluster.cp, env.argocd
    t0 = time.monotonic()
    apps = dev.bootstrap("dev")
    expected = sorted(apps)
    if HUB_MISSING:
        expected = [a for a in expected if not a.endswith("-jupyterhub")]
        print(f"\n[note] the JupyterHub Application is not awaited: {', '.join(HUB_MISSING)}")
    assert "dev-root" in expected and len(expected) >= 7, expected
    waited = argocd.wait_synced_healthy(expected, timeout=600)
    _timing("dev: bootstrap to every Application Synced/Healthy", waited)
    for name, app in sorted(argocd.applications().items()):
        print(f"  {name}: {'/'.join(summary(app)[:2])}")

    # every Application the root created is one kflowgen rendered, and nothing else
    rendered = {yaml.safe_load(f.read_text())["metadata"]["name"]: yaml.safe_load(f.read_text())["kind"]
                for f in (dev.repo.path / "overlays" / "dev" / "argocd").glob("*.yaml")}
    assert sorted(argocd.applications()) == sorted(n for n, k in rendered.items() if k == "Application")
    projects = [p["metadata"]["name"] for p in _items(cp, "/apis/argoproj.io/v1alpha1/namespaces/argocd/appprojects")]
    assert sorted(projects) == sorted(["default", *(n for n, k in rendered.items() if k == "AppProject")])

    # the training Jobs of dev: all rendered ones exist, completed, each pod on a node of its Job's GPU type
    built = dev.repo.built("dev")
    jobs = [o for o in built if o["kind"] == "Job"]
    assert jobs
    nodes = {n["metadata"]["name"]: n for n in _items(cp, "/api/v1/nodes")}
    gpu_types = dev.platform["gpuTypes"]
    placed: dict[str, int] = {}
    for job in jobs:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        live = cp.get(job)
        assert live.ok, (ns, name, live.message)
        assert (live.body.get("status") or {}).get("succeeded") == 1, (ns, name, live.body.get("status"))
        pods = _items(cp, f"/api/v1/namespaces/{ns}/pods?labelSelector=batch.kubernetes.io/job-name={name}")
        assert pods and all(p["status"]["phase"] == "Succeeded" for p in pods), (ns, name)
        selector = job["spec"]["template"]["spec"].get("nodeSelector") or {}
        want = next((t for t, g in gpu_types.items() if g["nodeSelector"].items() <= selector.items()), "none")
        for pod in pods:
            node = nodes[pod["spec"]["nodeName"]]
            assert node["metadata"]["labels"][GPU_TYPE_LABEL] == want, (ns, name, node["metadata"]["name"], want)
            placed[want] = placed.get(want, 0) + 1
    print(f"\n[result] dev: {len(jobs)} training Jobs completed; pods per GPU type: {placed}")
    _timing("dev: bootstrap scenario", time.monotonic() - t0)

    # the team namespaces, quotas and NAS claims are there, as the platform Applications made them
    for team_ns in sorted({j["metadata"]["namespace"] for j in jobs}):
        assert cp.request("GET", f"/api/v1/namespaces/{team_ns}").ok
        assert _items(cp, f"/api/v1/namespaces/{team_ns}/resourcequotas")
        claims = _items(cp, f"/api/v1/namespaces/{team_ns}/persistentvolumeclaims")
        assert claims and all(c["status"]["phase"] == "Bound" for c in claims), team_ns
    rss = dev.rss_kib()
    print(f"\n[memory] dev stack RSS {sum(rss.values()) / 1024:.0f} MiB: "
          + ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(rss.items(), key=lambda kv: -kv[1])))


def _mentioning(folder: Path) -> list[str]:
    """Live processes whose command line names the folder (a stack's children and what they started: git, helm)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmd and _alive(int(d.name)):
                out.append(f"{d.name}: {cmd[:200]}")
    return out


def test_stop_leaves_no_process_and_no_folder(dev):
    """Runs after the scenarios: tear-down kills every process of the stack and removes its folder (the fixture's
    finalizer then has nothing left to do)."""
    pids, folder = dev.pids(), dev.folder
    assert pids and all(map(_alive, pids))
    dev.stop()
    assert not [p for p in pids if _alive(p)]
    assert not folder.exists()
    assert not _mentioning(folder)


SCRIPT = """
import json, signal, sys, time
# Ctrl-C in a terminal raises KeyboardInterrupt; a shell that started the tests in the background (`cmd &`) makes
# SIGINT ignored for all it starts, so the default is set back here
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
from e2e.stack import Stack
stack = Stack(("dev",), hub=False)
stack.start()
cp_dirs = [str(e.cluster.cp.kubeconfig.parent) for e in stack.environments.values()]
print(json.dumps({"pids": stack.pids(), "dir": str(stack.folder), "cp_dirs": cp_dirs}), flush=True)
try:
    time.sleep(600)
finally:
    stack.stop()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_no_process_left_when_the_tests_are_interrupted_or_killed(sig):
    """A stack (clusters and Argo CD, up, not bootstrapped) in a process that gets Ctrl-C, a CI timeout's SIGTERM
    or SIGKILL: every process of the stack ends (SIGKILL: by the parent-death signal; no cleanup runs then, so
    the folder stays and is removed here)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        started = json.loads(line)
        pids, folder = started["pids"], Path(started["dir"])
        assert len(pids) == 8 and all(map(_alive, pids))  # etcd, apiserver, kcm, scheduler, kwok, redis, 2 argocd
        proc.send_signal(sig)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 30  # the kernel's parent-death signal is asynchronous
        while [p for p in pids if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in pids if _alive(p)]
        assert not _mentioning(folder)
        folders = [folder, *map(Path, started["cp_dirs"])]
        if sig == signal.SIGKILL:
            for f in folders:
                shutil.rmtree(f, ignore_errors=True)
        else:
            assert not [f for f in folders if f.exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in [folder, *map(Path, started["cp_dirs"])] if "started" in locals() else []:
            shutil.rmtree(f, ignore_errors=True)
