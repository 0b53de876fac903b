"""External tools: the one table of pinned tools (what each is built from, at which version, and how), finding them
(the tools folder, then PATH), the version a binary was built at, and installing them with `go install`. The
stages that run them (build/, checks/) hold the adapters."""
from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from kflowgen import parallel
from kflowgen.diagnostics import Diagnostic, error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF901": "required tool not found",
    "KF902": "tool failed to run",
}

PROJECT = Path(__file__).resolve().parents[1]  # the kflowgen checkout, when installed from one
# the Go wrapper modules some tools are built in (only in a kflowgen checkout)
KBUILD_SOURCE = PROJECT / "tools" / "kbuild"
APISERVER_SOURCE = PROJECT / "tools" / "apiserver"
KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"  # the version k8s.io/kubernetes KUBERNETES_VERSION requires


@dataclass(frozen=True)
class Pinned:
    name: str     # the binary's file name in the tools folder
    package: str  # what `go install` builds: a package at `version` ("module"), or a package of `source`
    version: str  # the pinned version (of `module`, for builds in a wrapper module)
    # how it is built: "module": `go install package@version`; "kbuild": in its wrapper module (tools/kbuild) with
    # a digest of that source stamped in (optional: without it kflowgen runs kustomize processes); "wrapper": in the
    # wrapper module tools/apiserver (its replace directives make k8s.io/kubernetes buildable outside its own
    # repository), all missing ones in one `go install`, with the version stamp of Kubernetes' release build
    how: str
    source: Path | None = None  # the wrapper Go module it is built in
    module: str = ""  # the module whose version is pinned, as `go version -m` names it ("wrapper")
    main: str = ""    # the main package `go version -m` records, when not `package` ("wrapper")
    server: bool = False  # only for `validate --server`: built by `kflowgen tools install --server`


KUSTOMIZE = Pinned("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1", "module")
KUBECONFORM = Pinned("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0", "module")
# kustomize's own build code, many overlays a process (its version: the kustomize it links)
KFLOWGEN_KBUILD = Pinned("kflowgen-kbuild", ".", KUSTOMIZE.version, "kbuild", KBUILD_SOURCE)
ETCD = Pinned("etcd", "./cmd/etcd", ETCD_VERSION, "wrapper", APISERVER_SOURCE, "go.etcd.io/etcd/server/v3",
              "kflowgen.dev/tools/apiserver/cmd/etcd", server=True)
KUBE_APISERVER = Pinned("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", KUBERNETES_VERSION, "wrapper",
                        APISERVER_SOURCE, "k8s.io/kubernetes", server=True)
KUBE_CONTROLLER_MANAGER = Pinned("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager",
                                 KUBERNETES_VERSION, "wrapper", APISERVER_SOURCE, "k8s.io/kubernetes", server=True)

# in the order `kflowgen tools install` builds them
TOOLS = (KFLOWGEN_KBUILD, KUSTOMIZE, KUBECONFORM, ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER)
BASE = tuple(t for t in TOOLS if not t.server)  # `kflowgen tools install`
SERVER = tuple(t for t in TOOLS if t.server)  # `kflowgen tools install --server`: the local control plane
SHOWN = (KUSTOMIZE, KUBECONFORM)  # what validate runs, `tools status` shows and the README names


def pinned(name: str) -> Pinned | None:
    return next((t for t in TOOLS if t.name == name), None)


def ends_with_us():
    """For a tool's process: killed when this one ends (parallel.die_with_parent), so a kflowgen killed by a CI
    timeout leaves no kustomize, kflowgen-kbuild, kubeconform, etcd or kube-apiserver behind."""
    parallel.prepare()
    return functools.partial(parallel.die_with_parent, os.getpid())


def tools_dir() -> Path:
    """Where `kflowgen tools install` puts binaries: $KFLOWGEN_TOOLS, else .tools/bin of the kflowgen checkout."""
    if os.environ.get("KFLOWGEN_TOOLS"):
        return Path(os.environ["KFLOWGEN_TOOLS"])
    return PROJECT / ".tools" / "bin"


def install_command(name: str) -> str:
    tool = pinned(name)
    if tool is not None and tool.server:
        return "kflowgen tools install --server"
    if tool is not None and tool.how == "module":
        return f"kflowgen tools install  (or: GOBIN={tools_dir()} go install {tool.package}@{tool.version})"
    return "kflowgen tools install"


# --- versions -------------------------------------------------------------------------------------------------

def command_version(argv: list[str], stat: tuple[int, ...] | None = None) -> str:
    """The first line a command prints (its version), '' when it cannot run."""
    stdout, stderr = _ran(argv, stat)
    return (stdout or stderr).strip().splitlines()[0].strip() if (stdout or stderr).strip() else ""


def output_lines(argv: list[str], stat: tuple[int, ...] | None = None) -> list[str]:
    return _ran(argv, stat)[0].splitlines()


def _ran(argv: list[str], stat: tuple[int, ...] | None) -> tuple[str, str]:
    """A command's output (stdout, stderr; empty when it cannot run): for a binary as it is (stat: _stat of the
    binary asked about), asked once per run, from the run ask_ahead started when it did; else run now."""
    k = (tuple(argv), stat)
    if stat is not None and k in _RAN:
        return _RAN[k]
    started = _AHEAD.pop(k, None) if stat is not None else None
    out = "", ""
    try:
        if started is None:
            started = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = started.communicate(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        if started is not None and started.returncode is None:  # (timed out, or interrupted)
            started.kill()
            started.wait()
    if stat is not None:
        if len(_RAN) >= 64:  # a long-lived process (the tests) does not keep every binary's answers it ever had
            _RAN.clear()
        _RAN[k] = out
    return out


# version questions asked ahead, until asked: {(argv, _stat of the binary when it was started): its run}; and the
# answers, by the same key
_AHEAD: dict[tuple[tuple[str, ...], tuple[int, ...]], subprocess.Popen] = {}
_RAN: dict[tuple[tuple[str, ...], tuple[int, ...] | None], tuple[str, str]] = {}


def ask_ahead(repo: Path | None = None, names: Iterable[str] = tuple(t.name for t in BASE)) -> None:
    """Start the version questions find() and find_batch() will ask of these tools' binaries in the tools folder
    (those validate runs), so that the answers are there when asked (each is a process waited for, one after another,
    a few ms each). An answer is taken only for the binary as it was when asked ahead (its inode, size and times): one
    replaced meanwhile is asked again. A question answered already in this process is not asked again."""
    folder = tools_dir()
    for name in names:
        path = folder / name
        if not _executable(path) or locate(name, repo=repo) != path:
            continue
        argv = (str(path), {KUSTOMIZE.name: "version", KFLOWGEN_KBUILD.name: "-version"}.get(name, "-v"))
        k = (argv, _stat(path))
        if k not in _AHEAD and k not in _RAN:
            try:
                _AHEAD[k] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            except OSError:
                pass


def built_version(path: Path, tool: Pinned) -> str:
    """The version a binary was built at, to compare with tool.version; '' when missing or another build.
    "module": the tool's own version, or for `go install` builds that print 'development', the module version Go
    recorded. "kbuild": the kustomize it links, when its -version line also names this protocol and (in a checkout)
    this source. "wrapper": the pinned module's version Go recorded, with Kubernetes' version stamp (the binary is
    not run)."""
    if not path.is_file():
        return ""
    if tool.how == "kbuild":
        return tool.version if _kbuild_fits(batch_version(path)) else ""
    if tool.how == "wrapper":
        return _wrapper_version(path, tool)
    own = command_version([str(path), "version" if tool.name == "kustomize" else "-v"], _stat(path))
    if own.startswith("v") or not shutil.which("go"):
        return own
    for line in _go_version(path):
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod":
            return parts[2]
    return own


def _stat(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _go_version(path: Path) -> list[str]:
    return output_lines(["go", "version", "-m", str(path)], _stat(path))


def _wrapper_version(path: Path, tool: Pinned) -> str:
    if not shutil.which("go"):
        return ""
    lines = [line.strip().split("\t") for line in _go_version(path)]
    if not any(len(p) >= 2 and p[0] == "path" and p[1] == (tool.main or tool.package) for p in lines):
        return ""
    if tool.module.startswith("k8s.io/kubernetes") and not any(
            p[0] == "build" and f"gitVersion={tool.version}" in "\t".join(p) for p in lines):
        return ""  # built without the version stamp: rebuild
    for p in lines:
        if len(p) >= 3 and p[0] in ("mod", "dep") and p[1] == tool.module:
            return p[2]
    return ""


# --- finding them -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]  # the command prefix, e.g. ('/x/kustomize', 'build') or ('kubectl', 'kustomize')
    version: str


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def locate(name: str, folder: Path | None = None, repo: Path | None = None) -> Path | None:
    """A tool's binary: in the tools folder (or folder), then the repository's .tools/bin, then on PATH."""
    candidates = [(folder or tools_dir()) / name]
    if repo is not None:
        candidates.append(repo / ".tools" / "bin" / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    return next((c for c in candidates if _executable(c)), None)


def not_installed(name: str) -> Diagnostic:
    """The KF901 error for a tool that is not there."""
    tool = pinned(name)
    if tool is not None and tool.server:
        return error(name, (0, 0), "KF901", f"{name} is not installed (needed by validate --server)",
                     f"build it with: {install_command(name)}")
    return error(name, (0, 0), "KF901", f"{name} is not installed", f"install it with: {install_command(name)}")


def find(name: str, repo: Path | None = None) -> Tool | Diagnostic:
    """The pinned build in the tools folder first, then PATH, with its version; kustomize falls back to
    `kubectl kustomize`."""
    path = locate(name, repo=repo)
    if path is not None:
        argv = (str(path), "build") if name == "kustomize" else (str(path),)
        return Tool(name, argv, built_version(path, pinned(name) or Pinned(name, name, "", "module")))
    if name == "kustomize" and shutil.which("kubectl"):
        v = command_version(["kubectl", "version", "--client"])
        return Tool(name, ("kubectl", "kustomize"), v.split("Kustomize Version:")[-1].strip() or "kubectl")
    return not_installed(name)


def status(repo: Path | None = None) -> tuple[list[str], int]:
    """`kflowgen tools status`: a line for each tool validate runs (where it is and its version, or how to install
    it), and 1 when one is missing."""
    lines, code = [], 0
    for tool in SHOWN:
        found = find(tool.name, repo)
        if isinstance(found, Diagnostic):
            lines.append(f"{tool.name}: not found (pinned {tool.version}); {found.hint}")
            code = 1
        else:
            lines.append(f"{tool.name}: {' '.join(found.argv)}  version {found.version} (pinned {tool.version})")
    return lines, code


def find_all(tools: Iterable[Pinned], folder: Path | None = None) -> dict[str, Path] | Diagnostic:
    """The binaries of several tools (the tools folder first, then PATH); the first missing one is a KF901 error."""
    found = {}
    for tool in tools:
        path = locate(tool.name, folder)
        if path is None:
            return not_installed(tool.name)
        found[tool.name] = path
    return found


# --- installing them --------------------------------------------------------------------------------------------

Log = Callable[[str], Any]


def install(tools: Iterable[Pinned] = BASE, dest: Path | None = None, log: Log = print) -> int:
    """go install the given pinned tools into the tools folder, in their order; a binary already at the pinned
    version is kept. Stops at the first failure (kflowgen-kbuild's is not one: kustomize processes replace it).
    The control plane (SERVER) takes about 10 minutes on 2 cores and up to 2.2 GB of memory the first time."""
    tools = list(tools)
    dest = dest or tools_dir()
    if not shutil.which("go"):
        log(f"kflowgen: Go is needed to build {', '.join(t.name for t in tools)}: install Go 1.26 or newer")
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    for how, group in itertools.groupby(tools, key=lambda t: t.how):
        code = _BUILDERS[how](list(group), dest, log)
        if code:
            return code
    return 0


def _present(tool: Pinned, dest: Path, log: Log) -> bool:
    """Whether dest holds the tool at its pinned version (which is then said)."""
    if built_version(dest / tool.name, tool) != tool.version:
        return False
    log(f"kflowgen: {tool.name} {tool.version} already in {dest}")
    return True


def _install_modules(tools: list[Pinned], dest: Path, log: Log) -> int:
    for t in tools:
        if _present(t, dest, log):
            continue
        log(f"kflowgen: building {t.name} {t.version} into {dest} (go install, once per machine)")
        env = dict(os.environ, GOBIN=str(dest), GOFLAGS="-mod=mod", CGO_ENABLED="0")
        result = subprocess.run(["go", "install", f"{t.package}@{t.version}"], env=env)
        if result.returncode:
            return result.returncode
    return 0


def _install_kbuild(tools: list[Pinned], dest: Path, log: Log) -> int:
    digest = _kbuild_digest()
    for t in tools:
        if not digest or built_version(dest / t.name, t) == t.version:
            continue  # built already, or outside a kflowgen checkout (where its source is not)
        log(f"kflowgen: building {t.name} (kustomize {t.version}'s build code, many overlays a process)")
        env = dict(os.environ, GOBIN=str(dest), CGO_ENABLED="0")
        argv = ["go", "install", f"-ldflags=-X main.source={digest}", t.package]
        if subprocess.run(argv, cwd=t.source, env=env).returncode:
            log(f"kflowgen: {t.name} did not build; kflowgen will run one kustomize process per overlay")
    return 0


def _install_wrapper(tools: list[Pinned], dest: Path, log: Log) -> int:
    """One `go install` of every missing tool of the wrapper module (they share most of their code)."""
    source = tools[0].source
    assert source is not None and all(t.source == source for t in tools)
    if not (source / "go.mod").is_file():
        log(f"kflowgen: the control plane's Go module is not in {source}: run this from a kflowgen checkout")
        return 1
    missing = [t for t in tools if not _present(t, dest, log)]
    if not missing:
        return 0
    log(f"kflowgen: building {', '.join(f'{t.name} {t.version}' for t in missing)} into {dest} "
        "(go install, once per machine; the first build takes about 10 minutes)")
    env = dict(os.environ, GOBIN=str(dest), GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0", GOWORK="off")
    result = subprocess.run(["go", "install", f"-ldflags={kubernetes_ldflags()}", *[t.package for t in missing]],
                            cwd=source, env=env)
    return result.returncode


_BUILDERS: dict[str, Callable[[list[Pinned], Path, Log], int]] = {
    "module": _install_modules, "kbuild": _install_kbuild, "wrapper": _install_wrapper}


def kubernetes_ldflags() -> str:
    """What Kubernetes' own build stamps (hack/lib/version.sh), so /version and `--version` say v1.34.4."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return " ".join(f"-X {pkg}.{k}={v}" for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                    for k, v in (("gitVersion", KUBERNETES_VERSION), ("gitMajor", major), ("gitMinor", minor),
                                 ("gitTreeState", "clean")))


# --- kflowgen-kbuild: kustomize's build code, many overlays a process -------------------------------------

BATCH_PROTOCOL = "protocol 2"  # kflowgen-kbuild -version names it; an older build is rebuilt by `tools install`


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


def _kbuild_fits(version_line: str) -> bool:
    """A kflowgen-kbuild of this kustomize version, protocol and (in a checkout) source."""
    digest = _kbuild_digest()
    return (KUSTOMIZE.version in version_line and BATCH_PROTOCOL in version_line
            and (digest is None or f"source {digest}" in version_line))


def batch_version(binary: Path) -> str:
    """kflowgen-kbuild -version, asked once per run and binary as it is."""
    return command_version([str(binary), "-version"], _stat(binary))


def find_batch(folder: Path | None = None) -> Path | None:
    """kflowgen-kbuild (tools/kbuild): the pinned kustomize's own build code, many overlays in one process; only
    a build of this kustomize version, protocol and (in a checkout) source, and only in the tools folder."""
    binary = (folder or tools_dir()) / KFLOWGEN_KBUILD.name
    if not _executable(binary):
        return None
    return binary if built_version(binary, KFLOWGEN_KBUILD) == KFLOWGEN_KBUILD.version else None
