"""Kueue's real controller for one environment's local cluster, where the platform spec queues training: the binary of
`make tools-e2e` (`go install sigs.k8s.io/kueue/cmd/kueue`), run out of cluster against the cluster's kubeconfig.

What Kueue's install manifests would make, from the module's own kustomizations (.tools/share/kueue/<version>, copied
from the Go module cache by `make tools-e2e`), built with the project's kustomize: its CRDs (with their conversion
webhook) and its mutating and validating webhook configurations, each webhook's `clientConfig.service` rewritten to
`url: https://127.0.0.1:<port><path>` with the CA of the cluster's certificate (made here, `make_certificate`); namespace `kueue-system`. The CRDs are
installed before the controller starts; the webhook configurations once it is ready (its /readyz waits for its
webhook server), so no request meets a webhook that is not listening yet.

Its Configuration (config.kueue.x-k8s.io/v1beta2): leader election off, internal certificate management off (the
webhook server serves the certificate made here, on 127.0.0.1), health, metrics and webhook on loopback ports,
integrations `batch/job` (kflowgen's trials) and, where the stack runs Trainer (e2e.trainer),
`trainer.kubeflow.org/trainjob` (distributed experiments), the visibility API server off (an extension API server nothing here
registers, which would read its certificate from `/visibility`).

With internal certificate management off, Kueue reads its metrics server's certificate from a fixed path,
`/etc/kueue/metrics/certs` (its Deployment mounts a Secret there). Out of cluster, the controller runs in a private
mount namespace (util-linux `unshare`; with a user namespace when not root) in which /etc shows the host's entries and
that folder: nothing outside the stack's folder is written."""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from kflowgen.checks.server import ControlPlane
from kflowgen.checks.server.process import free_ports

from e2e.procs import Processes, StackError

VERSION = "v0.19.2"
API = "kueue.x-k8s.io/v1beta2"
NAMESPACE = "kueue-system"
METRICS_CERTS = "/etc/kueue/metrics/certs"  # fixed in Kueue's cmd/kueue/main.go when it does not manage certificates

# the mount namespace: the host's /etc stays readable under the view's symlinks, and the view is mounted on /etc
MOUNT_SCRIPT = 'set -e; mount --bind /etc "$1"; mount --bind "$2" /etc; shift 2; exec "$@"'


def unshare_argv() -> list[str]:
    """`unshare` for a private mount namespace (and, when not root, a user namespace mapping this user to root)."""
    argv = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        argv[1:1] = ["--user", "--map-root-user"]
    return argv


def mount_namespace_problem() -> str | None:
    """Why the controller cannot get its private mount namespace here, or None (tried once, with a bind mount)."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is missing"
    try:
        out = subprocess.run([*unshare_argv(), "sh", "-c", "mount --bind /tmp /tmp"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if out.returncode:
        return f"no private mount namespace for Kueue's controller (unshare: {out.stderr.strip()[:200]})"
    return None


def _openssl(folder: Path, *args: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise StackError(f"openssl {' '.join(args)} failed: {out.stderr.strip()}")


def make_certificate(folder: Path) -> bytes:
    """A throw-away CA and a serving certificate for 127.0.0.1 (tls.crt, tls.key in folder); the CA's PEM. One per
    cluster: the webhook servers of Kueue, JobSet and Trainer (e2e.trainer) all serve it."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(folder, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=kflowgen e2e webhook CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl(folder, "req", "-new", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=e2e-webhooks")
    (folder / "tls.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl(folder, "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(secrets.token_bytes(8), "big")), "-days", "2", "-out", "tls.crt",
             "-extfile", "tls.ext")
    return (folder / "ca.crt").read_bytes()


def to_url(objects: list[dict], port: int, ca: bytes) -> list[dict]:
    """Every webhook's and conversion webhook's `clientConfig.service` (path kept) made a loopback URL, with caBundle."""
    bundle = base64.b64encode(ca).decode()

    def rewrite(client: dict) -> None:
        service = client.pop("service")
        client["url"] = f"https://127.0.0.1:{port}{service.get('path', '/')}"
        client["caBundle"] = bundle

    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            webhook = ((obj["spec"].get("conversion") or {}).get("webhook") or {})
            if "service" in (webhook.get("clientConfig") or {}):
                rewrite(webhook["clientConfig"])
        elif obj["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for hook in obj["webhooks"]:
                rewrite(hook["clientConfig"])
    return objects


def kustomize_built(tools: Path, folder: Path) -> list[dict]:
    """The objects of a kustomization (an upstream module's component copied to .tools/share), built by kustomize."""
    out = subprocess.run([str(tools / "kustomize"), "build", str(folder)], capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise StackError(f"kustomize build {folder} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if isinstance(d, dict)]


def apply(cp: ControlPlane, obj: dict, who: str) -> None:
    """Apply one object (once more after refreshing discovery when its kind is new to the client)."""
    r = cp.apply(obj)
    if r.status == 404 and "no resource" in r.message:
        cp.forget_discovery()
        r = cp.apply(obj)
    if not r.ok:
        raise StackError(f"{who}: {obj['kind']} {obj['metadata']['name']}: {r.message}")


def https_answers(port: int, ca: bytes) -> bool:
    """A webhook server on 127.0.0.1:port answers over a connection verified with the cluster's CA."""
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=ssl.create_default_context(cadata=ca.decode()),
                               timeout=2).close()
    except urllib.error.HTTPError:
        pass  # an answer (404: no handler at /) over a verified connection
    return True


class Kueue:
    """One environment's Kueue controller; its process is one of the cluster's (`procs`), stopped with them."""

    def __init__(self, cp: ControlPlane, procs: Processes, folder: Path, tools: Path, share: Path, certs: Path,
                 ca: bytes, frameworks: tuple[str, ...] = ("batch/job",)):
        self.cp, self.procs, self.folder, self.tools, self.share = cp, procs, folder, tools, share
        self.certs, self.ca, self.frameworks = certs, ca, frameworks
        self.webhook_configurations: list[dict] = []
        self.timings: dict[str, float] = {}

    def _built(self, component: str) -> list[dict]:
        return kustomize_built(self.tools, self.share / component)

    def start(self) -> None:
        t0 = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        certs, ca = self.certs, self.ca
        health, metrics, webhook = free_ports(3)
        crds = to_url(self._built("crd"), webhook, ca)
        self.webhook_configurations = [o for o in to_url(self._built("webhook"), webhook, ca)
                                       if o["kind"].endswith("WebhookConfiguration")]
        for o in self.webhook_configurations:  # named as Kueue's release names them (beside JobSet's, e2e.trainer)
            o["metadata"]["name"] = "kueue-" + o["metadata"]["name"]
        self._apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for crd in crds:
            self._apply(crd)
        self.cp.wait_established([c["metadata"]["name"] for c in crds])
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration", "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
            "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
            "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "clientConnection": {"qps": 300, "burst": 500},
            "integrations": {"frameworks": list(self.frameworks)},
            "featureGates": {"VisibilityOnDemand": False},
        }
        config_file = self.folder / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        # the /etc view of the mount namespace: the host's entries (through host-etc, where /etc is bound first) and
        # kueue/metrics/certs with the certificate
        view, host_etc = self.folder / "etc", self.folder / "host-etc"
        host_etc.mkdir()
        (view / "kueue" / "metrics" / "certs").mkdir(parents=True)
        for name in os.listdir("/etc"):
            if name != "kueue":
                (view / name).symlink_to(host_etc / name)
        for f in ("tls.crt", "tls.key"):
            shutil.copy(certs / f, view / "kueue" / "metrics" / "certs" / f)
        self.procs.spawn("kueue", [
            *unshare_argv(), "sh", "-c", MOUNT_SCRIPT, "kueue-mounts", str(host_etc), str(view),
            str(self.tools / "kueue"), f"--config={config_file}", f"--kubeconfig={self.cp.kubeconfig}",
            "--zap-log-level=info"])

        def ready() -> bool:  # ready, and its webhook server answers with the certificate, as the API server calls it
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                return r.status == 200 and https_answers(webhook, ca)

        self.procs.wait_ready("kueue", ready, 180)
        for obj in self.webhook_configurations:
            self._apply(obj)
        self.timings["kueue"] = time.monotonic() - t0

    def _apply(self, obj: dict) -> None:
        apply(self.cp, obj, "Kueue")

