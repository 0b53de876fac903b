"""Specs in, the model out: every spec read and schema-checked, then the rules across them. The model is given only
when nothing is in error. Both sides of a diff, and every command, load through here."""
from __future__ import annotations

from kflowgen import rules
from kflowgen.diagnostics import Diagnostic
from kflowgen.options import Options
from kflowgen.specs import read
from kflowgen.specs.model import Model


def load(opts: Options, snapshot: dict[str, bytes] | None = None, edits: dict[str, bytes] | None = None,
         ) -> tuple[Model | None, list[Diagnostic]]:
    """Read and check every spec (from the repository; from a snapshot: {path: bytes} of a git commit's spec files;
    edits: {path: bytes} of spec files to read as these bytes instead, as a change about to be written)."""
    with opts.timed("load"):
        specs = read.read(opts, snapshot, edits)
    if specs.model is None:
        return None, specs.diagnostics
    with opts.timed("validate"):
        diags = specs.diagnostics + rules.checked(specs.model, specs.sources, opts.store)
    return (None if any(d.severity == "error" for d in diags) else specs.model), diags
