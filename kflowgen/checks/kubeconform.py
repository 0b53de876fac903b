"""kubeconform as an adapter: strict validation of built files against the offline schema folder."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.tools import Tool, ends_with_us


def run(tool: Tool, files: dict[str, Path], schema_args: list[str], kubernetes_version: str,
                jobs: int) -> list[dict] | Diagnostic:
    """Validate built files strictly. `files` maps an overlay to the file holding its built YAML.
    Returns kubeconform's per-resource results with 'overlay' added; only failures are reported by kubeconform."""
    by_file = {str(p): overlay for overlay, p in files.items()}
    argv = [*tool.argv, "-strict", "-output", "json", "-kubernetes-version", kubernetes_version,
            "-n", str(max(1, jobs)), *schema_args, *sorted(by_file)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900, preexec_fn=ends_with_us())
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
