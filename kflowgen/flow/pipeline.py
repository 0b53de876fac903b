"""The pipeline: load -> validate -> model -> render -> write/check -> build -> verify -> report. This module only
calls the stages, in that order, for each command: validate, render (and render --check), gate and build."""
from __future__ import annotations

import subprocess

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kflowgen import cache, survey as listings
from kflowgen.build import Built, build, overlays_of
from kflowgen.checks import codeowners, policy, verify
from kflowgen.diagnostics import Diagnostic, Report, error
from kflowgen.flow import diff, gitref, scope, scoped
from kflowgen.flow.load import load, load_then, render_stage
from kflowgen.flow.side import Facts
from kflowgen.options import Options
from kflowgen.report import summary
from kflowgen.specs import layout
from kflowgen.specs.discover import PLATFORM
from kflowgen.specs.experiment import Experiment
from kflowgen.specs.model import Model, specs_of
from kflowgen.tools import ask_ahead
from kflowgen.targets.cached import Rendered
from kflowgen.targets.files import Files
from kflowgen.write import writer
from kflowgen.write.departures import departures, offboarding

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF702": "nothing to build for the environment or team given",
    "KF704": "file given to `explain` or `archive` is not an experiment spec of this repository",
}

__all__ = ["Checked", "build_environment", "checked", "experiment_at", "gate", "load", "render_to_disk", "validate"]


@dataclass(frozen=True)
class Checked:
    """What validate found, and what it made on the way (for the gate's diff, which compares the same head)."""

    report: Report
    model: Model | None = None
    rendered: Rendered | None = None
    built: Built | None = None  # None unless every overlay built
    tools: dict[str, str] | None = None  # the tools that built and checked, as the summary names them


def validate(opts: Options, env: str | None = None, server: bool = False) -> Report:
    """Everything the gate checks: specs, cross-file rules, build of every overlay, strict schema validation,
    policy. With the cache, only overlays whose inputs changed are built and checked again."""
    done = checked(opts, env, server)
    if env is None:
        with opts.timed("cache"):
            head_side(opts, done)
    return done.report


def checked(opts: Options, env: str | None = None, server: bool = False, drift: bool = False) -> Checked:
    """validate's work; with drift, also render --check's (the committed overlays are what the specs render)."""
    started = listings.survey(opts.root, git=drift, behind=True)  # overlays/ is listed while the specs load
    ask_ahead(opts.root)  # the tools' versions, which build and verify ask, while the specs load
    try:
        return _checked(opts, env, server, drift, started)
    finally:
        listings.finish(started)  # waited for already unless a stage stopped early or raised


def _checked(opts: Options, env: str | None, server: bool, drift: bool, started: list) -> Checked:
    root, report = opts.root, Report()
    model, diags, rendered = load_then(opts, partial(_render_known, opts, env))
    report.extend(diags)
    if model is None:
        return Checked(report)
    if rendered is None:  # (env is not the model's)
        report.extend([_unknown_environment(model, env)])
        return Checked(report, model)
    with opts.timed("validate"):
        report.extend(codeowners.check(root, model))
    envs = [env] if env else list(model.platform.environments)
    with opts.timed("check"):
        # render --check's drift check; validate too refuses any file under overlays/ that the specs do not render
        plan, found = writer.check(root, rendered.files, opts.jobs, started, compare=drift, ids=rendered.ids)
        report.extend(found)
        report.extend(departures(root, model, rendered.files, envs))
        report.extend(offboarding(model, envs))
    every = overlays_of(rendered)
    overlays = [o for e in envs for o in every if o.startswith(f"overlays/{e}/")]
    with opts.timed("values"):  # (reported with the other checks of built output, below) before the build, while the
        # run holds least: at 10,000 teams the values file is 23 MB, and its parsed values take 130 MB for a moment
        hub = verify.hub_values(root, model, rendered.files, envs, opts.store)
    with opts.timed("build"):
        built, diags = build(opts, rendered, overlays)
    report.extend(diags)
    server_lines: list[str] = []
    tools = dict(built.tools)
    if not diags:
        with opts.timed("verify"):
            report.extend(_verified(opts, model, env, built, tools, hub))
        if server and not report.errors:  # a real kube-apiserver: admission, defaulting, names, CEL, strict fields
            from kflowgen.checks import server as apiserver

            with opts.timed("server"):
                crds = verify.crd_files(root, model.platform)  # an error here was reported by the schema check
                found, server_lines = apiserver.check(root, [c for c in crds if isinstance(c, Path)], built,
                                                      opts.jobs)
            report.extend(found)
    with opts.timed("report"):
        if not report.errors:
            report.summary = summary.summary(model, built, envs, tools) + server_lines
        if drift:
            report.summary += [summary.drift(rendered.files, plan)]
    return Checked(report, model, rendered, None if diags else built, tools)


def _render_known(opts: Options, env: str | None, model: Model) -> Rendered | None:
    """The render, unless env is not one of the model's environments (then that is all the run says)."""
    return render_stage(opts, model) if not env or env in model.platform.environments else None


def _verified(opts: Options, model: Model, env: str | None, built: Built, tools: dict[str, str],
              hub: list[Diagnostic]) -> list[Diagnostic]:
    """Strict schema validation of every built object, then the hub values' findings (hub), and policy (adds the
    tools used to tools)."""
    # kubeconform (its own process, `jobs` threads) runs, on what the cache does not hold, while this process
    # checks policy
    job, used = verify.manifests_job(opts.root, model, built, opts.jobs, cache.default_folder(), opts.store)
    tools.update(used)
    with ThreadPoolExecutor(max_workers=1) as pool:
        schemas = pool.submit(job)
        others = hub + policy.checked(model, env, built, opts.store)
        found = schemas.result()
    return found + others


def _unknown_environment(model: Model, env: str) -> Diagnostic:
    return error(PLATFORM, model.platform.source.at("/environments", key=True), "KF303",
                 f"environment '{env}' is not defined", f"environments: {', '.join(model.platform.environments)}")


def experiment_at(model: Model, repo: Path, spec: Path) -> Experiment | Diagnostic:
    """The experiment whose spec file is `spec` (a path as typed: from the current folder, or from the repository
    when it is not found there), or an error saying it is not one."""
    target = (spec if spec.is_absolute() or spec.exists() else repo / spec).resolve()
    for e in model.experiments:
        if (repo / e.source.path).resolve() == target:
            return e
    return error(str(spec), (0, 0), "KF704", "not an experiment spec of this repository",
                 "give the path of a file under specs/experiments/")


def gate(opts: Options, base: str) -> tuple[Report, diff.DiffReport | None]:
    """The pull-request gate in one process: validate, render --check and diff --base, sharing the head's
    loaded specs, rendered files and builds (three commands would each load, render and build the head again).
    Returns (the validate and drift report, the diff against base, or None when the head does not build). A change
    to some teams' experiments only, on a base main's CI judged, is judged in scope (flow.scoped), to the same result.
    """
    started = gitref.started(opts.root, base)  # the base's listing, while the head is checked (or the scope found)
    try:
        return scoped.gate(opts, base, started) or _gate(opts, base, started)
    finally:
        listings.finish(started)  # waited for already unless a stage stopped early or raised


def _gate(opts: Options, base: str, started: list) -> tuple[Report, diff.DiffReport | None]:
    report, head = _head(opts, base)
    if head is None:
        return report, None
    return report, diff.diff_git(opts, base, head=head, started=started)


def _head(opts: Options, base: str) -> tuple[Report, diff.Side | None]:
    """The gate's check of the head, and the head as a side of the diff, which holds on to no model: the model, the
    specs and what renders them are let go before the base is read (Files.release)."""
    done = checked(opts, drift=True)
    if done.model is not None and done.rendered is not None:  # teams the pull request takes out of an environment
        seen = set(done.report.diagnostics)
        envs = list(done.model.platform.environments)
        done.report.extend(d for d in departures(opts.root, done.model, done.rendered.files, envs,
                                                 _namespaces_at(opts, base, envs, done.rendered.files))
                           if d not in seen)
    with opts.timed("compare"):
        head = head_side(opts, done, keep=False)
    if head is not None and isinstance(done.rendered.files, Files):
        done.rendered.files.release()
    return done.report, head


def _namespaces_at(opts: Options, base: str, envs: list[str], files: dict[str, bytes]) -> list[str]:
    """The namespace files committed at `base` of the teams whose namespace the head no longer renders (none when
    git cannot list them: the diff reports why). One level of each environment's teams/ folder is listed, not
    every generated file, and only the teams that left are looked into."""
    if gitref.option_like(base):
        return []  # the diff refuses it
    folders = [f"{layout.OVERLAYS}/{env}/teams/" for env in envs]
    out = subprocess.run(["git", "-C", str(opts.root), "ls-tree", "--name-only", base, "--", *folders],
                         capture_output=True, text=True)
    if out.returncode:
        return []
    teams = [p for p in out.stdout.splitlines()
             if any(p.startswith(f) for f in folders) and f"{p}/platform/namespace.yaml" not in files]
    found = subprocess.run(["git", "-C", str(opts.root), "ls-tree", "--name-only", base, "--",
                            *(f"{t}/platform/namespace.yaml" for t in teams)], capture_output=True, text=True)
    return found.stdout.splitlines() if teams and not found.returncode else []


def head_side(opts: Options, done: Checked, keep: bool = True) -> diff.Side | None:
    """The working tree as one side of a diff, when every overlay built. With keep, it is kept in the cache when it
    is also free of errors, so that a pull request branching from this commit (validated on main) recalls it as its
    base instead of rebuilding it; a pull request's own gate does not keep its head (nothing branches from it)."""
    if done.built is None or done.model is None or done.rendered is None:
        return None
    side = diff.side(done.model, done.rendered.files, done.built, opts.root)
    if keep and not done.report.errors:
        found = Facts(dict(done.built.sizes), len(done.rendered.files), sorted(set(done.report.diagnostics)),
                      dict(done.tools or {}), {s.path: s.digest for s in specs_of(done.model.served)})
        diff.remember(opts, done.model, side, done.built.keys, done.rendered.units, found=found)
    return side


def render_to_disk(opts: Options, check_only: bool, edits: dict[str, bytes] | None = None) -> Report:
    """render and render --check. With edits ({spec path: bytes}, a change such as a promotion), the specs are read
    as edited, and the edited spec files are written with the overlays, or, on any finding, nothing is."""
    # (with the cache, whether the work tree is HEAD's: a check that finds nothing on HEAD's own files is kept; git's
    # listings, read only then, are stopped when the check finds something, not waited for: 2 s at 10,000 teams)
    status = scope.status(opts.root) if check_only and not edits and opts.store.folder is not None else []
    try:
        return _render_to_disk(opts, check_only, edits, status)
    finally:
        listings.stop(status)


def _render_to_disk(opts: Options, check_only: bool, edits: dict[str, bytes] | None, status: list) -> Report:
    report = Report()
    model, diags, rendered = load_then(opts, partial(render_stage, opts), edits=edits)
    report.extend(diags)
    if model is None or rendered is None:
        return report
    files = rendered.files
    with opts.timed("check" if check_only else "write"):
        plan, found = (writer.check(opts.root, files, opts.jobs, ids=rendered.ids) if check_only
                       else writer.write(opts.root, files, opts.jobs, edits))
    report.extend(found)
    if status and not report.errors:
        with opts.timed("cache"):
            scope.record_clean(opts.root, opts.store, listings.results(status))
    with opts.timed("report"):
        if check_only:
            report.summary = [summary.drift(files, plan)]
        elif not found:
            report.summary = [summary.written(files, plan)]
    return report


def build_environment(opts: Options, env: str, team: str | None = None) -> tuple[dict[str, str], Report]:
    """kflowgen build: the fully built manifests of an environment (or of one team in it), from the specs, not from
    disk: {overlay: built YAML}."""
    model, diags, rendered = load_then(opts, partial(render_stage, opts))
    report = Report(diags)
    if model is None or rendered is None:
        return {}, report
    overlays = overlays_of(rendered, env, team)
    if env not in model.platform.environments:
        report.extend([_unknown_environment(model, env)])
        return {}, report
    if not overlays:
        there = sorted({t for o in overlays_of(rendered, env) if (t := layout.place(o).team)})
        spec = next((t.source.path for t in model.teams if t.name == team), "specs/teams")
        report.extend([error(spec, (0, 0), "KF702", f"nothing to build for team '{team}' in {env}: "
                             + ("it has no quota there" if spec != "specs/teams" else "no such team"),
                             f"teams in {env}: {', '.join(there) or 'none'}")])
        return {}, report
    with opts.timed("build"):
        built, diags = build(opts, rendered, overlays)
    report.extend(diags)
    return built.overlays, report
