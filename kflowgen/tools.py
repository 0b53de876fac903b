"""External tools: the pinned versions, finding them (the tools folder, then PATH), their versions, and installing
them with `go install`. The stages that run them (build/, checks/) hold the adapters."""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kflowgen import parallel
from kflowgen.diagnostics import Diagnostic, error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF901": "required tool not found",
    "KF902": "tool failed to run",
}

KUSTOMIZE = ("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1")
KUBECONFORM = ("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
PINNED = (KUSTOMIZE, KUBECONFORM)
PROJECT = Path(__file__).resolve().parents[1]  # the kflowgen checkout, when installed from one


def ends_with_us():
    """For a tool's process: killed when this one ends (parallel.die_with_parent), so a kflowgen killed by a CI
    timeout leaves no kustomize, kflowgen-kbuild or kubeconform behind."""
    return functools.partial(parallel.die_with_parent, os.getpid())


def tools_dir() -> Path:
    """Where `kflowgen tools install` puts binaries: $KFLOWGEN_TOOLS, else .tools/bin of the kflowgen checkout."""
    if os.environ.get("KFLOWGEN_TOOLS"):
        return Path(os.environ["KFLOWGEN_TOOLS"])
    return PROJECT / ".tools" / "bin"


def install_command(name: str) -> str:
    for tool, module, version in PINNED:
        if tool == name:
            return f"kflowgen tools install  (or: GOBIN={tools_dir()} go install {module}@{version})"
    return "kflowgen tools install"


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]  # the command prefix, e.g. ('/x/kustomize', 'build') or ('kubectl', 'kustomize')
    version: str


def command_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0].strip() if (out.stdout or out.stderr).strip() else ""


def binary_version(path: Path, name: str) -> str:
    """The tool's own version, or for `go install` builds that print 'development', the module version Go recorded."""
    own = command_version([str(path), "version" if name == "kustomize" else "-v"])
    if own.startswith("v") or not shutil.which("go"):
        return own
    for line in _run_lines(["go", "version", "-m", str(path)]):
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod":
            return parts[2]
    return own


def _run_lines(argv: list[str]) -> list[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []


def find(name: str, repo: Path | None = None) -> Tool | Diagnostic:
    """The pinned build in the tools folder first, then PATH; kustomize falls back to `kubectl kustomize`."""
    candidates = [tools_dir() / name]
    if repo is not None:
        candidates.append(repo / ".tools" / "bin" / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            argv = (str(c), "build") if name == "kustomize" else (str(c),)
            return Tool(name, argv, binary_version(c, name))
    if name == "kustomize" and shutil.which("kubectl"):
        v = command_version(["kubectl", "version", "--client"])
        return Tool(name, ("kubectl", "kustomize"), v.split("Kustomize Version:")[-1].strip() or "kubectl")
    return error(name, (0, 0), "KF901", f"{name} is not installed", f"install it with: {install_command(name)}")


def install(dest: Path | None = None, log=print) -> int:
    """go install each pinned tool into the tools folder; a binary already at the pinned version is kept."""
    dest = dest or tools_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if not shutil.which("go"):
        log("kflowgen: Go is needed to build kustomize and kubeconform: install Go 1.22 or newer")
        return 1
    digest = _kbuild_digest()
    if digest and find_batch(dest) is None:  # the batch builder lives in the kflowgen checkout only
        log(f"kflowgen: building kflowgen-kbuild (kustomize {KUSTOMIZE[2]}'s build code, many overlays a process)")
        env = dict(os.environ, GOBIN=str(dest), CGO_ENABLED="0")
        argv = ["go", "install", f"-ldflags=-X main.source={digest}", "."]
        if subprocess.run(argv, cwd=KBUILD_SOURCE, env=env).returncode:
            log("kflowgen: kflowgen-kbuild did not build; kflowgen will run one kustomize process per overlay")
    for name, module, version in PINNED:
        binary = dest / name
        have = binary_version(binary, name) if binary.exists() else ""
        if have == version:
            log(f"kflowgen: {name} {version} already in {dest}")
            continue
        log(f"kflowgen: building {name} {version} into {dest} (go install, once per machine)")
        env = dict(os.environ, GOBIN=str(dest), GOFLAGS="-mod=mod", CGO_ENABLED="0")
        result = subprocess.run(["go", "install", f"{module}@{version}"], env=env)
        if result.returncode:
            return result.returncode
    return 0


# --- kflowgen-kbuild: kustomize's build code, many overlays a process -------------------------------------

BATCH_PROTOCOL = "protocol 2"  # kflowgen-kbuild -version names it; an older build is rebuilt by `tools install`
KBUILD_SOURCE = PROJECT / "tools" / "kbuild"


def _kbuild_digest() -> str | None:
    """A digest of kflowgen-kbuild's source (None outside a kflowgen checkout). `tools install` builds it into the
    binary, whose -version names it: a binary built from other source is rebuilt, and its cached builds, keyed on
    that version line, are not used."""
    if not KBUILD_SOURCE.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(KBUILD_SOURCE.glob("*.go")) + [KBUILD_SOURCE / "go.mod", KBUILD_SOURCE / "go.sum"]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _batch_version(path: str, mtime_ns: int) -> str:
    return command_version([path, "-version"])


def batch_version(binary: Path) -> str:
    """kflowgen-kbuild -version, asked once per run and binary."""
    return _batch_version(str(binary), binary.stat().st_mtime_ns)


def find_batch(folder: Path | None = None) -> Path | None:
    """kflowgen-kbuild (tools/kbuild): the pinned kustomize's own build code, many overlays in one process; only
    a build of this kustomize version, protocol and (in a checkout) source."""
    binary = (folder or tools_dir()) / "kflowgen-kbuild"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    version = batch_version(binary)
    digest = _kbuild_digest()
    fits = KUSTOMIZE[2] in version and BATCH_PROTOCOL in version and (digest is None or f"source {digest}" in version)
    return binary if fits else None
