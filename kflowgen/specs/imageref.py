"""Container image references, parsed by the grammar of distribution/reference (what containerd, Docker and the
kubelet read), and matched against the platform's allowed registries component by component, never as text."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"((?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?",
                        re.ASCII)
_PREFIX = re.compile(rf"(?:{_DOMAIN})(?:/{_PATH_COMPONENT})*/?|{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*/?", re.ASCII)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
NAME_MAX = 255  # distribution's NameTotalLengthMax
DEFAULT_DOMAIN = "docker.io"


@dataclass(frozen=True)
class Image:
    """A parsed reference: the registry (normalised: docker.io when none is written, lower case), the repository's
    path components (library/ added for a one-word Docker Hub name, as the runtime does), tag and digest."""

    domain: str
    path: tuple[str, ...]
    tag: str | None
    digest: str | None

    @property
    def pinned(self) -> bool:
        """A digest, or a tag other than latest: what runs does not change without a new reference."""
        return self.digest is not None or (self.tag is not None and self.tag != "latest")


def _split(name: str) -> tuple[str, list[str]]:
    """(domain, path components) as the runtime reads them: the first component is a registry when it holds a '.'
    or a ':' or is localhost (or has upper-case letters); otherwise the name is on Docker Hub."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, parts = first.lower(), rest.split("/")
    else:
        domain, parts = DEFAULT_DOMAIN, name.split("/")
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and len(parts) == 1:
        parts = ["library", *parts]
    return domain, parts


def parse(text: str) -> Image | str:
    """The image, or why the text is not an image reference (a short phrase for an error message)."""
    if not isinstance(text, str) or not text:
        return "empty"
    return _parse(text)


@functools.lru_cache(maxsize=4096)  # a platform's thousands of pods name few images; an Image is immutable
def _parse(text: str) -> Image | str:
    if any(ord(c) < 0x21 or ord(c) > 0x7e for c in text):
        return "it holds spaces, control characters or characters beyond ASCII"
    m = _REFERENCE.fullmatch(text)
    if m is None:
        return _why(text)
    name, tag, digest = m.groups()
    if len(name) > NAME_MAX:
        return f"its name is longer than {NAME_MAX} characters"
    if digest is not None:
        algorithm, hex_digits = digest.split(":", 1)
        if algorithm in _DIGEST_LENGTHS and len(hex_digits) != _DIGEST_LENGTHS[algorithm]:
            return f"a {algorithm} digest has {_DIGEST_LENGTHS[algorithm]} hex digits, not {len(hex_digits)}"
    domain, parts = _split(name)
    return Image(domain, tuple(parts), tag, digest)


def _why(text: str) -> str:
    name = text.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if last.count(":") > 1:
        return "it has more than one ':' after the last '/'"
    parts = name.split("/")
    parts[-1] = parts[-1].split(":", 1)[0]  # without the tag
    if "" in parts:
        return "it has an empty path component ('//', or a '/' at an end)"
    if any(p in (".", "..") for p in parts):
        return "'.' and '..' are not path components of an image name"
    if any(c.isupper() for p in parts[1:] for c in p):
        return "repository names are lower case"
    return "it does not follow the image reference grammar [registry/]path[:tag][@digest]"


def prefix(text: str) -> tuple[str, tuple[str, ...]] | None:
    """An allowed-registry entry (`registry.example.com/ml/`, `quay.io/jupyter`, `docker.io/tensorflow/`) as (domain,
    path components), normalised as images are; None when it is not one."""
    if not isinstance(text, str):
        return None
    return _prefix(text)


@functools.lru_cache(maxsize=1024)
def _prefix(text: str) -> tuple[str, tuple[str, ...]] | None:
    if not _PREFIX.fullmatch(text):
        return None
    name = text.rstrip("/")
    first, _, rest = name.partition("/")
    if "." in first or ":" in first or first == "localhost":
        domain, parts = first.lower(), tuple(rest.split("/")) if rest else ()
    else:
        domain, parts = DEFAULT_DOMAIN, tuple(name.split("/"))
    return ("docker.io" if domain == "index.docker.io" else domain), parts


def allowed(image: Image, registries) -> bool:
    """The image lives under one of the registries: same registry host (and port), and the entry's path components
    are a proper prefix of the image's (`ml/` allows `ml/x`, not `ml-sandbox/x` nor `ml` itself)."""
    for entry in registries:
        p = prefix(entry)
        if p is not None and image.domain == p[0] and len(image.path) > len(p[1]) \
                and image.path[:len(p[1])] == p[1]:
            return True
    return False
