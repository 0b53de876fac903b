"""A throw-away local Kubernetes control plane, and server-side dry-run of built manifests against it.

`kflowgen validate --server` starts etcd, kube-apiserver (and, for the tests, kube-controller-manager) on loopback
ports in a temporary folder, installs the CRDs of the platform's `validation.crds`, and applies every environment's
built objects with server-side apply, `dryRun=All` and `fieldValidation=Strict`. Every rejection becomes a KF405
error and every API server warning a KF406 warning, per object.

The binaries are built from source at pinned versions by `kflowgen tools install --server` (kflowgen.tools: `go
install` inside the wrapper module `tools/apiserver`, whose replace directives make `k8s.io/kubernetes` buildable
outside its own repository).

The control plane is always torn down: `stop()` runs from `__exit__` (on success, exceptions and Ctrl-C), from an
`atexit` hook, and each child is started in its own session with the kernel's parent-death signal set, so that even
a SIGKILLed kflowgen leaves no etcd or API server running.
"""
from __future__ import annotations

import atexit
import json
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
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from kflowgen import tools
from kflowgen.diagnostics import Diagnostic, error, warning

FIELD_MANAGER = "kflowgen"
ADMISSION_PLUGINS = "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota"
CONTROLLERS = "resourcequota-controller,serviceaccount-controller,namespace-controller"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
ADMIN = "kflowgen-admin"

# Codes this module reports (titles for diagnostics.CODES, which lives elsewhere):
CODE_TITLES = {
    "KF405": "built object rejected by the API server (server-side dry-run)",
    "KF406": "API server warning for a built object (server-side dry-run)",
}


# --- the control plane --------------------------------------------------------------------------------------------

class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message holds the failing component's last log lines."""


_LIVE: set["ControlPlane"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for cp in live:
        cp.stop()


def _free_ports(n: int) -> list[int]:
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


def _openssl(folder: Path, *args: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {out.stderr.strip()}")


def make_certificates(folder: Path) -> None:
    """A throw-away CA, the API server's serving certificate for 127.0.0.1, and the service-account signing key."""
    if not shutil.which("openssl"):
        raise ControlPlaneError("openssl is needed to make the control plane's certificates")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(folder, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=kflowgen throw-away CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash")
    _openssl(folder, "req", "-new", *ec, "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver")
    (folder / "apiserver.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:{SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl(folder, "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(secrets.token_bytes(8), "big")), "-days", "2", "-out", "apiserver.crt",
             "-extfile", "apiserver.ext")
    _openssl(folder, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key")
    _openssl(folder, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")


@dataclass
class Response:
    status: int
    body: Any  # parsed JSON, or the raw text when it is not JSON
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body.get("reason") or self.body)
        return str(self.body).strip() or f"HTTP {self.status}"

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""


_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


def _warnings(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        m = _WARNING.match(v)
        out.append(re.sub(r"\\(.)", r"\1", m.group(1)) if m else v.strip())
    return out


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, in a temporary folder, for one `with` block.

    `url`, `token`, `ca_file` and `kubeconfig` are set once started; `request`/`apply`/`create` talk to it as the
    `system:masters` admin. Start it from a thread that outlives it: the children die with that thread.
    """

    def __init__(self, binaries: dict[str, Path] | None = None, controller_manager: bool = True,
                 timeout: float = 120.0, log: Callable[[str], Any] | None = None):
        self.binaries = binaries
        self.controller_manager = controller_manager
        self.timeout = timeout
        self.log = log or (lambda _msg: None)
        self.dir: Path | None = None
        self.url = ""
        self.token = ""
        self.ca_file: Path | None = None
        self.kubeconfig: Path | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.started_seconds = 0.0
        self._logs: list[Any] = []
        self._ssl: ssl.SSLContext | None = None
        self._resources: dict[str, dict[str, tuple[str, bool]] | None] = {}
        self.stats: dict[str, int] = {"crds": 0, "namespaces": 0, "objects": 0}  # what dry_run sent
        self._lock = threading.Lock()

    # lifecycle

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
        client, peer, secure = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = [str(binaries["etcd"]), "--name", "kflowgen", "--data-dir", str(d / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"kflowgen=http://127.0.0.1:{peer}", "--log-level", "warn"]
        if self._etcd_supports_no_fsync(binaries["etcd"]):
            etcd.append("--unsafe-no-fsync")
        self._spawn("etcd", etcd)
        self._wait("etcd", lambda: self._http_ok(f"{etcd_url}/health"))
        self.url = f"https://127.0.0.1:{secure}"
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
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
        self.kubeconfig = d / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kflowgen",
            "clusters": [{"name": "kflowgen", "cluster": {"server": self.url,
                                                         "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": ADMIN, "user": {"token": self.token}}],
            "contexts": [{"name": "kflowgen", "context": {"cluster": "kflowgen", "user": ADMIN}}]}))
        os.chmod(self.kubeconfig, 0o600)
        if self.controller_manager:
            kubeconfig = f"--kubeconfig={self.kubeconfig}"
            self._spawn("kube-controller-manager", [
                str(binaries["kube-controller-manager"]), kubeconfig,
                f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
                f"--controllers={CONTROLLERS}", "--leader-elect=false", "--secure-port=0",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}"])
            # the serviceaccount controller making the default namespace's ServiceAccount shows it is working
            self._wait("kube-controller-manager",
                       lambda: self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default").ok)

    @staticmethod
    def _etcd_supports_no_fsync(etcd: Path) -> bool:
        out = tools.output_lines([str(etcd), "--version"])
        m = re.search(r"etcd Version: (\d+)\.(\d+)", "\n".join(out))
        return bool(m) and (int(m.group(1)), int(m.group(2))) >= (3, 5)

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

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200

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

    # talking to the API server

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json", timeout: float = 60) -> Response:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json", "Content-Type": content_type,
            "User-Agent": "kflowgen"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                status, raw, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, raw, headers = e.code, e.read(), e.headers
        text = raw.decode(errors="replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return Response(status, parsed, _warnings(headers.get_all("Warning") or []))

    def resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural, namespaced) of a kind, from discovery (cached per group version; reset after CRD installs)."""
        with self._lock:
            cached = self._resources.get(api_version, ...)
        if cached is ...:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            r = self.request("GET", path)
            cached = ({res["kind"]: (res["name"], bool(res.get("namespaced")))
                       for res in r.body.get("resources", []) if "/" not in res["name"]}
                      if r.ok and isinstance(r.body, dict) else None)
            with self._lock:
                self._resources[api_version] = cached
        return cached.get(kind) if cached else None

    def forget_discovery(self) -> None:
        with self._lock:
            self._resources.clear()

    def path_of(self, obj: dict, collection: bool = False) -> str | None:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        res = self.resource(api_version, kind)
        if res is None:
            return None
        plural, namespaced = res
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        meta = obj.get("metadata") or {}
        if namespaced:
            base += f"/namespaces/{urllib.parse.quote(str(meta.get('namespace') or 'default'), safe='')}"
        base += f"/{plural}"
        return base if collection else f"{base}/{urllib.parse.quote(str(meta.get('name', '')), safe='')}"

    def apply(self, obj: dict, text: str | None = None, dry_run: bool = False) -> Response:
        """Server-side apply with strict field validation (the YAML text, when given, is sent as written so that
        duplicate fields are caught too)."""
        path = self.path_of(obj)
        if path is None:
            return Response(404, {"message": f"the API server has no resource for {obj.get('apiVersion')} "
                                             f"{obj.get('kind')} (is its CRD installed?)", "reason": "NotFound"})
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        body = text if text is not None else json.dumps(obj)
        return self.request("PATCH", path, body, query, content_type="application/apply-patch+yaml")

    def create(self, obj: dict, dry_run: bool = False) -> Response:
        path = self.path_of(obj, collection=True)
        if path is None:
            return Response(404, {"message": f"no resource for {obj.get('apiVersion')} {obj.get('kind')}"})
        query = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
        return self.request("POST", path, obj, query)

    def get(self, obj: dict) -> Response:
        path = self.path_of(obj)
        return self.request("GET", path) if path else Response(404, None)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def wait_established(self, crd_names: Iterable[str], timeout: float = 60) -> None:
        for name in crd_names:
            def established(name=name) -> bool:
                r = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = (r.body.get("status") or {}).get("conditions") or [] if r.ok else []
                return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)
            self.wait_for(f"CustomResourceDefinition {name} to be Established", established, timeout)
        self.forget_discovery()

    # server-side validation of built manifests

    def dry_run(self, objects_by_overlay: dict[str, str], crd_files: list[Path], jobs: int = 4,
                all_crds: bool = False) -> list[Diagnostic]:
        """Install the CRDs, then per environment: create its Namespaces for real, and apply every other object
        with server-side dry-run and strict field validation. Returns KF405 errors and KF406 warnings.

        Only the CRDs defining a kind the built objects use are installed, unless `all_crds` (establishing a large
        CRD takes seconds: Argo CD's ApplicationSet alone is 1.4 MB)."""
        diags: list[Diagnostic] = []
        parsed: dict[str, list[tuple[str, dict]]] = {}
        for overlay in sorted(objects_by_overlay):
            try:
                parsed[overlay] = documents(objects_by_overlay[overlay])
            except yaml.YAMLError as e:
                diags.append(error(overlay, (0, 0), "KF405", f"built output is not valid YAML: {e}"))
        used = {(str(obj.get("apiVersion", "")).rpartition("/")[0], obj.get("kind"))
                for docs in parsed.values() for _, obj in docs}
        crds = []
        for f in crd_files:
            try:
                docs = documents(Path(f).read_text())
            except (OSError, yaml.YAMLError) as e:
                diags.append(error(str(f), (0, 0), "KF903", f"CRD file cannot be read: {e}"))
                continue
            crds += [(str(f), text, obj) for text, obj in docs if obj.get("kind") == "CustomResourceDefinition"
                     and (all_crds or _defines(obj) in used)]
        by_name = {str((obj.get("metadata") or {}).get("name")): item for item in crds for obj in [item[2]]}
        diags += self._apply_crds(list(by_name.values()))  # a later file wins for a CRD two files define
        by_env: dict[str, list[str]] = {}
        for overlay in parsed:
            by_env.setdefault(environment_of(overlay), []).append(overlay)
        for env in sorted(by_env):
            diags += self._dry_run_environment({o: parsed[o] for o in by_env[env]}, jobs)
        return diags

    def _apply_crds(self, crds: list[tuple[str, str, dict]]) -> list[Diagnostic]:
        diags, names = [], []
        self.stats["crds"] += len(crds)
        for where, text, obj in crds:
            r = self.apply(obj, text)
            diags += _diagnostics(where, obj, r)
            if r.ok:
                names.append(obj["metadata"]["name"])
        try:
            self.wait_established(names)
        except ControlPlaneError as e:
            diags.append(error(crds[0][0] if crds else "CRDs", (0, 0), "KF405", str(e)))
        return diags

    def _dry_run_environment(self, overlays: dict[str, list[tuple[str, dict]]], jobs: int) -> list[Diagnostic]:
        """One environment. Only CRDs and Namespaces are persisted; a Namespace is applied again, with the same
        field manager, by each environment that has it, so its labels are that environment's."""
        diags: list[Diagnostic] = []
        items = [(overlay, text, obj) for overlay, docs in overlays.items() for text, obj in docs]
        diags += self._apply_crds([i for i in items if i[2].get("kind") == "CustomResourceDefinition"])
        namespaces = [i for i in items if i[2].get("kind") == "Namespace" and i[2].get("apiVersion") == "v1"]
        declared = {(i[2].get("metadata") or {}).get("name") for i in namespaces}
        rest = [i for i in items if i[2].get("kind") not in ("CustomResourceDefinition", "Namespace")]
        self.stats["namespaces"] += len(namespaces)
        self.stats["objects"] += len(rest)
        for overlay, text, obj in namespaces:
            diags += _diagnostics(overlay, obj, self.apply(obj, text))
        referenced = sorted({ns for _, _, obj in rest if (ns := (obj.get("metadata") or {}).get("namespace"))
                             and isinstance(ns, str)} - declared)
        for ns in referenced:  # e.g. argocd: exists in the real cluster, not declared by the overlays
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

        def one(item: tuple[str, str, dict]) -> list[Diagnostic]:
            overlay, text, obj = item
            if not (obj.get("metadata") or {}).get("name"):
                return [error(overlay, (0, 0), "KF405", f"{identity(obj)}: object has no metadata.name")]
            return _diagnostics(overlay, obj, self.apply(obj, text, dry_run=True))

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for found in pool.map(one, rest):
                diags += found
        return diags


def environment_of(overlay: str) -> str:
    parts = overlay.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "overlays" else overlay


def documents(stream: str) -> list[tuple[str, dict]]:
    """The documents of a YAML stream, each as its own text and parsed; empty documents are skipped."""
    out = []
    for chunk in re.split(r"^---[ \t]*(?:#.*)?$", stream, flags=re.M):
        if not chunk.strip():
            continue
        obj = yaml.load(chunk, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if isinstance(obj, dict):
            out.append((chunk, obj))
    return out


def _defines(crd: dict) -> tuple[str, str]:
    spec = crd.get("spec") or {}
    return str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))


def identity(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or "?"
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def _diagnostics(where: str, obj: dict, r: Response) -> list[Diagnostic]:
    ident = identity(obj)
    out = [warning(where, (0, 0), "KF406", f"{ident}: {w}", "the API server warns about this object")
           for w in r.warnings]
    if r.ok:
        return out
    message = " ".join(r.message.split())
    if r.status >= 500 and message.startswith(_TYPED_PATCH):
        # a field the schema does not declare, in server-side apply: the API server answers 500, not 400
        # (kubernetes/kubernetes#122480, #139253); it is the object's fault, not the server's
        out.append(error(where, (0, 0), "KF405", f"{ident}: {message}",
                         "rejected by the API server (strict field validation: field not in the schema)"))
    elif r.status >= 500:
        out.append(error(where, (0, 0), "KF902", f"{ident}: the local API server failed: {message}",
                         f"HTTP {r.status}; an API server problem, not necessarily the object's"))
    else:
        out.append(error(where, (0, 0), "KF405", f"{ident}: {message}",
                         f"rejected by the API server (HTTP {r.status}{' ' + r.reason if r.reason else ''})"))
    return out


_TYPED_PATCH = "failed to create typed patch object"


# --- what `kflowgen validate --server` runs -----------------------------------------------------------------------

def check(root: Path, crd_files: list[Path], built: dict[str, str], jobs: int = 4,
          log: Callable[[str], Any] | None = None) -> tuple[list[Diagnostic], list[str]]:
    """Start a control plane without the controller manager, install the CRDs (verify.crd_files: those kflowgen ships
    and the platform's own), dry-run every built overlay, tear it down. Returns the findings and a line for the
    command's summary (none when the control plane did not run)."""
    binaries = tools.find_all(tools.SERVER)
    if isinstance(binaries, Diagnostic):
        return [binaries], []
    try:
        with ControlPlane(binaries, controller_manager=False, log=log) as cp:
            t0 = time.monotonic()
            diags = cp.dry_run(built, crd_files, jobs)
            n = cp.stats["objects"] + cp.stats["namespaces"]
            return diags, [f"{n} objects sent to kube-apiserver {tools.KUBERNETES_VERSION} (server-side dry-run, "
                           f"strict field validation, {cp.stats['crds']} CRDs installed) in "
                           f"{time.monotonic() - t0:.1f}s"]
    except (ControlPlaneError, OSError) as e:  # OSError: urllib's URLError, e.g. the API server died mid-run
        return [error("kube-apiserver", (0, 0), "KF902", f"the local control plane failed: {e}")], []
