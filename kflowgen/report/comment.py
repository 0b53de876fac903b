"""The pull-request comment of `kflowgen gate`: one markdown body a reviewer reads in a minute, updated in place by
the gate workflow. Pass or fail first; then every finding once (a forgotten `kflowgen render` is one line, not one
per file), those on files the pull request changed apart from those already on the base branch; then the change in
the reviewer's words. Everything a pull request wrote (spec values in messages) is shown as code, never as markdown
or HTML, and the body stays under GitHub's comment limit."""
from __future__ import annotations

import re

from kflowgen.diagnostics import ERROR, Diagnostic, Report
from kflowgen.report.changes import DANGER_TITLE, DiffReport, fenced as _code, plain as _plain, tally

MARKER = "<!-- kflowgen gate -->"  # the workflow finds its earlier comment by this line and edits it
LIMIT = 60_000  # GitHub refuses comment bodies over 65,536 characters; room is left for the marker and the cut line
DRIFT = ("KF501", "KF502", "KF503")  # overlays/ is not what the specs render: one cause, one line


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _finding(d: Diagnostic) -> list[str]:
    return [f"{d.location()}: {d.severity} [{d.code}] {d.message}"] + ([f"    fix: {d.hint}"] if d.hint else [])


def _drift(found: list[Diagnostic]) -> Diagnostic | None:
    drift = [d for d in found if d.code in DRIFT]
    if not drift:
        return None
    kinds = {"KF501": "differ", "KF502": "missing", "KF503": "no longer rendered"}
    counts = ", ".join(f"{sum(d.code == c for d in drift)} {what}" for c, what in kinds.items()
                       if any(d.code == c for d in drift))
    return Diagnostic("overlays/", 0, 0, drift[0].code, f"{_count(len(drift), 'generated file')} out of date "
                      f"({counts})", ERROR, "run `kflowgen render` and commit the result")


def _banner(found: list[Diagnostic]) -> str:
    errors = sum(d.severity == ERROR for d in found)
    warnings = len(found) - errors
    if errors:
        return f"## ❌ kflowgen gate: {_count(errors, 'error')}" + (f", {_count(warnings, 'warning')}" if warnings
                                                                    else "")
    return "## ✅ kflowgen gate: passed" + (f" with {_count(warnings, 'warning')}" if warnings else "")


def _findings(found: list[Diagnostic], changed: set[str] | None, base: str) -> list[str]:
    ours = [d for d in found if changed is None or d.path in changed or d.path.startswith("overlays/")
            or d.path in ("git", "specs")]
    theirs = [d for d in found if d not in ours]
    out = []
    for title, group in ((None if changed is None else "In files this pull request changes", ours),
                         (f"Already on {base} (not changed here)", theirs)):
        if group:
            out += ([f"### {title}", ""] if title else []) + _code([line for d in group for line in _finding(d)])
            out.append("")
    return out


def _changes(result: DiffReport | None, base: str) -> list[str]:
    if result is None:
        return ["### What changes", "", "No diff: the pull request's specs do not build (see above).", ""]
    out = [f"### What changes against {_plain(base)}", "", _plain(tally(result).removeprefix("kflowgen diff: ")), ""]
    if result.dangerous:
        out += [f"**{DANGER_TITLE}**", ""]
        out += [f"- ⚠ {_plain(c.text)}" for c in result.dangerous] + [""]
    dangerous = set(result.dangerous)
    for env in dict.fromkeys(c.env for c in result.changes):
        out += [f"**{_plain(env)}**", ""]
        out += [f"- {'⚠ ' if c in dangerous else ''}{_plain(c.body if c.team is None else c.team + ': ' + c.body)}"
                for c in result.changes if c.env == env] + [""]
    return out


def comment(report: Report, result: DiffReport | None, base: str, changed: set[str] | None = None,
            limit: int = LIMIT) -> str:
    """The gate's pull-request comment. report: validate's and render --check's findings; result: the diff against
    base (None when the head does not build); changed: the repository paths the pull request changes (None when
    unknown: every finding is then listed as the pull request's)."""
    found = sorted(set(report.diagnostics) | set(result.diagnostics if result else ()))
    drift = _drift(found)
    found = [d for d in found if d.code not in DRIFT] + ([drift] if drift else [])
    lines = [MARKER, _banner(found), "", *_findings(found, changed, base), *_changes(result, base)]
    out, size, fence = [], 0, None
    for i, line in enumerate(lines):
        if size + len(line) + 1 > limit:
            out += [fence] if fence else []  # close the block the cut falls in
            out.append(f"\n… {_count(len(lines) - i, 'more line')} not shown: run `kflowgen gate --base "
                       f"{_plain(base)}` for all of them")
            break
        if re.fullmatch(r"`{3,}", line):
            fence = None if fence == line else (fence or line)
        out.append(line)
        size += len(line) + 1
    return "\n".join(out).rstrip("\n") + "\n"
