"""Edits of one spec value in place: promotion (serve in one environment the model version another serves, by
rewriting one scalar of the model spec), finishing a canary (KServe: serving its version alone, by removing the canary
and previous lines) and archiving (`archived: true` in an experiment spec)."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from kflowgen.specs import schema as specschema
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs.hints import did_you_mean
from kflowgen.specs.loader import load_file, load_text
from kflowgen.specs.served import MODELS

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF337": "model to promote not found",
    "KF338": "environment to promote from or to not in the model spec",
    "KF339": "promotion or archiving cannot be written in place",
}

_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a line break, as the loader's marks do


@dataclass(frozen=True)
class Promotion:
    """One promotion (or archiving), not yet written: the spec's path, its new bytes (None: it already serves that
    version, or is archived already: nothing to write), and what to tell the person."""

    path: str
    data: bytes | None
    message: str  # unified diff of the spec, then `team/model env: version a -> b`


def _load(root: Path, team: str, model: str, wanted: tuple[str, ...]):
    """The model spec, schema-valid and served in every wanted environment: (path, spec) or (None, diagnostics)."""
    rel = _find(root, team, model)
    if isinstance(rel, Diagnostic):
        return None, [rel]
    spec, diags = load_file(root, rel)
    if spec is None:
        return None, diags
    diags = specschema.validate("model", spec)
    if diags:
        return None, diags
    envs = spec.data["environments"]
    for env in wanted:
        if env not in envs:
            return None, [error(rel, spec.at("/environments", key=True), "KF338",
                              f"model {team}/{model} is not served in '{env}'", did_you_mean(env, envs) or
                              f"it is served in: {', '.join(envs)}; add environments.{env} to serve it there")]
    return rel, spec


def promote(root: Path, team: str, model: str, src: str, dst: str) -> tuple[Promotion | None, list[Diagnostic]]:
    """Set environments.<dst>.version to environments.<src>.version in specs/models/<team>/<model>.yaml, in memory:
    (the promotion, []) or (None, diagnostics). The caller validates and renders the promoted specs and writes the
    spec with the overlays, or nothing (pipeline.render_to_disk with edits)."""
    rel, spec = _load(root, team, model, (src, dst))
    if rel is None:
        return None, spec
    envs = spec.data["environments"]
    new, old = envs[src]["version"], envs[dst]["version"]
    pointer = f"/environments/{dst}/version"
    pos = spec.at(pointer)
    if new == old:  # done already: not a mistake, nothing to change (as `kubectl apply` says "unchanged")
        return Promotion(rel, None, f"{team}/{model} {dst}: already serves version {old}, as {src} does: nothing to "
                         "change\n"), []
    text = (root / rel).read_bytes().decode("utf-8")
    written = spec.raw.get(pointer)
    start = _offset(text, *pos)
    if written is None or start < 0 or text[start: start + len(written)] != written:
        return None, [error(rel, pos, "KF339", f"cannot rewrite environments.{dst}.version in place",
                          "write the version as a plain number, e.g. version: 3")]
    edited = text[:start] + str(new) + text[start + len(written):]
    check, _ = load_text(edited, rel)
    expected = {**spec.data, "environments": {**envs, dst: {**envs[dst], "version": new}}}
    if check is None or check.data != expected:  # pragma: no cover - a safety net for the position arithmetic
        return None, [error(rel, pos, "KF339", f"rewriting environments.{dst}.version would change more than it")]
    diff = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in
                   difflib.unified_diff(text.splitlines(keepends=True), edited.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))
    return Promotion(rel, edited.encode("utf-8"), f"{diff}{team}/{model} {dst}: version {old} -> {new}\n"), []


def finish(root: Path, team: str, model: str, env: str) -> tuple[Promotion | None, list[Diagnostic]]:
    """Finish a canary: remove environments.<env>.canary and .previous, so that the environment's version serves
    every request (KServe drops the canary's Deployment and rolls the stable one to that version). In memory, as
    promote(); nothing to change (data None) when the environment runs no canary."""
    rel, spec = _load(root, team, model, (env,))
    if rel is None:
        return None, spec
    served = spec.data["environments"][env]
    if "canary" not in served:
        return Promotion(rel, None, f"{team}/{model} {env}: serves version {served['version']} alone, no canary to "
                         "finish: nothing to change\n"), []
    text = (root / rel).read_bytes().decode("utf-8")
    lines = text.splitlines(keepends=True)
    drop = []
    for key in ("canary", "previous"):
        if key not in served:
            continue
        pointer = f"/environments/{env}/{key}"
        line, col = spec.at(pointer, key=True)
        if not lines[line - 1][:col - 1].strip() == "" or spec.at(pointer)[0] != line:
            return None, [error(rel, spec.at(pointer, key=True), "KF339",
                                f"cannot remove environments.{env}.{key} in place",
                                f"write {key} on a line of its own, e.g. `    {key}: "
                                f"{'10%' if key == 'canary' else served['version'] - 1}`")]
        drop.append(line - 1)
    edited = "".join(line for i, line in enumerate(lines) if i not in drop)
    check, _ = load_text(edited, rel)
    kept = {k: v for k, v in served.items() if k not in ("canary", "previous")}
    expected = {**spec.data, "environments": {**spec.data["environments"], env: kept}}
    if check is None or check.data != expected:
        return None, [error(rel, spec.at(f"/environments/{env}/canary", key=True), "KF339",
                            f"removing environments.{env}.canary would change more than it",
                            "write canary and previous on lines of their own, each a plain value")]
    diff = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in
                   difflib.unified_diff(lines, edited.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"))
    return Promotion(rel, edited.encode("utf-8"), f"{diff}{team}/{model} {env}: version {served['version']} serves "
                     f"every request (was {served['canary']}, beside version {served.get('previous', '?')})\n"), []


def _find(root: Path, team: str, model: str) -> str | Diagnostic:
    where = f"{MODELS}/{team}"
    if not (_NAME.match(team) and _NAME.match(model)):
        return error(where, (0, 0), "KF337", f"'{team}/{model}' is not a team and model name",
                     "names are lower-case letters, digits and '-'")
    for suffix in (".yaml", ".yml"):
        rel = f"{where}/{model}{suffix}"
        if (root / rel).is_file():
            if not (root / rel).resolve().is_relative_to(root.resolve()):
                return error(rel, (1, 1), "KF312", "spec file is a link that leaves the repository",
                             "replace the link with the file itself")
            return rel
    known = sorted(p.stem for p in (root / where).glob("*.y*ml")) if (root / where).is_dir() else []
    return error(f"{where}/{model}.yaml", (0, 0), "KF337", f"model {team}/{model} not found",
                 did_you_mean(model, known) or
                 f"models of {team}: {', '.join(known)}" if known else f"no models in {where}/")


def _offset(text: str, line: int, col: int) -> int:
    """Index in text of a 1-based line:col as the YAML loader reports it, or -1."""
    start = 0
    for _ in range(line - 1):
        m = _BREAK.search(text, start)
        if m is None:
            return -1
        start = m.end()
    return start + col - 1


_ARCHIVED = re.compile(r"^archived:[^\n]*$", re.M)


def archive(root: Path, exp) -> tuple[Promotion | None, list[Diagnostic]]:
    """Set `archived: true` in an experiment's spec (exp: the loaded Experiment), in memory: the line is rewritten
    where the spec has one, added at the end otherwise. The caller renders the edited specs and writes the spec with
    the overlays, or nothing (pipeline.render_to_disk with edits)."""
    rel = exp.source.path
    if exp.archived:
        return Promotion(rel, None, f"{exp.team}/{exp.name}: archived already: nothing to change\n"), []
    text = (root / rel).read_bytes().decode("utf-8")
    edited = (_ARCHIVED.sub("archived: true", text, count=1) if _ARCHIVED.search(text)
              else text + ("" if text.endswith("\n") or not text else "\n") + "archived: true\n")
    check, _ = load_text(edited, rel)
    if check is None or check.data != {**exp.source.data, "archived": True}:
        return None, [error(rel, exp.source.at("/archived", key=True) if "archived" in exp.source.data else (1, 1),
                            "KF339", "cannot set archived: true in place",
                            "add the line `archived: true` at the top level of the spec yourself")]
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), edited.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))
    return Promotion(rel, edited.encode("utf-8"), f"{diff}{exp.team}/{exp.name}: archived: its Jobs leave Git at "
                     "the next sync; Argo CD keeps them in the cluster (Prune=false) until you delete them:\n"), []
