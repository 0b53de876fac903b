"""KF605: every container image in a built object comes from one of the platform's allowed registries (the same
component-wise match as the spec rule KF307), so images from hand-kept bases are held to it too."""
from __future__ import annotations

from kflowgen.specs import imageref
from kflowgen.checks.objects import all_containers

CODE = "KF605"
TITLE = "built object runs an image not from an allowed registry"


def check(obj, ctx):
    for at, c in all_containers(obj):
        text = c.get("image")
        if not isinstance(text, str):
            continue
        image = imageref.parse(text)
        if isinstance(image, str) or not imageref.allowed(image, ctx.registries):  # KF604 says why it is no image
            yield f"{at}/image", f"'{text}' is not from an allowed registry", \
                f"use an image under {', '.join(ctx.registries) or '(no registries: set registries in the platform file)'}"
