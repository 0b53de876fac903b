"""KF307, KF313: notebook images come from one of the platform's allowed registries and are pinned."""
from __future__ import annotations

from ..diagnostics import error


def allowed(image: str, registries) -> bool:
    return any(image.startswith(r if r.endswith("/") else r + "/") for r in registries)


def check(model):
    regs = model.platform.registries
    for t in model.teams:
        if t.image.endswith(":latest"):
            yield error(t.source.path, t.source.at("/notebook/image"), "KF313",
                        f"image '{t.image}' is tagged latest: what runs would change without a pull request",
                        "pin a version tag or a digest")
        if not allowed(t.image, regs):
            yield error(t.source.path, t.source.at("/notebook/image"), "KF307",
                        f"image '{t.image}' is not from an allowed registry",
                        f"use an image under {', '.join(regs)}")
