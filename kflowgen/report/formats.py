"""Reporters: one function per output format, chosen from one registry; 'auto' picks github under GitHub Actions."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

from kflowgen import __version__
from kflowgen.diagnostics import Diagnostic, Report


def _line(d: Diagnostic) -> str:
    return f"{d.location()}: {d.severity} [{d.code}] {d.message}"


def _tally(report: Report) -> str:
    errors = len(report.errors)
    warnings = len(report.diagnostics) - errors
    if not report.diagnostics:
        return "kflowgen: ok"
    return f"kflowgen: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def text(report: Report, titles: Mapping[str, str]) -> str:
    out = []
    for d in report.sorted():
        out.append(_line(d))
        if d.hint:
            out.append(f"    fix: {d.hint}")
    out.extend(report.summary)
    out.append(_tally(report))
    return "\n".join(out) + "\n"


def as_json(report: Report, titles: Mapping[str, str]) -> str:
    diags = [{"path": d.path, "line": d.line, "column": d.col, "severity": d.severity, "code": d.code,
              "message": d.message, "hint": d.hint} for d in report.sorted()]
    return json.dumps({"diagnostics": diags, "summary": report.summary, "errors": len(report.errors),
                       "warnings": len(report.diagnostics) - len(report.errors)}, indent=2) + "\n"


def _escape(value: str, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def github(report: Report, titles: Mapping[str, str]) -> str:
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


def junit(report: Report, titles: Mapping[str, str]) -> str:
    """JUnit XML for CI test tabs: one failing test case per error, one skipped per warning; a clean run passes."""
    from xml.sax.saxutils import escape, quoteattr  # here: it imports urllib (15 ms) for every other format

    cases = []
    for d in report.sorted():
        name = quoteattr(f"{d.code} {d.location()}")
        body = escape(d.message + (f"\nfix: {d.hint}" if d.hint else ""))
        tag = "failure" if d.severity == "error" else "skipped"
        cases.append(f'  <testcase classname="kflowgen.{d.code}" name={name}><{tag} message={quoteattr(d.message)}>'
                     f"{body}</{tag}></testcase>")
    if not cases:
        cases.append('  <testcase classname="kflowgen" name="specs and manifests"/>')
    errors = len(report.errors)
    skipped = len(report.diagnostics) - errors
    head = (f'<testsuite name="kflowgen" tests="{len(cases)}" failures="{errors}" errors="0" skipped="{skipped}">')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join([head, *cases, "</testsuite>"]) + "\n"


def sarif(report: Report, titles: Mapping[str, str]) -> str:
    """SARIF 2.1.0 for GitHub code scanning: one result per diagnostic, located in the spec when it has a line."""
    results = []
    for d in report.sorted():
        location: dict = {"artifactLocation": {"uri": d.path}}
        if d.line:
            location["region"] = {"startLine": d.line, "startColumn": max(d.col, 1)}
        results.append({"ruleId": d.code, "level": d.severity,
                        "message": {"text": d.message + (f" (fix: {d.hint})" if d.hint else "")},
                        "locations": [{"physicalLocation": location}]})
    rules = [{"id": code, "shortDescription": {"text": title}} for code, title in titles.items()]
    doc = {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
           "runs": [{"tool": {"driver": {"name": "kflowgen", "version": __version__, "rules": rules}},
                     "results": results}]}
    return json.dumps(doc, indent=2) + "\n"


REPORTERS = {"text": text, "json": as_json, "github": github, "junit": junit, "sarif": sarif}


def render(report: Report, fmt: str = "auto", titles: Mapping[str, str] | None = None) -> str:
    """The report in one format. `titles` (code -> one-line title; kflowgen.codes.CODES) describes the rules for
    the formats that list them (SARIF)."""
    if fmt == "auto":
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    return REPORTERS[fmt](report, titles or {})
