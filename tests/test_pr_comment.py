"""The gate's pull-request comment (kflowgen.report.comment): pass or fail first, every finding once, drift as one
line, the pull request's own findings apart from the base branch's, the change in words, nothing from a spec read
as markdown, and never over GitHub's size limit."""
from __future__ import annotations

import json
import re

from kflowgen.diagnostics import ERROR, WARNING, Diagnostic, Report
from kflowgen.report.changes import Change, DiffReport
from kflowgen.report.comment import LIMIT, MARKER, comment


def d(path, code, message, severity=ERROR, hint="", line=3, col=5):
    return Diagnostic(path, line, col, code, message, severity, hint)


SPEC_ERROR = d("specs/teams/nlp.yaml", "KF304", "profile 'gpu' asks for GPU type 'h100', which the platform does not "
               "define", hint="did you mean 'a100'?")
DRIFT = [d(f"overlays/dev/teams/nlp/{n}.yaml", c, "generated file ...", line=1, col=1)
         for n, c in (("a", "KF501"), ("b", "KF501"), ("c", "KF502"), ("d", "KF503"))]
QUEUE = d("specs/experiments/vision/sweep.yaml", "KF325", "12 trials at once need 12 a100 GPUs, the quota is 4",
          WARNING, "set parallelism: 4")
PROMOTION = DiffReport(changes=[Change("prod", "recsys", "version", "recsys, prod: model ranker version 3 → 4"),
                                Change("prod", "recsys", "changed", "recsys, prod: Deployment recsys/ranker changed "
                                       "(spec.template)")])
LEAVING = DiffReport(changes=[Change("prod", "old", "removed", "old, prod: Namespace old removed"),
                              Change("prod", "old", "quota", "old, prod: quota removed (cpu 8, memory 32Gi, storage "
                                     "1Ti)")])
LEAVING.dangerous = [LEAVING.changes[0]]


def test_a_spec_error_fails_first_and_says_there_is_no_diff():
    body = comment(Report([SPEC_ERROR]), None, "origin/main", {"specs/teams/nlp.yaml"})
    assert body == """\
<!-- kflowgen gate -->
## ❌ kflowgen gate: 1 error

### In files this pull request changes

```
specs/teams/nlp.yaml:3:5: error [KF304] profile 'gpu' asks for GPU type 'h100', which the platform does not define
    fix: did you mean 'a100'?
```

### What changes

No diff: the pull request's specs do not build (see above).
"""


def test_a_forgotten_render_is_one_finding_not_one_per_file():
    body = comment(Report(DRIFT), PROMOTION, "origin/main", {"specs/models/recsys/ranker.yaml"})
    assert body.splitlines()[1] == "## ❌ kflowgen gate: 1 error"
    assert "overlays/: error [KF501] 4 generated files out of date (2 differ, 1 missing, 1 no longer rendered)" in body
    assert body.count("[KF50") == 1 and "    fix: run `kflowgen render` and commit the result" in body


def test_warnings_only_pass_and_are_shown():
    body = comment(Report([QUEUE]), PROMOTION, "origin/main", {"specs/experiments/vision/sweep.yaml"})
    assert body.splitlines()[1] == "## ✅ kflowgen gate: passed with 1 warning"
    assert "specs/experiments/vision/sweep.yaml:3:5: warning [KF325] 12 trials at once" in body


def test_findings_on_files_the_pull_request_did_not_touch_are_apart():
    body = comment(Report([SPEC_ERROR, QUEUE]), None, "origin/main", {"specs/teams/nlp.yaml"})
    ours, theirs = body.split("### In files this pull request changes")[1].split("### Already on origin/main")
    assert "[KF304]" in ours and "[KF325]" not in ours and "[KF325]" in theirs
    assert "In files" not in comment(Report([QUEUE]), None, "origin/main", None)  # unknown: one list


def test_a_promotion_reads_as_the_change():
    body = comment(Report(), PROMOTION, "origin/main", set())
    assert body == """\
<!-- kflowgen gate -->
## ✅ kflowgen gate: passed

### What changes against origin/main

2 changes in 1 environment

**prod**

- recsys: model ranker version 3 → 4
- recsys: Deployment recsys/ranker changed (spec.template)
"""


def test_a_team_leaving_is_marked_dangerous_first():
    body = comment(Report(), LEAVING, "origin/main", set())
    lines = body.splitlines()
    first = lines.index("**⚠ Read first: teams leaving, models no longer served, namespaces, volumes and projects "
                        "removed**")
    assert lines[first + 2] == "- ⚠ old, prod: Namespace old removed"
    assert "- ⚠ old: Namespace old removed" in lines and "- old: quota removed (cpu 8, memory 32Gi, storage 1Ti)" in lines


def test_nothing_a_pull_request_wrote_is_read_as_markdown_or_html():
    hostile = d("specs/teams/nlp.yaml", "KF204", "value '```\n<img src=x onerror=alert(1)> @org/admins [x](https://e)'"
                " is not allowed")
    change = DiffReport(changes=[Change("dev", "nlp", "image", "nlp, dev: image <b>x</b> @org/admins [x](y) → `z`")])
    body = comment(Report([hostile]), change, "origin/main", {"specs/teams/nlp.yaml"})
    fence = re.search(r"^(`{3,})$", body, re.M).group(1)
    assert len(fence) == 4 and body.count("\n" + fence + "\n") == 2  # longer than the ``` inside: nothing escapes
    assert r"- nlp: image \<b\>x\</b\> \@org/admins \[x\](y) → \`z\`" in body


def test_the_comment_stays_under_githubs_limit_for_a_thousand_team_change():
    changes = [Change(env, f"team-{i:04d}", "quota", f"team-{i:04d}, {env}: GPU quota a100 {i % 7} → {i % 7 + 1} "
                      f"({env} capacity 4000, allocated 1000 → 1001)") for env in ("dev", "staging", "prod")
               for i in range(1000)]
    findings = [d(f"specs/teams/team-{i:04d}.yaml", "KF305", "profile 'gpu' does not fit the quota " + "x" * 40)
                for i in range(1000)]
    body = comment(Report(findings), DiffReport(changes=changes), "origin/main",
                   {f"specs/teams/team-{i:04d}.yaml" for i in range(1000)})
    assert len(body) <= LIMIT + 200 < 65536 and body.startswith(MARKER + "\n## ❌ kflowgen gate: 1000 errors\n")
    assert re.search(r"\n… \d+ more lines not shown: run `kflowgen gate --base origin/main` for all of them\n$", body)
    assert body.count("```") % 2 == 0  # a block the cut fell in is closed
    small = comment(Report(findings[:3]), DiffReport(changes=changes[:3]), "origin/main", None)
    assert "not shown" not in small


# --- the change by its cause: compare() of two sides and the spec files that differ ----------------------------

def spec(path, text):
    from kflowgen.specs.loader import load_text

    found, diags = load_text(text, path)
    assert found is not None, diags
    return found


def side(objects=(), sweeps=()):
    from kflowgen.flow.diff import Side

    return Side(envs=["dev", "prod"], sweeps=set(sweeps), objects={key: (team, obj) for key, team, obj in objects},
                clusters={"dev": "https://dev.k8s.example.com", "prod": "https://prod.k8s.example.com"})


def job(env, team, exp, name):
    return (env, "Job", team, name), team, {"kind": "Job", "metadata": {"name": name, "labels": {
        "kflowgen.dev/experiment": exp}}}


def served(env, team, model, kind, name, version="1"):
    return (env, kind, team, name), team, {"kind": kind, "metadata": {"name": name, "labels": {
        "kflowgen.dev/model": model}}, "spec": {"template": {"metadata": {"labels": {
            "kflowgen.dev/model-version": version}}}}}


SWEEP = """team: nlp
name: bert
run: python train.py
hyperparameters: {epochs: 10, lr: 1e-3}
sweep: {grid: {dropout: [0.1, 0.2, 0.3]}}
resources: {cpu: 4, memory: 16Gi}
environments: [dev]
"""
DETECTOR = """team: vision
name: detector
path: models/detector
environments:
  dev: {version: 4, cpu: 2, memory: 4Gi}
  prod: {version: 3, replicas: 2, cpu: 4, memory: 8Gi}
"""


def changes_of(base, head, specs):
    from kflowgen.report.changes import compare

    return compare(base, head, specs)


def test_a_promotion_is_the_model_its_version_and_its_size_not_its_objects():
    old, new = spec("specs/models/vision/detector.yaml", DETECTOR), spec(
        "specs/models/vision/detector.yaml", DETECTOR.replace("version: 3", "version: 4"))
    base = side([served("prod", "vision", "detector", "Deployment", "detector", "3")])
    head = side([served("prod", "vision", "detector", "Deployment", "detector", "4")])
    body = comment(Report(), changes_of(base, head, {old.path: (old, new)}), "origin/main", {old.path})
    assert body.split("### What changes against origin/main\n\n")[1] == """\
1 change in 1 environment

**prod**

- vision: model detector v3 → v4 (2 replicas × 4 CPU, 8Gi)
"""


def test_a_sweep_rerun_says_which_field_and_how_many_trials():
    old, new = spec("specs/experiments/nlp/bert.yaml", SWEEP), spec(
        "specs/experiments/nlp/bert.yaml", SWEEP.replace("epochs: 10", "epochs: 20"))
    base = side([job("dev", "nlp", "bert", f"bert-{i}-old") for i in range(3)], sweeps=[("nlp", "bert")])
    head = side([job("dev", "nlp", "bert", f"bert-{i}-new") for i in range(3)], sweeps=[("nlp", "bert")])
    body = comment(Report(), changes_of(base, head, {old.path: (old, new)}), "origin/main", {old.path})
    assert "- nlp: sweep bert re-run because epochs 10 → 20 (3 trials; the previous 3 kept until the experiment is " \
           "archived)\n" in body
    # a value more in the grid only adds trials; the values are shown as written (1e-3 stays 1e-3)
    grown = spec(old.path, SWEEP.replace("[0.1, 0.2, 0.3]", "[0.1, 0.2, 0.3, 0.4]").replace("1e-3", "3e-4"))
    head = side([*(job("dev", "nlp", "bert", f"bert-{i}-old") for i in range(3)), job("dev", "nlp", "bert", "bert-4")],
                sweeps=[("nlp", "bert")])
    texts = [c.text for c in changes_of(base, head, {old.path: (old, grown)}).changes]
    assert texts == ["nlp, dev: sweep bert: 1 trial added because lr 1e-3 → 3e-4, grid dropout [0.1, 0.2, 0.3] → "
                     "[0.1, 0.2, 0.3, 0.4]"]


def test_jobs_changed_by_the_team_spec_say_so():
    base = side([job("dev", "nlp", "bert", "bert-old")])
    head = side([job("dev", "nlp", "bert", "bert-new")])
    texts = [c.text for c in changes_of(base, head, {"specs/teams/nlp.yaml": (None, None)}).changes]
    assert texts == ["nlp, dev: experiment bert re-run because specs/teams/nlp.yaml changed (1 trial; the previous 1 "
                     "kept until the experiment is archived)"]


def test_a_model_added_and_one_that_stops_serving_in_prod():
    new = spec("specs/models/vision/detector.yaml", DETECTOR)
    head = side([served(env, "vision", "detector", kind, "detector") for env in ("dev", "prod")
                 for kind in ("Deployment", "Service", "ConfigMap")])
    report = changes_of(side(), head, {new.path: (None, new)})
    assert [c.text for c in report.changes] == ["vision, dev: model detector v4 added (1 replica × 2 CPU, 4Gi)",
                                                "vision, prod: model detector v3 added (2 replicas × 4 CPU, 8Gi)"]
    dev_only = spec(new.path, DETECTOR[:DETECTOR.index("  prod:")])
    report = changes_of(head, side([o for o in head.objects.items() if False]), {new.path: (new, dev_only)})
    body = comment(Report(), report, "origin/main", {new.path})
    assert "- ⚠ vision, prod: model detector stops serving in prod (was v3, 2 replicas × 4 CPU, 8Gi)\n" in body
    assert body.index("⚠ Read first") < body.index("**dev**")


def test_a_team_leaving_is_one_line_read_first_with_the_command_to_run_after_the_backup():
    objects = [(("prod", "Namespace", "", "recsys"), "recsys", {"kind": "Namespace", "metadata": {"name": "recsys"}}),
               (("prod", "PersistentVolumeClaim", "recsys", "nas"), "recsys", {"kind": "PersistentVolumeClaim",
                                                                                "metadata": {"name": "nas"}}),
               (("prod", "ResourceQuota", "recsys", "team"), "recsys", {"kind": "ResourceQuota",
                                                                        "metadata": {"name": "team"}})]
    body = comment(Report(), changes_of(side(objects), side(), {}), "origin/main", set())
    lines = body.splitlines()
    first = lines.index("**⚠ Read first: teams leaving, models no longer served, namespaces, volumes and projects "
                        "removed**")
    assert lines[first + 2] == (
        "- ⚠ recsys, prod: recsys leaves prod: Namespace recsys and its NAS (PersistentVolumeClaim nas) stay in the "
        "cluster, and so do its quota, network policy, access and Jobs (Argo CD: Prune=false, Delete=false); to "
        "delete them after backing up the NAS: kubectl --server https://prod.k8s.example.com delete namespace recsys")
    assert "- recsys: team removed: ResourceQuota" in lines


def test_a_renamed_experiment_is_one_removed_and_one_added():
    old, new = spec("specs/experiments/nlp/bert.yaml", SWEEP), spec(
        "specs/experiments/nlp/bert.yaml", SWEEP.replace("name: bert", "name: bert2"))
    base = side([job("dev", "nlp", "bert", "bert-a")], sweeps=[("nlp", "bert")])
    head = side([job("dev", "nlp", "bert2", "bert2-a")], sweeps=[("nlp", "bert2")])
    assert [c.text for c in changes_of(base, head, {old.path: (old, new)}).changes] == [
        "nlp, dev: sweep bert removed: its 1 Job leaves Git and stays in the cluster (Argo CD: Prune=false); to delete "
        "it: kubectl --server https://dev.k8s.example.com -n nlp delete jobs -l kflowgen.dev/experiment=bert",
        "nlp, dev: sweep bert2 added (1 trial)"]


def test_a_value_shown_by_its_cause_stays_on_its_line_and_short():
    """A field's value as the pull request writes it, in a quoted scalar with line breaks, cannot start lines of its
    own in the comment (a forged ⚠ line, a heading), nor, thousands of characters long, push the other changes out
    of the comment: a line break is shown as \\n, and a long value cut."""
    forged = "python train.py\r\n\n- ⚠ vision: model detector stops serving in prod\n\n### All clear " + "x" * 5000
    old, new = spec("specs/experiments/nlp/bert.yaml", SWEEP), spec(
        "specs/experiments/nlp/bert.yaml", SWEEP.replace("run: python train.py", "run: " + json.dumps(forged)))
    base = side([job("dev", "nlp", "bert", f"bert-{i}-old") for i in range(3)], sweeps=[("nlp", "bert")])
    head = side([job("dev", "nlp", "bert", f"bert-{i}-new") for i in range(3)], sweeps=[("nlp", "bert")])
    body = comment(Report(), changes_of(base, head, {old.path: (old, new)}), "origin/main", {old.path})
    (line,) = [line for line in body.splitlines() if "sweep bert" in line]
    assert line.startswith(r"- nlp: sweep bert re-run because run python train.py → python train.py\\r\\n\\n- ⚠ vision:")
    assert "⚠" not in body.replace(line, "") and "All clear" not in body and "x" * 100 not in body
    assert len(line) < 300 and line.endswith("(3 trials; the previous 3 kept until the experiment is archived)")


def test_diff_s_own_markdown_reads_nothing_a_pull_request_wrote_as_markdown():
    """`kflowgen diff --format markdown` (for a comment or the job summary) escapes text from specs as the gate's
    comment does, and its block of findings is fenced longer than any backticks inside."""
    from kflowgen.report.changes import render_markdown

    hostile = DiffReport(changes=[Change("dev", "nlp", "image", "nlp, dev: image <img src=x> @org/admins [x](y) → `z`\n"
                                         "# forged")], diagnostics=[d("specs/teams/nlp.yaml", "KF204", "'```\n# x'")])
    body = render_markdown(hostile)
    assert r"- **nlp**: image \<img src=x\> \@org/admins \[x\](y) → \`z\`\\n\# forged" in body.splitlines(), body
    fence = re.search(r"^(`{3,})$", body, re.M).group(1)
    assert len(fence) == 4 and body.count("\n" + fence + "\n") == 2, body
    ok = render_markdown(DiffReport(changes=[Change("dev", "nlp", "image", "nlp, dev: image <b>x</b> → `z`")]))
    assert r"- **nlp**: image \<b\>x\</b\> → \`z\`" in ok, ok
