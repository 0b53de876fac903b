"""KF604: every container image is an image reference (distribution's grammar, as the kubelet reads it) that names a
fixed version: a tag other than `latest`, or a digest (which pins it even beside a tag). An untagged image means
`latest`."""
from __future__ import annotations

from kflowgen.specs import imageref
from kflowgen.checks.objects import all_containers

CODE = "KF604"
TITLE = "image without a tag or digest, tagged latest, or not an image reference"


def check(obj, ctx):
    for at, c in all_containers(obj):
        text = c.get("image")
        if not isinstance(text, str):
            continue
        image = imageref.parse(text)
        if isinstance(image, str):
            yield f"{at}/image", f"'{text}' is not an image reference: {image}", \
                "write registry/path/name:tag or ...@sha256:<digest>"
        elif not image.pinned:
            yield f"{at}/image", f"'{text}' " + ("is tagged latest" if image.tag else "has no tag or digest"), \
                "pin the image with a version tag or a digest (@sha256:...)"
