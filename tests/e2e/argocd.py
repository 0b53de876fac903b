"""Real Argo CD for one environment's local cluster, run out of cluster: Redis, the repo-server and the
application-controller (the `argocd` multi-call binary, chosen by ARGOCD_BINARY_NAME), the controller reaching its
own cluster as `https://kubernetes.default.svc` through ARGOCD_FAKE_IN_CLUSTER and the cluster's kubeconfig.

`prepare()` creates what Argo CD's install manifests would (the namespace, the CRDs applied server-side, argocd-cm,
argocd-secret, the `default` AppProject) and registers the environment's cluster under the URL the platform spec
gives it; `bootstrap()` is then the README's step for a platform team: apply `overlays/<env>/argocd` once, and the
root Application syncs the rest (projects first: Argo CD looks again at an Application whose project did not
exist only at its next periodic refresh)."""
from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
from pathlib import Path

import yaml

from kflowgen.checks.server import ControlPlane

from e2e.procs import Processes, StackError, http_ok, port_open, wait_until
from kflowgen.checks.server.process import free_ports

PROJECT = Path(__file__).resolve().parents[2]
CRDS = PROJECT / "kflowgen" / "upstream" / "argo-cd" / "v3.6.2"
APPS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications"

# Argo CD's repo-server calls this for every revision it resolves, even with GPG off (ARGOCD_GPG_ENABLED=false): it
# verifies signatures, which these tests do not use, so it reports none.
GIT_VERIFY_WRAPPER = """#!/bin/sh
# kflowgen e2e: stands in for Argo CD's hack/git-verify-wrapper.sh; signatures are not verified here.
if test "$1" = ""; then
  echo "Wrong usage of git-verify-wrapper.sh" >&2
  exit 1
fi
exit 0
"""

# The part of Argo CD's default argocd-cm that matters here: leave out kinds that change all the time (kwok renews
# every node's Lease) and that nobody declares in Git.
RESOURCE_EXCLUSIONS = """- apiGroups: ["", "discovery.k8s.io"]
  kinds: [Endpoints, EndpointSlice]
- apiGroups: [coordination.k8s.io]
  kinds: [Lease]
- apiGroups: [authentication.k8s.io, authorization.k8s.io]
  kinds: [SelfSubjectReview, TokenReview, LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview,
          SubjectAccessReview]
- apiGroups: [certificates.k8s.io]
  kinds: [CertificateSigningRequest]
"""


class ArgoCD:
    def __init__(self, env: str, cp: ControlPlane, folder: Path, tools: Path, namespace: str = "argocd",
                 app_resync_seconds: int = 20):
        self.env, self.cp, self.folder, self.tools, self.namespace = env, cp, folder, tools, namespace
        self.app_resync_seconds = app_resync_seconds
        self.procs = Processes(folder)
        self.timings: dict[str, float] = {}

    # processes

    def start(self) -> None:
        t0 = time.monotonic()
        for sub in ("bin", "home", "tmp"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        wrapper = self.folder / "bin" / "git-verify-wrapper.sh"
        wrapper.write_text(GIT_VERIFY_WRAPPER)
        wrapper.chmod(0o755)
        redis_port, repo_port, repo_metrics, ctrl_metrics = free_ports(4)
        redis = shutil.which("redis-server")
        if not redis:
            raise StackError("redis-server is not installed (apt-get install -y redis-server)")
        self.procs.spawn("redis", [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.folder / "tmp")])
        self.procs.wait_ready("redis", lambda: port_open(redis_port), 30)
        env = {"PATH": f"{self.folder / 'bin'}:{self.tools}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(self.folder / "home"), "TMPDIR": str(self.folder / "tmp"),
               "ARGOCD_GPG_ENABLED": "false", "ARGOCD_ASK_PASS_SOCK": str(self.folder / "tmp" / "askpass.sock"),
               "GIT_CONFIG_NOSYSTEM": "1"}
        argocd = str(self.tools / "argocd")
        self.procs.spawn("argocd-repo-server", [
            argocd, "--disable-tls", "--client-ca-path=", "--address=127.0.0.1", f"--port={repo_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={repo_metrics}", f"--redis=127.0.0.1:{redis_port}",
            "--loglevel=info", "--parallelismlimit=4"],
            env={**env, "ARGOCD_BINARY_NAME": "argocd-repo-server"})
        self.procs.wait_ready("argocd-repo-server", lambda: http_ok(f"http://127.0.0.1:{repo_metrics}/metrics"), 90)
        self.procs.spawn("argocd-application-controller", [
            argocd, f"--kubeconfig={self.cp.kubeconfig}", f"--namespace={self.namespace}",
            f"--redis=127.0.0.1:{redis_port}", f"--repo-server=127.0.0.1:{repo_port}", "--repo-server-plaintext",
            f"--metrics-port={ctrl_metrics}", f"--app-resync={self.app_resync_seconds}", "--loglevel=info",
            "--app-resync-jitter=5", "--status-processors=4", "--operation-processors=4",
            "--self-heal-timeout-seconds=2", "--persist-resource-health=true"],
            env={**env, "ARGOCD_BINARY_NAME": "argocd-application-controller", "ARGOCD_FAKE_IN_CLUSTER": "true",
                 "KUBECONFIG": str(self.cp.kubeconfig)})
        self.procs.wait_ready("argocd-application-controller",
                              lambda: http_ok(f"http://127.0.0.1:{ctrl_metrics}/healthz"), 90)
        self.timings["argocd"] = time.monotonic() - t0

    def stop(self) -> None:
        self.procs.stop()

    # what Argo CD's installation would have made

    def prepare(self, cluster_name: str, cluster_url: str) -> None:
        """Argo CD's namespace, CRDs (server-side: the Application CRD is too large for client-side apply),
        argocd-cm, argocd-secret and the `default` AppProject; and the environment's cluster, registered in Argo CD
        under the URL the platform spec gives (its `cluster`), with the API server's CA and admin token."""
        ns = self.namespace
        self._apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        names = []
        for f in sorted(CRDS.glob("*.json")):
            crd = json.loads(f.read_text())
            self._apply(crd)
            names.append(crd["metadata"]["name"])
        self.cp.wait_established(names)
        labels = {"app.kubernetes.io/part-of": "argocd"}
        self._apply({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "argocd-cm", "namespace": ns,
                                  "labels": {**labels, "app.kubernetes.io/name": "argocd-cm"}},
                     "data": {"resource.exclusions": RESOURCE_EXCLUSIONS,
                              "timeout.reconciliation": f"{self.app_resync_seconds}s"}})
        self._apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": "argocd-secret", "namespace": ns,
                                  "labels": {**labels, "app.kubernetes.io/name": "argocd-secret"}},
                     "stringData": {"server.secretkey": secrets.token_urlsafe(32)}})
        self._apply({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                     "metadata": {"name": "default", "namespace": ns},
                     "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                              "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}})
        config = {"bearerToken": self.cp.token,
                  "tlsClientConfig": {"caData": base64.b64encode(self.cp.ca_file.read_bytes()).decode()}}
        self._apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": f"cluster-{cluster_name}", "namespace": ns,
                                  "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
                     "stringData": {"name": cluster_name, "server": cluster_url, "config": json.dumps(config)}})

    def bootstrap(self, argocd_folder: Path) -> list[str]:
        """The README's bootstrap: apply the AppProjects of overlays/<env>/argocd, then every manifest there (here with
        server-side apply, as `kubectl apply --server-side -f` does). Returns the Applications' names."""
        apps = []
        files = sorted(argocd_folder.glob("*.yaml"))
        for f in [f for f in files if f.name.startswith("appproject.")] + files:
            for obj in yaml.safe_load_all(f.read_text()):
                if isinstance(obj, dict):
                    self._apply(obj)
                    if obj["kind"] == "Application":
                        apps.append(obj["metadata"]["name"])
        return apps

    def _apply(self, obj: dict) -> None:
        r = self.cp.apply(obj)
        if r.status == 404 and "no resource" in r.message:
            self.cp.forget_discovery()
            r = self.cp.apply(obj)
        if not r.ok:
            raise StackError(f"{obj['kind']} {obj['metadata']['name']}: {r.message}")

    # reading Argo CD's view

    def applications(self) -> dict[str, dict]:
        r = self.cp.request("GET", APPS.format(ns=self.namespace))
        return {a["metadata"]["name"]: a for a in r.body.get("items", [])} if r.ok else {}

    def refresh(self, name: str, hard: bool = False) -> None:
        """Ask Argo CD to look at Git again now (what the UI's Refresh button does)."""
        body = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard" if hard else "normal"}}}
        self.cp.request("PATCH", f"{APPS.format(ns=self.namespace)}/{name}", body,
                        content_type="application/merge-patch+json")

    def wait_synced_healthy(self, names: list[str] | None = None, timeout: float = 300) -> float:
        """Wait until every named Application (default: all) is Synced and Healthy; returns the seconds waited.
        One exception, said where it is used: an Application whose only resource not Healthy is a
        HorizontalPodAutoscaler waiting for metrics (no metrics server runs here) counts as Healthy."""
        def done() -> bool:
            apps = self.applications()
            wanted = names or list(apps)
            return bool(wanted) and all(n in apps and settled(apps[n]) for n in wanted)

        return wait_until(f"Argo CD Applications of {self.env} Synced/Healthy", done, timeout, interval=1,
                          describe=self.describe)

    def describe(self) -> str:
        lines = []
        for name, app in sorted(self.applications().items()):
            sync, health, message = summary(app)
            lines.append(f"  {name}: {sync}/{health} {message}")
        return "\n".join(lines) + "\n--- controller log:\n" + self.procs.log("argocd-application-controller", 15)


def summary(app: dict) -> tuple[str, str, str]:
    """(sync status, health status, what went wrong: the operation's message and the Application's conditions)."""
    st = app.get("status") or {}
    op = st.get("operationState") or {}
    problems = [f"{c.get('type')}: {c.get('message')}" for c in st.get("conditions") or []]
    if op.get("phase") in ("Failed", "Error"):
        problems.insert(0, f"sync {op['phase']}: {op.get('message')}")
    return ((st.get("sync") or {}).get("status", "?"), (st.get("health") or {}).get("status", "?"),
            "; ".join(problems))


def waiting_autoscalers(app: dict) -> list[str]:
    """The HorizontalPodAutoscalers that keep an Application Progressing, when they are all that does."""
    resources = (app.get("status") or {}).get("resources") or []
    unhealthy = [r for r in resources if (r.get("health") or {}).get("status", "Healthy") != "Healthy"]
    if unhealthy and all(r["kind"] == "HorizontalPodAutoscaler" and r["health"]["status"] == "Progressing"
                         for r in unhealthy):
        return [f"{r['namespace']}/{r['name']}" for r in unhealthy]
    return []


def settled(app: dict) -> bool:
    sync, health, _ = summary(app)
    return sync == "Synced" and (health == "Healthy" or (health == "Progressing" and bool(waiting_autoscalers(app))))
