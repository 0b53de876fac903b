"""KF605: every container image in a built object comes from one of the platform's allowed registries (the same
prefix match as the spec rule KF307), so images from hand-kept bases are held to it too."""
from __future__ import annotations

from ..rules.images import allowed
from . import all_containers

CODE = "KF605"
TITLE = "built object runs an image not from an allowed registry"


def check(obj, ctx):
    for at, c in all_containers(obj):
        image = c.get("image")
        if isinstance(image, str) and not allowed(image, ctx.registries):
            yield f"{at}/image", f"'{image}' is not from an allowed registry", \
                f"use an image under {', '.join(ctx.registries) or '(no registries: set registries in the platform file)'}"
