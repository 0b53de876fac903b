"""Reporters: one function per output format, chosen from one registry; 'auto' picks github under GitHub Actions."""
from __future__ import annotations

import json
import os

from .diagnostics import Diagnostic, Report


def _line(d: Diagnostic) -> str:
    return f"{d.location()}: {d.severity} [{d.code}] {d.message}"


def _tally(report: Report) -> str:
    errors = len(report.errors)
    warnings = len(report.diagnostics) - errors
    if not report.diagnostics:
        return "kflowgen: ok"
    return f"kflowgen: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def text(report: Report) -> str:
    out = []
    for d in report.sorted():
        out.append(_line(d))
        if d.hint:
            out.append(f"    fix: {d.hint}")
    out.extend(report.summary)
    out.append(_tally(report))
    return "\n".join(out) + "\n"


def as_json(report: Report) -> str:
    diags = [{"path": d.path, "line": d.line, "column": d.col, "severity": d.severity, "code": d.code,
              "message": d.message, "hint": d.hint} for d in report.sorted()]
    return json.dumps({"diagnostics": diags, "summary": report.summary, "errors": len(report.errors),
                       "warnings": len(report.diagnostics) - len(report.errors)}, indent=2) + "\n"


def _escape(value: str, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def github(report: Report) -> str:
    """GitHub workflow commands: each diagnostic becomes an annotation on its spec line."""
    out = []
    for d in report.sorted():
        props = [f"file={_escape(d.path, True)}"] if d.line else []
        if d.line:
            props += [f"line={d.line}", f"col={d.col}"]
        props.append(f"title={_escape(d.code, True)}")
        message = d.message if d.line else f"{d.path}: {d.message}"
        message += f" (fix: {d.hint})" if d.hint else ""
        out.append(f"::{d.severity} {','.join(props)}::{_escape(message)}")
    out.extend(report.summary)
    out.append(_tally(report))
    return "\n".join(out) + "\n"


REPORTERS = {"text": text, "json": as_json, "github": github}


def render(report: Report, fmt: str = "auto") -> str:
    if fmt == "auto":
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    return REPORTERS[fmt](report)
