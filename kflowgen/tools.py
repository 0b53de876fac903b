"""External tools: finding and installing the pinned kustomize and kubeconform, and running them as adapters."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, error

KUSTOMIZE = ("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1")
KUBECONFORM = ("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
PINNED = (KUSTOMIZE, KUBECONFORM)
PROJECT = Path(__file__).resolve().parents[1]  # the kflowgen checkout, when installed from one


def _ends_with_us():
    """For a tool's process: killed when this one ends (parallel.die_with_parent), so a kflowgen killed by a CI
    timeout leaves no kustomize, kflowgen-kbuild or kubeconform behind."""
    from kflowgen import parallel

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


# --- kustomize ----------------------------------------------------------------------------------------------------

def kustomize_build(tool: Tool, root: Path, overlays: list[str], jobs: int,
                    done=lambda: None) -> dict[str, str | Diagnostic]:
    """Build each overlay (a folder relative to root). Returns its YAML, or a KF401 diagnostic; calls done()
    after each overlay (for a progress bar)."""

    def one(overlay: str) -> str | Diagnostic:
        try:
            out = subprocess.run([*tool.argv, str(root / overlay)], capture_output=True, text=True, timeout=300,
                                 preexec_fn=_ends_with_us())
        except (OSError, subprocess.TimeoutExpired) as e:
            return error(overlay, (0, 0), "KF902", f"kustomize could not run: {e}")
        done()
        if out.returncode:
            msg = out.stderr.strip().replace(str(root) + "/", "") or f"exit status {out.returncode}"
            return error(overlay, (0, 0), "KF401", f"kustomize build failed: {msg}",
                         "check the hand-kept bases the overlay uses")
        return out.stdout

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(zip(overlays, pool.map(one, overlays)))


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


def kustomize_batch(binary: Path, root: Path, overlays: list[str], jobs: int, done=lambda: None,
                    objects: dict[str, list] | None = None) -> dict[str, str | Diagnostic]:
    """Like kustomize_build, in one kflowgen-kbuild process; output is byte-identical to `kustomize build DIR`.
    With `objects`, each built overlay's objects are also put there, as kubectl reads them (no YAML parsing here).
    A stream that ends early or breaks its own framing (a header, exactly LEN bytes, a json record after each ok)
    fails that overlay and every later one with KF902: a cut-off build is never taken for a good one."""
    argv = [str(binary), "-j", str(max(1, jobs))] + (["-json"] if objects is not None else [])
    broken = error("kflowgen-kbuild", (0, 0), "KF902", "kflowgen-kbuild stopped early or wrote a damaged stream",
                   "rebuild it with `kflowgen tools install`, or delete it to use kustomize")
    out: dict[str, str | Diagnostic] = {}
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          preexec_fn=_ends_with_us()) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("".join(f"{root / o}\n" for o in overlays).encode())
            proc.stdin.close()
        except BrokenPipeError:  # it exited without reading: every overlay below is reported as broken
            pass
        ok = True
        for overlay in overlays:
            result = _batch_result(proc.stdout, root, overlay, objects) if ok else None
            ok = result is not None
            out[overlay] = result if result is not None else replace(broken, path=overlay)
            done()
        if ok:
            proc.stdout.read()  # nothing should be left; read it so the process can exit
    return out


def _batch_record(stream) -> tuple[str, bytes] | None:
    """One `==> LEN STATUS DIR` record of the kflowgen-kbuild stream, or None when the framing is broken."""
    parts = stream.readline().decode("utf-8", "replace").rstrip("\n").split(" ", 3)
    if len(parts) != 4 or parts[0] != "==>" or not parts[1].isdigit():
        return None
    payload = stream.read(int(parts[1]))
    return (parts[2], payload) if len(payload) == int(parts[1]) else None


def _batch_result(stream, root: Path, overlay: str, objects: dict[str, list] | None) -> str | Diagnostic | None:
    record = _batch_record(stream)
    if record is None or record[0] not in ("ok", "error"):
        return None
    status, payload = record
    try:
        text = payload.decode("utf-8")
        if status == "error":
            return error(overlay, (0, 0), "KF401", f"kustomize build failed: {text.strip().replace(str(root) + '/', '')}",
                         "check the hand-kept bases the overlay uses")
        if objects is not None:
            parsed = _batch_record(stream)
            if parsed is None or parsed[0] != "json":
                return None
            objects[overlay] = json.loads(parsed[1])
    except ValueError:  # not UTF-8, or not JSON
        return None
    return text


# --- kubeconform --------------------------------------------------------------------------------------------------

def kubeconform(tool: Tool, files: dict[str, Path], schema_args: list[str], kubernetes_version: str,
                jobs: int) -> list[dict] | Diagnostic:
    """Validate built files strictly. `files` maps an overlay to the file holding its built YAML.
    Returns kubeconform's per-resource results with 'overlay' added; only failures are reported by kubeconform."""
    by_file = {str(p): overlay for overlay, p in files.items()}
    argv = [*tool.argv, "-strict", "-output", "json", "-kubernetes-version", kubernetes_version,
            "-n", str(max(1, jobs)), *schema_args, *sorted(by_file)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900, preexec_fn=_ends_with_us())
    except (OSError, subprocess.TimeoutExpired) as e:
        return error("kubeconform", (0, 0), "KF902", f"kubeconform could not run: {e}")
    try:
        results = json.loads(out.stdout or "{}").get("resources", [])
    except json.JSONDecodeError:
        return error("kubeconform", (0, 0), "KF902", f"kubeconform failed: {out.stderr.strip() or out.stdout[:500]}")
    if out.returncode not in (0, 1):
        return error("kubeconform", (0, 0), "KF902", f"kubeconform failed: {out.stderr.strip()}")
    for r in results:
        r["overlay"] = by_file.get(r.get("filename", ""), r.get("filename", ""))
    return results
