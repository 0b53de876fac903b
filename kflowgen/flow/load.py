"""Specs in, the model out: every spec read and schema-checked, then the rules across them. The model is given only
when nothing is in error. Both sides of a diff, and every command, load through here."""
from __future__ import annotations

from typing import Callable, TypeVar

from kflowgen import cache, parallel, rules
from kflowgen.diagnostics import Diagnostic
from kflowgen.options import Options
from kflowgen.specs import read
from kflowgen.specs.model import Model
from kflowgen.targets.cached import Rendered, render_cached

T = TypeVar("T")


def load(opts: Options, snapshot: dict[str, bytes] | None = None, edits: dict[str, bytes] | None = None,
         ) -> tuple[Model | None, list[Diagnostic]]:
    """Read and check every spec (from the repository; from a snapshot: {path: bytes} of a git commit's spec files;
    edits: {path: bytes} of spec files to read as these bytes instead, as a change about to be written)."""
    model, diags, _ = load_then(opts, None, snapshot, edits)
    return model, diags


def load_then(opts: Options, then: Callable[[Model], T] | None, snapshot: dict[str, bytes] | None = None,
              edits: dict[str, bytes] | None = None) -> tuple[Model | None, list[Diagnostic], T | None]:
    """load, and then(model) (the render, which needs the model and not what the rules find), as (model, findings,
    then's result), the model and the result only when nothing is in error. With many spec files and more than one
    job, the rules run on a forked process (parallel.Beside) while this one does then's work, so that the two take
    the two cores; that work is wasted when the rules find an error, and an exception it raised is raised only when
    they find none (a model the rules refuse may be one the renderer cannot render). Otherwise the rules run first,
    and then() only on a model they pass."""
    with opts.timed("load"):
        specs = read.read(opts, snapshot, edits)
    if specs.model is None:
        return None, specs.diagnostics, None
    model, made, failed, forked = specs.model, None, None, False
    with opts.timed("validate"):
        k, found = rules.recalled(model, specs.sources, opts.store)  # (found: a run that changed no spec file)
        if found is None:
            beside = then is not None and opts.jobs > 1 and len(specs.sources) >= parallel.PARALLEL_FROM
            ruling = parallel.Beside(_ruled, model, opts.store, k, fork=beside)
            forked = bool(ruling.pid)
    if forked:
        try:
            made = then(model)
        except Exception as e:  # (raised below unless the rules refuse the model)
            failed = e
        except BaseException:  # interrupted: the rules are not wanted
            ruling.cancel()
            raise
    if found is None:
        with opts.timed("validate"):
            found, (hits, misses) = ruling.result()
        opts.store.count(True, hits)
        opts.store.count(False, misses)
    diags = specs.diagnostics + found
    if any(d.severity == "error" for d in diags):
        return None, diags, None
    if failed is not None:
        raise failed
    if then is not None and not forked:
        made = then(model)
    return model, diags, made


def render_stage(opts: Options, model: Model) -> Rendered:
    """The render stage, as every command that renders what it loads gives load_then."""
    with opts.timed("render"):
        return render_cached(model, opts)


def _ruled(model: Model, store: cache.Cache, k: str | None) -> tuple[list[Diagnostic], tuple[int, int]]:
    """rules.made, and the cache hits and misses it counted, given back instead of kept (the caller counts them,
    from a forked process or here)."""
    hits, misses = store.hits, store.misses
    found = rules.made(model, store, k)
    counted = store.hits - hits, store.misses - misses
    store.hits, store.misses = hits, misses
    return found, counted
