"""The local control plane's processes: etcd, kube-apiserver and (for the tests) kube-controller-manager on loopback
ports in a temporary folder, waited for until ready, and always torn down: `stop()` runs from `__exit__` (on
success, exceptions and Ctrl-C), from an `atexit` hook, and each child is started in its own session with the
kernel's parent-death signal set, so that even a SIGKILLed kflowgen leaves no etcd or API server running."""
from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from kflowgen import tools
from kflowgen.checks.server.certs import make_certificates
from kflowgen.checks.server.client import Client
from kflowgen.checks.server.errors import ControlPlaneError
from kflowgen.diagnostics import Diagnostic

ADMISSION_PLUGINS = "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota"
# clusterrole-aggregation fills the view, edit and admin ClusterRoles a team's RoleBindings name, as on a real cluster
CONTROLLERS = "resourcequota-controller,serviceaccount-controller,namespace-controller,clusterrole-aggregation-controller"
SERVICE_CIDR = "10.0.0.0/24"
ADMIN = "kflowgen-admin"

_LIVE: set["ControlPlane"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for cp in live:
        cp.stop()


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def _etcd_supports_no_fsync(etcd: Path) -> bool:
    out = tools.output_lines([str(etcd), "--version"])
    m = re.search(r"etcd Version: (\d+)\.(\d+)", "\n".join(out))
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (3, 5)


class ControlPlane(Client):
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, in a temporary folder, for one `with` block.

    `url`, `token`, `ca_file` and `kubeconfig` are set once started; `request`/`apply`/`create` (client.Client) talk
    to it as the `system:masters` admin. Start it from a thread that outlives it: the children die with that thread.
    """

    def __init__(self, binaries: dict[str, Path] | None = None, controller_manager: bool = True,
                 timeout: float = 120.0, log: Callable[[str], Any] | None = None):
        super().__init__()
        self.binaries = binaries
        self.controller_manager = controller_manager
        self.timeout = timeout
        self.log = log or (lambda _msg: None)
        self.dir: Path | None = None
        self.ca_file: Path | None = None
        self.kubeconfig: Path | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.started_seconds = 0.0
        self._logs: list[Any] = []

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        binaries = self.binaries or tools.find_all(tools.SERVER)
        if isinstance(binaries, Diagnostic):
            raise ControlPlaneError(f"{binaries.message}; {binaries.hint}")
        self.binaries = binaries
        for attempt in range(3):
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._start(binaries)
                break
            except ControlPlaneError as e:
                self.stop()
                # a free port taken by someone else between choosing it and binding it: choose again
                if attempt == 2 or "address already in use" not in str(e):
                    raise
            except BaseException:
                self.stop()
                raise
        self.started_seconds = time.monotonic() - t0
        self.log(f"kflowgen: local control plane ({tools.KUBERNETES_VERSION}) ready at {self.url} "
                 f"in {self.started_seconds:.1f}s")

    def _start(self, binaries: dict[str, Path]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kflowgen-controlplane-"))
        d = self.dir
        make_certificates(d)
        self.ca_file = d / "ca.crt"
        self.token = secrets.token_hex(24)
        (d / "tokens.csv").write_text(f"{self.token},{ADMIN},{ADMIN},system:masters\n")
        os.chmod(d / "tokens.csv", 0o600)
        client, peer, secure = free_ports(3)
        etcd_url = self._start_etcd(binaries["etcd"], client, peer)
        self.connect(f"https://127.0.0.1:{secure}", str(self.ca_file))
        self._spawn("kube-apiserver", [
            str(binaries["kube-apiserver"]), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}", f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=RBAC", f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--allow-privileged=true",  # as real clusters do, so that Pod Security admission is what refuses
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            "--endpoint-reconciler-type=none", f"--cert-dir={d / 'certs'}", "--profiling=false"])
        self._wait("kube-apiserver", lambda: self.request("GET", "/readyz").status == 200)
        self._write_kubeconfig()
        if self.controller_manager:
            self._start_controller_manager(binaries["kube-controller-manager"])

    def _start_etcd(self, binary: Path, client: int, peer: int) -> str:
        assert self.dir is not None
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = [str(binary), "--name", "kflowgen", "--data-dir", str(self.dir / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"kflowgen=http://127.0.0.1:{peer}", "--log-level", "warn"]
        if _etcd_supports_no_fsync(binary):
            etcd.append("--unsafe-no-fsync")
        self._spawn("etcd", etcd)
        self._wait("etcd", lambda: _http_ok(f"{etcd_url}/health"))
        return etcd_url

    def _write_kubeconfig(self) -> None:
        assert self.dir is not None
        self.kubeconfig = self.dir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kflowgen",
            "clusters": [{"name": "kflowgen", "cluster": {"server": self.url,
                                                         "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": ADMIN, "user": {"token": self.token}}],
            "contexts": [{"name": "kflowgen", "context": {"cluster": "kflowgen", "user": ADMIN}}]}))
        os.chmod(self.kubeconfig, 0o600)

    def _start_controller_manager(self, binary: Path) -> None:
        assert self.dir is not None
        d, kubeconfig = self.dir, f"--kubeconfig={self.kubeconfig}"
        self._spawn("kube-controller-manager", [
            str(binary), kubeconfig,
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            f"--controllers={CONTROLLERS}", "--leader-elect=false", "--secure-port=0",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}"])
        # the serviceaccount controller making the default namespace's ServiceAccount shows it is working
        self._wait("kube-controller-manager",
                   lambda: self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default").ok)

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.dir is not None
        logf = open(self.dir / f"{name}.log", "wb")
        self._logs.append(logf)
        self.processes[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir,
            start_new_session=True, preexec_fn=tools.ends_with_us())

    def _tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.dir / f"{name}.log").read_text(errors="replace")  # type: ignore[operator]
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            proc = self.processes[name]
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with status {proc.returncode}:\n{self._tail(name)}")
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name} not ready after {self.timeout:.0f}s:\n{self._tail(name)}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self) -> None:
        """Kill every child's process group, reap it and remove the folder. Safe to call more than once."""
        with self._lock:
            for proc in reversed(list(self.processes.values())):
                if proc.returncode is not None:
                    continue  # reaped already: its pid may belong to someone else by now
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # throw-away state: nothing to shut down gracefully
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in self._logs:
                f.close()
            self._logs.clear()
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)
