"""The commands that write a new spec or repository: `init`, `new team|experiment|model`, `import determined`.
Registered on the command line's apps when kflowgen.cli is imported; like the others, each imports what it runs."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from kflowgen.cli.base import Format, Repo, _finish, _options, app, import_app, new_app
from kflowgen.diagnostics import Report


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
