"""The command line: options in, one library call, a report out. Exit 0 clean, 1 findings, 2 usage, 3 bug, 130 ^C.
Each command imports the stages it runs, so that `--help` loads none (tests/test_architecture.py checks it)."""
from __future__ import annotations

import contextlib
import gc
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from kflowgen import __version__
from kflowgen.diagnostics import Diagnostic, Report
from kflowgen.report.progress import progress_bars

if TYPE_CHECKING:
    from kflowgen.options import Options

app = typer.Typer(
    help="kflowgen turns short team specs into validated kustomize overlays that Argo CD syncs to your clusters.\n\n"
         "Specs live in specs/ (platform.yaml, teams/*.yaml); kflowgen writes overlays/. Start with `kflowgen validate`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
new_app = typer.Typer(help="Write a new, commented spec to edit.", no_args_is_help=True)
tools_app = typer.Typer(help="The pinned kustomize and kubeconform kflowgen runs.", no_args_is_help=True)
import_app = typer.Typer(help="Turn another tool's experiment config into a kflowgen spec.", no_args_is_help=True)
app.add_typer(new_app, name="new")
app.add_typer(import_app, name="import")
app.add_typer(tools_app, name="tools")


class Format(str, Enum):
    auto = "auto"
    text = "text"
    json = "json"
    github = "github"
    junit = "junit"
    sarif = "sarif"


def _find_repo(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    """Without -C, the repository is the current folder or the nearest one above it holding specs/platform.yaml
    (as git finds its work tree), so commands work from any folder inside it, a notebook's project folder too."""
    source = ctx.get_parameter_source(param.name)
    if source is None or source.name != "DEFAULT":
        return value
    from kflowgen.specs.discover import PLATFORM

    here = Path.cwd()
    return next((Path(os.path.relpath(d, here)) for d in (here, *here.parents) if (d / PLATFORM).is_file()), value)


Repo = Annotated[Path, typer.Option("--repo", "-C", help="Repository root (the folder holding specs/; default: the "
                                    "current folder or the nearest one above it that holds specs/platform.yaml).",
                                    file_okay=False, callback=_find_repo)]
Fmt = Annotated[Format, typer.Option("--format", "-f", help="Output: text, json, github annotations, junit "
                                     "or sarif (auto: github under GitHub Actions, else text).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Processes and builds at once (default: "
                                                                       "number of cores).")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do all the work again, ignoring the result cache "
                                       "($KFLOWGEN_CACHE, default ~/.cache/kflowgen).")]
Timings = Annotated[bool, typer.Option("--timings", help="Also print how long each stage took, as `timings: STAGE N "
                                       "ms` lines on stderr after the output (which stays as it is).")]


def _options(repo: Path, jobs: int | None = None, use_cache=False, progress=None, timings=False) -> Options:
    from kflowgen.options import Options

    return Options.at(repo, jobs, use_cache, progress, timings)


def _titles(fmt: str) -> dict[str, str] | None:
    """Every code's title, for the formats that describe their rules (SARIF); imported only then, since the table
    imports every module that reports a code."""
    if fmt != "sarif":
        return None
    from kflowgen.codes import CODES

    return CODES


def _finish(rep: Report, fmt: Format, opts: Options | None = None) -> None:
    from kflowgen.report import formats

    with opts.timed("report") if opts else contextlib.nullcontext():
        text = formats.render(rep, fmt.value, _titles(fmt.value))
    _done(text, rep.exit_code, opts)


def _done(text: str, code: int, opts: Options | None = None) -> None:
    """Print the output and exit; with --timings, each stage's time on stderr after it (stdout stays as it is)."""
    sys.stdout.write(text)
    if opts is not None and opts.timings is not None:
        print("".join(f"{line}\n" for line in opts.timings.lines()), end="", file=sys.stderr)
    raise typer.Exit(code)


@app.command()
def validate(env: Annotated[Optional[str], typer.Option("--env", "-e", help="Only this environment.")] = None,
             fmt: Fmt = Format.auto, jobs: Jobs = None, no_cache: NoCache = False,
             server: Annotated[bool, typer.Option("--server", help="Also apply every built object with server-side "
                                                  "dry-run to a local, throw-away kube-apiserver (built by "
                                                  "`kflowgen tools install --server`).")] = False,
             timings: Timings = False, repo: Repo = Path(".")) -> None:
    """Check everything a pull request must pass: spec schemas, checks across specs, a kustomize build of every
    overlay, strict schema validation and policy on every built object. Writes nothing in the repository."""
    from kflowgen.flow import pipeline

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings)
        rep = pipeline.validate(opts, env, server)
    _finish(rep, fmt, opts)


@app.command(name="render")
def render_cmd(check: Annotated[bool, typer.Option("--check", help="Write nothing; fail if overlays/ differs "
                                                   "from what the specs render (the drift gate).")] = False,
               fmt: Fmt = Format.auto, jobs: Jobs = None, no_cache: NoCache = False, timings: Timings = False,
               repo: Repo = Path(".")) -> None:
    """Write the generated overlays (overlays/<env>/...) from the specs. Only changed files are touched."""
    from kflowgen.flow import pipeline

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings)
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
    from kflowgen.flow import diff as differ
    from kflowgen.report import changes, formats

    opts = _options(repo, jobs, not no_cache, timings=timings)
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
    from kflowgen.flow import pipeline
    from kflowgen.report import changes

    with progress_bars() as progress:
        opts = _options(repo, jobs, not no_cache, progress, timings)
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
            src: Annotated[str, typer.Option("--from", help="Environment whose version to copy, e.g. staging.")],
            dst: Annotated[str, typer.Option("--to", help="Environment to change, e.g. prod.")],
            repo: Repo = Path(".")) -> None:
    """Serve in --to the model version --from serves: edits one line of specs/models/TEAM/MODEL.yaml, re-renders
    the overlays, and prints the change. Commit both in one pull request. All or nothing: when the promoted specs
    do not validate (another spec broken, the new version over quota), neither the spec nor the overlays change."""
    from kflowgen.flow import pipeline, promote as promotion

    team, _, model = target.partition("/")
    change, diags = promotion.promote(repo, team, model, src, dst)
    rep = Report(diags)
    if change is not None and change.data is None:
        sys.stdout.write(change.message)
    elif change is not None:
        rep = pipeline.render_to_disk(_options(repo), False, edits={change.path: change.data})
        if not rep.errors:
            sys.stdout.write(change.message)
    _finish(rep, Format.text)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder for the new repository (created if missing).")],
         crds: Annotated[Optional[list[Path]], typer.Option("--crds", help="Your own CRD file or folder (repeatable), "
                                                            "for custom kinds in bases/; kflowgen ships the CRDs of "
                                                            "the kinds it writes.")] = None,
         jupyterhub_chart: Annotated[Optional[Path], typer.Option(help="Folder with the JupyterHub chart's values.yaml "
                                                                  "and values schema, for a chart version kflowgen "
                                                                  "does not ship the schema of.")] = None) -> None:
    """Scaffold a GitOps repository that validates at once, with nothing else installed: platform file, one example
    team, bases, schemas, CODEOWNERS, CI workflow, overlays."""
    from kflowgen.flow import pipeline, scaffold

    directory.mkdir(parents=True, exist_ok=True)
    diags = scaffold.init(directory, list(crds or []), jupyterhub_chart)
    rep = Report(diags) if diags else pipeline.render_to_disk(_options(directory), False)
    if not rep.errors:
        rep.summary.append(f"created {directory}: edit specs/, then run `kflowgen validate -C {directory}`")
    _finish(rep, Format.text)


@new_app.command("team")
def new_team(name: Annotated[str, typer.Argument(help="Team name: lower-case letters, digits and '-'.")],
             repo: Repo = Path(".")) -> None:
    """Write specs/teams/NAME.yaml, a commented team spec that validates as it is."""
    from kflowgen.flow import scaffold

    diags = scaffold.new_team(repo, name)
    rep = Report(diags)
    if not diags:
        rep.summary.append(f"wrote specs/teams/{name}.yaml: edit it, then run `kflowgen validate` and `kflowgen render`")
    _finish(rep, Format.text)


@new_app.command("experiment")
def new_experiment(
        args: Annotated[list[str], typer.Argument(help="TEAM NAME, or only NAME with --from-notebook.")],
        from_notebook: Annotated[bool, typer.Option("--from-notebook", help="Inside a JupyterHub notebook: take the "
                                                    "team, image and working directory from the running notebook.")]
        = False,
        repo: Repo = Path(".")) -> None:
    """Write specs/experiments/TEAM/NAME.yaml, a commented experiment spec that validates as it is."""
    from kflowgen.flow import scaffold

    image = workdir = None
    if from_notebook:
        if len(args) != 1:
            raise typer.BadParameter("give only NAME with --from-notebook")
        team, image, workdir, diags = scaffold.from_notebook(dict(os.environ), Path.cwd())
        if diags:
            _finish(Report(diags), Format.text)
        name = args[0]
    elif len(args) == 2:
        team, name = args
    else:
        raise typer.BadParameter("give TEAM NAME")
    gpu = os.environ.get("KFLOWGEN_GPU") if from_notebook else None
    rel, diags = scaffold.new_experiment(repo, team, name, **({"workdir": workdir} if workdir else {}), image=image,
                                         gpu=gpu)
    rep = Report(diags)
    if not diags:
        rep.summary.append(f"wrote {rel}: edit it, then run `kflowgen explain {rel}` and `kflowgen validate`")
    _finish(rep, Format.text)


@new_app.command("model")
def new_model(team: Annotated[str, typer.Argument(help="The team that serves it.")],
              name: Annotated[str, typer.Argument(help="Model name: lower-case letters, digits and '-'.")],
              repo: Repo = Path(".")) -> None:
    """Write specs/models/TEAM/NAME.yaml, a commented model spec (TensorFlow Serving) that validates as it is."""
    from kflowgen.flow import scaffold

    rel, diags = scaffold.new_model(repo, team, name)
    rep = Report(diags)
    if not diags:
        rep.summary.append(f"wrote {rel}: put version 1 in its path on the NAS, then run `kflowgen validate` and "
                           "`kflowgen render`")
    _finish(rep, Format.text)


@import_app.command("determined")
def import_determined(
        config: Annotated[Path, typer.Argument(help="A Determined AI experiment config, e.g. const.yaml.")],
        team: Annotated[Optional[str], typer.Option("--team", "-t", help="The team that runs it (default: the "
                                                    "notebook's team, or the repository's only team).")] = None,
        name: Annotated[Optional[str], typer.Option("--name", help="Experiment name (default: the config's name, "
                                                    "in lower case with '-').")] = None,
        gpu_type: Annotated[Optional[str], typer.Option("--gpu-type", help="GPU type for slots_per_trial, when the "
                                                        "platform has several.")] = None,
        repo: Repo = Path(".")) -> None:
    """Write specs/experiments/TEAM/NAME.yaml from a Determined experiment config (searcher, hyperparameters,
    slots_per_trial, image, max_restarts), validated; says on stderr every field that did not carry over, and why."""
    from kflowgen.flow.determined import import_determined as importer

    notes, rep = importer(repo, config, team or os.environ.get("KFLOWGEN_TEAM") or None, name, gpu_type)
    sys.stderr.write("".join(f"{note}\n" for note in notes))
    _finish(rep, Format.text)


@app.command()
def explain(spec: Annotated[Path, typer.Argument(help="An experiment spec, e.g. specs/experiments/vision/x.yaml.")],
            repo: Repo = Path(".")) -> None:
    """Say in plain words what an experiment becomes: which Jobs, in which namespace and cluster, on which GPUs,
    with which command lines."""
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
    except Exception:  # a bug in kflowgen, not in the specs
        print("kflowgen: internal error (exit 3). Please report it with the output below.", file=sys.stderr)
        traceback.print_exc()
        sys.exit(3)
