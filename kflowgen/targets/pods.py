"""What every pod kflowgen renders gets from the platform, in one place: image pull secrets by the registry its
images come from, node selection and tolerations by its GPU type, and a memory-backed /dev/shm."""
from __future__ import annotations

from kflowgen.specs import imageref

SHM = "shm"


def pull_secrets(p, images) -> list[str]:
    """The pull secrets (platform `pullSecrets`) of the registries these images come from, sorted."""
    out = set()
    for text in images:
        image = imageref.parse(text)
        if isinstance(image, str):
            continue
        out.update(secret for entry, secret in p.pull_secrets.items() if imageref.allowed(image, [entry]))
    return sorted(out)


def image_pull_secrets(p, images) -> list[dict]:
    """pull_secrets as a pod spec's imagePullSecrets."""
    return [{"name": s} for s in pull_secrets(p, images)]


def gpu_tolerations(p, gpu_type: str | None) -> list[dict]:
    return [dict(t) for t in p.gpu_types[gpu_type].tolerations] if gpu_type else []


def shm_volume(size: str) -> tuple[dict, dict]:
    """A memory-backed emptyDir at /dev/shm (PyTorch DataLoader workers pass batches through it): (volume, mount).
    Its size counts against the container's memory limit."""
    return ({"name": SHM, "emptyDir": {"medium": "Memory", "sizeLimit": size}},
            {"name": SHM, "mountPath": "/dev/shm"})
