"""kustomize as an adapter: build overlays with the pinned kustomize (a process per overlay) or with kflowgen-kbuild
(kustomize's own build code, many overlays in one process, byte-identical output)."""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.tools import Tool, ends_with_us

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF401": "kustomize build failed",
}


def kustomize_build(tool: Tool, root: Path, overlays: list[str], jobs: int, done=lambda: None,
                    hold=lambda overlay, text: text) -> dict[str, str | Diagnostic]:
    """Build each overlay (a folder relative to root). Returns its YAML as hold(overlay, YAML) gives it (what to
    keep of it, as it arrives), or a KF401 diagnostic; calls done() after each overlay (for a progress bar)."""

    def one(overlay: str) -> str | Diagnostic:
        try:
            out = subprocess.run([*tool.argv, str(root / overlay)], capture_output=True, text=True, timeout=300,
                                 preexec_fn=ends_with_us())
        except (OSError, subprocess.TimeoutExpired) as e:
            return error(overlay, (0, 0), "KF902", f"kustomize could not run: {e}")
        done()
        if out.returncode:
            msg = out.stderr.strip().replace(str(root) + "/", "") or f"exit status {out.returncode}"
            return error(overlay, (0, 0), "KF401", f"kustomize build failed: {msg}",
                         "check the hand-kept bases the overlay uses")
        return hold(overlay, out.stdout)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(zip(overlays, pool.map(one, overlays)))


def kustomize_batch(binary: Path, root: Path, overlays: list[str], jobs: int, done=lambda: None,
                    with_objects: bool = False, keep=lambda objects: objects, hold=lambda overlay, text: text
                    ) -> tuple[dict[str, str | Diagnostic], dict]:
    """Like kustomize_build, in one kflowgen-kbuild process; output is byte-identical to `kustomize build DIR`.
    With with_objects, also each built overlay's objects, as kubectl reads them (no YAML parsing here), as keep
    gives them (packed, say, as each arrives: not every overlay's objects at once); each YAML as hold gives it.
    A stream that ends early or breaks its own framing (a header, exactly LEN bytes, a json record after each ok)
    fails that overlay and every later one with KF902: a cut-off build is never taken for a good one."""
    argv = [str(binary), "-j", str(max(1, jobs))] + (["-json"] if with_objects else [])
    objects: dict | None = {} if with_objects else None
    broken = error("kflowgen-kbuild", (0, 0), "KF902", "kflowgen-kbuild stopped early or wrote a damaged stream",
                   "rebuild it with `kflowgen tools install`, or delete it to use kustomize")
    out: dict[str, str | Diagnostic] = {}
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          preexec_fn=ends_with_us()) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("".join(f"{root / o}\n" for o in overlays).encode())
            proc.stdin.close()
        except BrokenPipeError:  # it exited without reading: every overlay below is reported as broken
            pass
        ok = True
        for overlay in overlays:
            result = _batch_result(proc.stdout, root, overlay, objects, keep) if ok else None
            ok = result is not None
            out[overlay] = (replace(broken, path=overlay) if result is None else result
                            if isinstance(result, Diagnostic) else hold(overlay, result))
            done()
        if ok:
            proc.stdout.read()  # nothing should be left; read it so the process can exit
    return out, objects or {}


def _batch_record(stream) -> tuple[str, bytes] | None:
    """One `==> LEN STATUS DIR` record of the kflowgen-kbuild stream, or None when the framing is broken."""
    parts = stream.readline().decode("utf-8", "replace").rstrip("\n").split(" ", 3)
    if len(parts) != 4 or parts[0] != "==>" or not parts[1].isdigit():
        return None
    payload = stream.read(int(parts[1]))
    return (parts[2], payload) if len(payload) == int(parts[1]) else None


def _batch_result(stream, root: Path, overlay: str, objects: dict | None, keep) -> str | Diagnostic | None:
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
            objects[overlay] = keep(json.loads(parsed[1]))
    except ValueError:  # not UTF-8, or not JSON
        return None
    return text
