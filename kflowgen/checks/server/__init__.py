"""A throw-away local Kubernetes control plane, and server-side dry-run of built manifests against it.

`kflowgen validate --server` starts etcd, kube-apiserver (and, for the tests, kube-controller-manager) on loopback
ports in a temporary folder, installs the CRDs of the platform's `validation.crds`, and applies every environment's
built objects with server-side apply, `dryRun=All` and `fieldValidation=Strict`. Every rejection becomes a KF405
error and every API server warning a KF406 warning, per object.

The binaries are built from source at pinned versions by `kflowgen tools install --server` (kflowgen.tools: `go
install` inside the wrapper module `tools/apiserver`, whose replace directives make `k8s.io/kubernetes` buildable
outside its own repository).

Modules: certs (openssl certificates), process (ControlPlane: starting, waiting for and always stopping the
processes), client (Client, Response: requests, discovery, apply), dryrun (dry-run of built objects and CRDs, and
their findings); check() below is what `validate --server` runs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kflowgen import tools
from kflowgen.checks.server import certs, client, dryrun, process
from kflowgen.checks.server.client import Client, Response
from kflowgen.checks.server.dryrun import CODES, built_documents, documents, dry_run
from kflowgen.checks.server.errors import ControlPlaneError
from kflowgen.checks.server.process import ControlPlane
from kflowgen.diagnostics import Diagnostic, error

if TYPE_CHECKING:
    from kflowgen.build import Built

__all__ = ["CODES", "Client", "ControlPlane", "ControlPlaneError", "Response", "built_documents", "certs",
           "check", "client", "documents", "dry_run", "dryrun", "process"]


def check(root: Path, crd_files: list[Path], built: "Built", jobs: int = 4, log: Callable[[str], Any] | None = None,
          overlays: list[str] | None = None) -> tuple[list[Diagnostic], list[str]]:
    """Start a control plane without the controller manager, install the CRDs (verify.crd_files: those kflowgen ships
    and the platform's own), dry-run every built overlay (or those given) from the objects the build parsed, tear it
    down. Returns the findings and a line for the command's summary (none when the control plane did not run)."""
    binaries = tools.find_all(tools.SERVER)
    if isinstance(binaries, Diagnostic):
        return [binaries], []
    try:
        with ControlPlane(binaries, controller_manager=False, log=log) as cp:
            t0 = time.monotonic()
            docs, diags = built_documents(built, overlays)
            diags += dry_run(cp, docs, crd_files, jobs)
            n = cp.stats["objects"] + cp.stats["namespaces"]
            return diags, [f"{n} objects sent to kube-apiserver {tools.KUBERNETES_VERSION} (server-side dry-run, "
                           f"strict field validation, {cp.stats['crds']} CRDs installed) in "
                           f"{time.monotonic() - t0:.1f}s"]
    except (ControlPlaneError, OSError) as e:  # OSError: urllib's URLError, e.g. the API server died mid-run
        return [error("kube-apiserver", (0, 0), "KF902", f"the local control plane failed: {e}")], []
