"""Talking to the control plane's API server over HTTPS as the `system:masters` admin: requests, discovery of the
resource of a kind, server-side apply, create, get, and waiting for a condition."""
from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from kflowgen.checks.server.errors import ControlPlaneError

FIELD_MANAGER = "kflowgen"
# the Accept that asks the API server for every group's resources in one list (Kubernetes 1.30 on)
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


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


class Client:
    """An API server at `url`, reached with a bearer `token` over TLS (`connect`). Discovery is cached per group
    version. `stats` counts what a dry-run sent (dryrun.dry_run)."""

    def __init__(self) -> None:
        self.url = ""
        self.token = ""
        self._ssl: ssl.SSLContext | None = None
        self._resources: dict[str, dict[str, tuple[str, bool]] | None] = {}
        self.stats: dict[str, int] = {"crds": 0, "namespaces": 0, "objects": 0}  # what dry_run sent
        self._lock = threading.Lock()

    def connect(self, url: str, ca_file: str) -> None:
        self.url = url
        self._ssl = ssl.create_default_context(cafile=ca_file)

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json", timeout: float = 60,
                accept: str = "application/json") -> Response:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": accept, "Content-Type": content_type,
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
        """Until each CRD is Established and its kinds are in the API server's discovery, which catches up after
        Established: a client (this one's path_of, a controller's REST mapper) that looks in between is told the kind
        does not exist."""
        served: set[tuple[str, str]] = set()
        for name in crd_names:
            def established(name=name) -> bool:
                r = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = (r.body.get("status") or {}).get("conditions") or [] if r.ok else []
                if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                    return False
                spec = r.body["spec"]
                served.update((f"{spec['group']}/{v['name']}", spec["names"]["kind"]) for v in spec["versions"]
                              if v.get("served"))
                return True
            self.wait_for(f"CustomResourceDefinition {name} to be Established", established, timeout)
        self.wait_for("the CustomResourceDefinitions' kinds in the API server's discovery",
                      lambda: self.discovered(served), timeout)

    def discovered(self, kinds: set[tuple[str, str]]) -> bool:
        """Whether discovery serves every (apiVersion, kind): each group version's list, read again (resource(), whose
        cache this refreshes) and, where the server aggregates discovery (the list REST mappers read first), the
        aggregated one."""
        self.forget_discovery()
        if not all(self.resource(api_version, kind) for api_version, kind in kinds):
            return False
        if not kinds:
            return True
        r = self.request("GET", "/apis", accept=AGGREGATED_DISCOVERY)
        if not (r.ok and isinstance(r.body, dict) and r.body.get("kind") == "APIGroupDiscoveryList"):
            return True  # a server without aggregated discovery: clients read the lists above
        return kinds <= {(f"{g['metadata']['name']}/{v.get('version')}", (res.get("responseKind") or {}).get("kind"))
                         for g in r.body.get("items") or [] for v in g.get("versions") or []
                         for res in v.get("resources") or []}
