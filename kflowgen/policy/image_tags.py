"""KF604: every container image names a fixed version: a tag other than `latest`, or a digest (which pins it even
beside a tag). An untagged image means `latest`."""
from __future__ import annotations

from . import all_containers

CODE = "KF604"
TITLE = "image without a tag or digest, or tagged latest"


def tag(image: str) -> str | None:
    """The tag of an image reference, '@' for a digest, None when there is neither."""
    if "@" in image:
        return "@"
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def check(obj, ctx):
    for at, c in all_containers(obj):
        image = c.get("image")
        if not isinstance(image, str):
            continue
        t = tag(image)
        if t is None or t == "latest":
            yield f"{at}/image", f"'{image}' " + ("has no tag or digest" if t is None else "is tagged latest"), \
                "pin the image with a version tag or a digest (@sha256:...)"
