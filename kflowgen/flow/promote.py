"""Edits of one spec value in place: promotion (serve in one environment the model version another serves, by
rewriting one scalar of the model spec) and archiving (`archived: true` in an experiment spec)."""
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


def promote(root: Path, team: str, model: str, src: str, dst: str) -> tuple[Promotion | None, list[Diagnostic]]:
    """Set environments.<dst>.version to environments.<src>.version in specs/models/<team>/<model>.yaml, in memory:
    (the promotion, []) or (None, diagnostics). The caller validates and renders the promoted specs and writes the
    spec with the overlays, or nothing (pipeline.render_to_disk with edits)."""
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
    for env in (src, dst):
        if env not in envs:
            return None, [error(rel, spec.at("/environments", key=True), "KF338",
                              f"model {team}/{model} is not served in '{env}'", did_you_mean(env, envs) or
                              f"it is served in: {', '.join(envs)}; add environments.{env} to serve it there")]
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
