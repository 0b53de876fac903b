"""KF204, KF307, KF313: every image a spec names is an image reference (parsed, not pattern-matched), pinned (a tag
other than latest, or a digest), and under one of the platform's allowed registries; so is every registry entry."""
from __future__ import annotations

from kflowgen.specs import imageref
from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF307": "image not from an allowed registry",
    "KF313": "image tagged latest or not pinned",
}


def problems(text: str, registries) -> list[tuple[str, str, str]]:
    """(what, message, hint) for each thing wrong with an image: what is 'reference', 'latest' or 'registry'."""
    image = imageref.parse(text)
    if isinstance(image, str):
        return [("reference", f"image '{text}' is not an image reference: {image}",
                 "write registry/path/name:tag or ...@sha256:<digest>, e.g. registry.example.com/ml/notebook:2026.11")]
    out = []
    if not image.pinned:
        out.append(("latest", f"image '{text}' is {'tagged latest' if image.tag else 'not pinned'}: what runs would "
                    "change without a pull request", "pin a version tag or a digest"))
    if not imageref.allowed(image, registries):
        out.append(("registry", f"image '{text}' is not from an allowed registry",
                    f"use an image under {', '.join(registries)}"))
    return out


IMAGE_CODES = {"reference": "KF204", "latest": "KF313", "registry": "KF307"}


def check(model):
    p = model.platform
    for i, entry in enumerate(p.registries):
        if imageref.prefix(entry) is None:
            yield error(p.source.path, p.source.at(f"/registries/{i}"), "KF204",
                        f"registry '{entry}' is not a registry and path prefix",
                        "write a registry host and optional path, e.g. registry.example.com/ml/")
    for t in model.teams:
        for what, message, hint in problems(t.image, p.registries):
            yield error(t.source.path, t.source.at("/notebook/image"), IMAGE_CODES[what], message, hint)
