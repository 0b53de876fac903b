"""What every command of the command line shares: the apps, the common options, and the one way a command ends
(its report printed in the chosen format, the exit code, and --timings)."""
from __future__ import annotations

import contextlib
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from kflowgen.diagnostics import Report

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


def _options(repo: Path, jobs: int | None = None, use_cache=False, progress=None, timings=False,
             early: dict | None = None) -> Options:
    from kflowgen.options import Options

    return Options.at(repo, jobs, use_cache, progress, timings, early)


def _early(repo: Path, use_cache: bool) -> dict:
    """The listing of specs/ (find's, and git's with the cache), started before a command imports its stages (or,
    the same one, before the options were parsed: _prestart)."""
    from kflowgen import ahead

    return ahead.early(repo, use_cache, _STARTED)


_STARTED: dict = {}  # the listing _prestart started, until the command takes it
READS_SPECS = ("validate", "render", "diff", "gate")  # the commands that call _early


def _prestart(args: list[str]) -> None:
    """Start the listing of specs/ before the options are parsed, for a command that reads the specs of the current
    folder: parsing them and importing the stages take longer than the listing. Only when the words say so plainly
    (no --repo or -C, no --help); else the command starts it as before."""
    if args and args[0] in READS_SPECS and not any(a.startswith(("-C", "--repo", "--help")) for a in args):
        from kflowgen import ahead

        _STARTED.update(ahead.early(Path("."), "--no-cache" not in args))


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
