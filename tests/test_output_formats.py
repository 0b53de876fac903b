"""Every output format carries every finding: exact text, and well-formed json, github, junit and sarif."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from kflowgen.codes import CODES
from kflowgen.report import formats as report
from kflowgen.diagnostics import Report, error, warning

REPORT = Report([error("specs/teams/a.yaml", (3, 7), "KF201", "unknown field 'x, y: z' in team spec", "rename it"),
                 warning("overlays/dev/notes.md", (1, 1), "KF504", "hand-written file", "move it"),
                 error("overlays/dev/teams/a/workloads", (0, 0), "KF402", "Job a/j: /spec: bad\nsecond line")],
                ["summary line"])


def test_text():
    assert report.render(REPORT, "text") == """\
overlays/dev/notes.md:1:1: warning [KF504] hand-written file
    fix: move it
overlays/dev/teams/a/workloads: error [KF402] Job a/j: /spec: bad
second line
specs/teams/a.yaml:3:7: error [KF201] unknown field 'x, y: z' in team spec
    fix: rename it
summary line
kflowgen: 2 errors, 1 warning
"""


def test_github_escapes_properties_and_messages():
    lines = report.render(REPORT, "github").splitlines()
    assert lines[0] == "::warning file=overlays/dev/notes.md,line=1,col=1,title=KF504::hand-written file (fix: move it)"
    assert lines[1] == "::error title=KF402::overlays/dev/teams/a/workloads: Job a/j: /spec: bad%0Asecond line"
    assert lines[2] == ("::error file=specs/teams/a.yaml,line=3,col=7,title=KF201::unknown field 'x, y: z' in team "
                        "spec (fix: rename it)")


def test_auto_picks_github_under_actions(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert report.render(REPORT).startswith("::warning ")
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert report.render(REPORT).startswith("overlays/dev/notes.md:1:1: warning")


def test_json():
    doc = json.loads(report.render(REPORT, "json"))
    assert (doc["errors"], doc["warnings"], doc["summary"]) == (2, 1, ["summary line"])
    assert doc["diagnostics"][2] == {"path": "specs/teams/a.yaml", "line": 3, "column": 7, "severity": "error",
                                     "code": "KF201", "message": "unknown field 'x, y: z' in team spec",
                                     "hint": "rename it"}


def test_junit():
    suite = ET.fromstring(report.render(REPORT, "junit"))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "2", "1")
    names = [c.get("name") for c in suite]
    assert names == ["KF504 overlays/dev/notes.md:1:1", "KF402 overlays/dev/teams/a/workloads",
                     "KF201 specs/teams/a.yaml:3:7"]
    clean = ET.fromstring(report.render(Report(), "junit"))
    assert (clean.get("tests"), clean.get("failures"), len(clean.findall("testcase/failure"))) == ("1", "0", 0)


def test_sarif():
    doc = json.loads(report.render(REPORT, "sarif", CODES))
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0" and run["tool"]["driver"]["name"] == "kflowgen"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {"KF201", "KF402", "KF504"}
    located = run["results"][2]
    assert located["ruleId"] == "KF201" and located["level"] == "error"
    assert located["locations"][0]["physicalLocation"]["region"] == {"startLine": 3, "startColumn": 7}
    assert "region" not in run["results"][1]["locations"][0]["physicalLocation"]
