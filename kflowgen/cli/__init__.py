"""The command line: options in, one library call, a report out. Exit 0 clean, 1 findings, 2 usage, 3 bug, 130 ^C.
Each command imports the stages it runs, so that `--help` loads none (tests/test_architecture.py checks it)."""
from __future__ import annotations

import gc
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from kflowgen import __version__
from kflowgen.cli.base import (Fmt, Format, Jobs, NoCache, Repo, Timings, _done, _early, _finish, _options, _prestart,
                               _titles, app, tools_app)
from kflowgen.diagnostics import Diagnostic, Report
from kflowgen.report.progress import progress_bars


@app.command()
def validate(env: Annotated[Optional[str], typer.Option("--env", "-e", help="Only this environment.")] = None,
             fmt: Fmt = Format.auto, jobs: Jobs = None, no_cache: NoCache = False,
             server: Annotated[bool, typer.Option("--server", help="Also apply every built object with server-side "
                                                  "dry-run to a local, throw-away kube-apiserver (built by "
                                                  "`kflowgen tools install --server`).")] = False,
             timings: Timings = False, repo: Repo = Path(".")) -> None:
    """Check everything a pull request must pass: spec schemas, checks across specs, a kustomize build of every
    overlay, strict schema validation and policy on every built object. Writes nothing in the repository."""
    early = _early(repo, not no_cache)
    from kflowgen.flow import pipeline

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings, early)
        rep = pipeline.validate(opts, env, server)
    _finish(rep, fmt, opts)


@app.command(name="render")
def render_cmd(check: Annotated[bool, typer.Option("--check", help="Write nothing; fail if overlays/ differs "
                                                   "from what the specs render (the drift gate).")] = False,
               fmt: Fmt = Format.auto, jobs: Jobs = None, no_cache: NoCache = False, timings: Timings = False,
               repo: Repo = Path(".")) -> None:
    """Write the generated overlays (overlays/<env>/...) from the specs. Only changed files are touched."""
    early = _early(repo, not no_cache)
    from kflowgen.flow import pipeline

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings, early)
        rep = pipeline.render_to_disk(opts, check)
    _finish(rep, fmt, opts)


@app.command()
def build(env: Annotated[str, typer.Argument(help="Environment, e.g. dev.")],
          team: Annotated[Optional[str], typer.Option("--team", "-t", help="Only this team's overlays.")] = None,
          timings: Timings = False, repo: Repo = Path(".")) -> None:
    """Print the fully built manifests of an environment, as Argo CD sees them (from the specs, not from disk)."""
    from kflowgen.flow import pipeline
    from kflowgen.report import formats

    opts = _options(repo, timings=timings)
    built, rep = pipeline.build_environment(opts, env, team)
    with opts.timed("report"):
        text = "".join(f"---\n# Source: {overlay}\n{text}" for overlay, text in built.items())
        if rep.diagnostics:
            sys.stderr.write(formats.render(rep, "text"))
    _done(text, rep.exit_code, opts)


class DiffFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"
    github = "github"
    junit = "junit"
    sarif = "sarif"


@app.command()
def diff(base: Annotated[str, typer.Option("--base", "-b", help="Git ref to compare the working tree with.")]
         = "origin/main",
         fmt: Annotated[DiffFormat, typer.Option("--format", "-f", help="text, markdown (a pull-request comment "
                                                 "or $GITHUB_STEP_SUMMARY), json, or github, junit, sarif for the "
                                                 "diff's diagnostics.")] = DiffFormat.text,
         jobs: Jobs = None, no_cache: NoCache = False, timings: Timings = False, repo: Repo = Path(".")) -> None:
    """Say what a change does to each cluster, without reading generated YAML: quota against capacity, objects
    added, changed and removed, image and model version changes; deletions of namespaces, volumes and projects
    first. Renders and builds the specs at --base and in the working tree."""
    early = _early(repo, not no_cache)
    from kflowgen.flow import diff as differ
    from kflowgen.report import changes, formats

    opts = _options(repo, jobs, not no_cache, timings=timings, early=early)
    result = differ.diff_git(opts, base)
    own = {"text": changes.render_text, "markdown": changes.render_markdown, "json": changes.render_json}
    with opts.timed("report"):
        if fmt.value in own:
            text = own[fmt.value](result)
        else:  # CI formats: the diff's diagnostics through the one reporter registry, the changes as its summary
            text = formats.render(Report(list(result.diagnostics), changes.change_lines(result)), fmt.value,
                                  _titles(fmt.value))
    _done(text, result.exit_code, opts)


@app.command()
def gate(base: Annotated[str, typer.Option("--base", "-b", help="Git ref the pull request goes into.")]
         = "origin/main",
         fmt: Fmt = Format.auto,
         markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also append the diff as markdown to "
                                                          "this file, e.g. \"$GITHUB_STEP_SUMMARY\".",
                                                          dir_okay=False)] = None,
         jobs: Jobs = None, no_cache: NoCache = False, timings: Timings = False, repo: Repo = Path(".")) -> None:
    """The whole pull-request gate in one process: `validate`, `render --check` and `diff --base`, which share
    the working tree's loaded specs, rendered files and builds. Findings of all three, then the diff's changes."""
    early = _early(repo, not no_cache)
    from kflowgen.flow import pipeline
    from kflowgen.report import changes

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings, early)
        rep, result = pipeline.gate(opts, base)
    with opts.timed("report"):
        if markdown is not None:  # the pull-request comment: pass or fail, every finding once, then the change
            from kflowgen.flow.diff import changed_paths
            from kflowgen.report.comment import comment

            with open(markdown, "a", encoding="utf-8") as f:
                f.write(comment(rep, result, base, changed_paths(repo, base)))
        if result is not None:
            rep.extend(result.diagnostics)
            rep.summary += [f"against {base}:", *(f"  {line}" for line in changes.change_lines(result)),
                            changes.tally(result)]
    _finish(rep, fmt, opts)


@app.command()
def promote(target: Annotated[str, typer.Argument(help="TEAM/MODEL, e.g. recsys/ranker.")],
            src: Annotated[Optional[str], typer.Option("--from", help="Environment whose version to copy, e.g. staging.")] = None,
            dst: Annotated[Optional[str], typer.Option("--to", help="Environment to change, e.g. prod.")] = None,
            finish: Annotated[Optional[str], typer.Option(
                "--finish", help="Environment whose canary to finish: its version then serves every request.")] = None,
            repo: Repo = Path(".")) -> None:
    """Serve in --to the model version --from serves: edits one line of specs/models/TEAM/MODEL.yaml, re-renders
    the overlays, and prints the change. Commit both in one pull request. All or nothing: when the promoted specs
    do not validate (another spec broken, the new version over quota), neither the spec nor the overlays change.
    With --finish ENV instead (a KServe canary): removes the canary and previous lines of ENV, so that the canary's
    version serves every request."""
    from kflowgen.flow import pipeline, promote as promotion

    if (finish is None) == (src is None or dst is None) or finish is not None and (src or dst):
        raise typer.BadParameter("give --from and --to, or --finish alone")
    team, _, model = target.partition("/")
    change, diags = (promotion.finish(repo, team, model, finish) if finish is not None
                     else promotion.promote(repo, team, model, src, dst))
    rep = Report(diags)
    if change is not None and change.data is None:
        sys.stdout.write(change.message)
    elif change is not None:
        rep = pipeline.render_to_disk(_options(repo), False, edits={change.path: change.data})
        if not rep.errors:
            sys.stdout.write(change.message)
    _finish(rep, Format.text)


@app.command()
def archive(spec: Annotated[Path, typer.Argument(help="An experiment spec, e.g. specs/experiments/nlp/x.yaml.")],
            repo: Repo = Path(".")) -> None:
    """Archive a finished experiment: sets `archived: true` in its spec and re-renders, so its Jobs leave Git (the
    spec stays, as the record of what ran); prints the change and the command that deletes the Jobs from each
    cluster. Commit both in one pull request. All or nothing, as promote."""
    from kflowgen.flow import pipeline, promote as edit
    from kflowgen.targets.training import delete_command

    opts = _options(repo)
    model, diags = pipeline.load(opts)
    rep = Report(diags)
    if model is not None and not rep.errors:
        found = pipeline.experiment_at(model, opts.root, spec)
        change, diags = (None, [found]) if isinstance(found, Diagnostic) else edit.archive(opts.root, found)
        rep.extend(diags)
        if change is not None and change.data is None:
            sys.stdout.write(change.message)
        elif change is not None:
            rep = pipeline.render_to_disk(opts, False, edits={change.path: change.data})
            if not rep.errors:
                team = next(t for t in model.teams if t.name == found.team)
                sys.stdout.write(change.message + "".join(
                    f"  {delete_command(found, team, model.platform, env)}\n" for env in found.environments
                    if env in model.platform.environments))
    _finish(rep, Format.text)


@app.command()
def explain(spec: Annotated[Path, typer.Argument(help="An experiment spec, e.g. specs/experiments/vision/x.yaml.")],
            repo: Repo = Path(".")) -> None:
    """Say in plain words what an experiment becomes: its trials, on how many machines with which GPUs, where, how
    many at once, with which command lines. Findings about other files are counted, not shown: `validate` lists them."""
    from kflowgen.flow import pipeline
    from kflowgen.targets.training import explain as describe

    model, diags = pipeline.load(_options(repo))
    rep = Report(diags)
    if model is not None:
        found = pipeline.experiment_at(model, repo, spec)
        if isinstance(found, Diagnostic):
            rep.extend([found])
        else:
            sys.stdout.write(describe(found, next(t for t in model.teams if t.name == found.team), model.platform,
                                      [m for m in model.served if m.team == found.team]))
            rep = Report([d for d in diags if d.path == found.source.path])
            if elsewhere := len(diags) - len(rep.diagnostics):
                sys.stderr.write(f"kflowgen: {elsewhere} finding(s) in other files of the repository; "
                                 "`kflowgen validate` lists them\n")
    if rep.diagnostics:
        _finish(rep, Format.text)


@tools_app.command("install")
def tools_install(server: Annotated[bool, typer.Option("--server", help="Also build etcd, kube-apiserver and "
                                                       "kube-controller-manager for `validate --server` (about 10-20 "
                                                       "minutes and 2.2 GB of memory the first time).")] = False
                  ) -> None:
    """Build the pinned kustomize and kubeconform with `go install` into the tools folder (skipped when present)."""
    from kflowgen import tools

    raise typer.Exit(tools.install(tools.BASE + (tools.SERVER if server else ()),
                                   log=lambda m: print(m, file=sys.stderr)))


@tools_app.command("status")
def tools_status(repo: Repo = Path(".")) -> None:
    """Show which kustomize and kubeconform kflowgen would run."""
    from kflowgen import tools

    lines, code = tools.status(repo)
    print("\n".join(lines))
    raise typer.Exit(code)


@app.command()
def schema(out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.", file_okay=False)]
           = Path("schemas")) -> None:
    """Write the spec JSON Schemas (platform, team, experiment, model) for editors: with the YAML extension,
    a first line `# yaml-language-server: $schema=../../schemas/team.schema.json` gives completion and checks."""
    from kflowgen.specs import schema as specschema

    out.mkdir(parents=True, exist_ok=True)
    for kind in specschema.KINDS:
        (out / f"{kind}.schema.json").write_text(specschema.schema_text(kind))
    print(f"wrote {', '.join(f'{k}.schema.json' for k in specschema.KINDS)} to {out}")


@app.command()
def version() -> None:
    """Print kflowgen's version."""
    print(f"kflowgen {__version__}")


def main() -> None:
    """Console entry point: the one place that turns exceptions into exit codes.

    A run is short and makes its data once (hundreds of thousands of small objects at a thousand teams, few of them
    in reference cycles), so Python's cycle collector, which would walk all of them again and again while they are
    made, is off; and the process ends without tearing that data down object by object."""
    gc.disable()
    _prestart(sys.argv[1:])  # the listing of specs/, while typer parses the options
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # e.g. `kflowgen build dev | head` closed the pipe: nothing left to say
                pass
        os._exit(code)
    except KeyboardInterrupt:
        print("kflowgen: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug in kflowgen, not in the specs
        from kflowgen.cache import Lost  # (loaded already by whatever raised it)

        if isinstance(e, Lost):  # the result cache lost what it vouched for: what to do, not a traceback
            print(f"kflowgen: {e}", file=sys.stderr)
            sys.exit(3)
        print("kflowgen: internal error (exit 3). Please report it with the output below.", file=sys.stderr)
        traceback.print_exc()
        sys.exit(3)


from kflowgen.cli import new  # noqa: E402  (registers init, new and import on the apps above)

__all__ = ["app", "main", "new"]
