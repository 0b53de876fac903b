"""KF204: strings that become paths (an experiment's workdir, a model's path on the NAS, the NAS mount path) are parsed
as paths, not pattern-matched: no control character or line break anywhere, no '..' part, and relative or absolute
as the field requires."""
from __future__ import annotations

from pathlib import PurePosixPath

from kflowgen.diagnostics import error


def problem(text: str, absolute: bool) -> str | None:
    """Why text is not a clean path of the kind asked for, or None."""
    bad = next((c for c in text if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029"), None)
    if bad is not None:
        return f"holds the control character U+{ord(bad):04X}"
    if "\\" in text:
        return "holds a backslash"
    parts = PurePosixPath(text).parts
    if ".." in parts:
        return "has a '..' part"
    if text.startswith("/") != absolute:
        return "is not absolute" if absolute else "is absolute"
    return None


def paths(model, experiments=None, whole: bool = True, served=None, platform: bool = True):
    """(spec, pointer, text, absolute) of every path a spec gives (of these experiments, and with whole of every
    other spec: see rules.BY_TEAM; or of these served models, and the platform's with platform: see local)."""
    p = model.platform
    if whole and platform and p.source.has("/storage/mountPath"):
        yield p.source, "/storage/mountPath", p.mount_path, True
    for e in model.experiments if experiments is None else experiments:
        if e.source.has("/workdir"):
            yield e.source, "/workdir", e.workdir, False
    for m in (model.served if served is None else served) if whole else ():
        yield m.source, "/path", m.source.data["path"], False


def check(model, experiments=None, whole: bool = True):
    return _judged(paths(model, experiments, whole))


def local(model, teams: list, served: list):
    """What check finds in these served models."""
    return _judged(paths(model, [], True, served, platform=False))


def across(model):
    """What check finds in the platform file."""
    return _judged(paths(model, [], True, [], platform=True))


def _judged(found):
    for spec, pointer, text, absolute in found:
        why = problem(text, absolute)
        if why:
            yield error(spec.path, spec.at(pointer), "KF204", f"path {text!r} {why}",
                        "give a folder " + ("from the root, e.g. /workspace" if absolute else
                                            "relative to the team NAS, e.g. projects/resnet, without '..'"))
