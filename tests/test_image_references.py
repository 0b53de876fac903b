"""Image references parsed by distribution/reference's grammar, and allowed registries matched by component."""
from __future__ import annotations

import pytest

from kflowgen.specs import imageref
from kflowgen.specs.imageref import Image

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("registry.example.com/ml/nb:2026.11", Image("registry.example.com", ("ml", "nb"), "2026.11", None)),
    ("registry.example.com:5000/ml/nb@" + D, Image("registry.example.com:5000", ("ml", "nb"), None, D)),
    ("registry.example.com/ml/nb:1@" + D, Image("registry.example.com", ("ml", "nb"), "1", D)),
    ("localhost/x:1", Image("localhost", ("x",), "1", None)),
    ("localhost:5000/a/b-c__d.e:v1_2", Image("localhost:5000", ("a", "b-c__d.e"), "v1_2", None)),
    ("tensorflow/serving:2.19.1", Image("docker.io", ("tensorflow", "serving"), "2.19.1", None)),
    ("python:3.11", Image("docker.io", ("library", "python"), "3.11", None)),
    ("index.docker.io/library/python:3.11", Image("docker.io", ("library", "python"), "3.11", None)),
    ("Registry.Example.com/ml/nb:1", Image("registry.example.com", ("ml", "nb"), "1", None)),
    ("[::1]:5000/ml/nb:1", Image("[::1]:5000", ("ml", "nb"), "1", None)),
    ("registry.example.com/ml/nb", Image("registry.example.com", ("ml", "nb"), None, None)),
])
def test_parse(text, expected):
    assert imageref.parse(text) == expected


@pytest.mark.parametrize("text, why", [
    ("registry.example.com/ml/../../evil/x:1", "'.' and '..' are not path components of an image name"),
    ("registry.example.com/ml/./x:1", "'.' and '..' are not path components of an image name"),
    ("ml//x:1", "it has an empty path component ('//', or a '/' at an end)"),
    ("registry.example.com/ml/x/:1", "it has an empty path component ('//', or a '/' at an end)"),
    ("x:1:2", "it has more than one ':' after the last '/'"),
    ("registry.example.com/ML/x:1", "repository names are lower case"),
    ("registry.example.com/ml/x:1\n", "it holds spaces, control characters or characters beyond ASCII"),
    ("registry.example.com/ml/x :1", "it holds spaces, control characters or characters beyond ASCII"),
    ("registry.example.com/ml/x:-1", "it does not follow the image reference grammar [registry/]path[:tag][@digest]"),
    ("registry.example.com/ml/x@sha256:abc", "it does not follow the image reference grammar "
                                              "[registry/]path[:tag][@digest]"),
    ("registry.example.com/ml/x@sha256:" + "a" * 40, "a sha256 digest has 64 hex digits, not 40"),
    ("registry.example.com/ml/x:" + "t" * 129, "it does not follow the image reference grammar "
                                                "[registry/]path[:tag][@digest]"),
    ("r.io/" + "a" * 260 + ":1", "its name is longer than 255 characters"),
    ("", "empty"),
])
def test_not_an_image(text, why):
    assert imageref.parse(text) == why


@pytest.mark.parametrize("text, pinned", [("x.io/a:1", True), ("x.io/a:latest", False), ("x.io/a", False),
                                          ("x.io/a:latest@" + D, True), ("x.io/a@" + D, True)])
def test_pinned(text, pinned):
    assert imageref.parse(text).pinned is pinned


@pytest.mark.parametrize("image, registries, allowed", [
    ("registry.example.com/ml/nb:1", ["registry.example.com/ml/"], True),
    ("registry.example.com/ml/team/nb:1", ["registry.example.com/ml"], True),
    ("registry.example.com/ml-sandbox/nb:1", ["registry.example.com/ml/"], False),
    ("registry.example.com/ml:1", ["registry.example.com/ml/"], False),  # the prefix itself is no image under it
    ("registry.example.com:5000/ml/nb:1", ["registry.example.com/ml/"], False),
    ("REGISTRY.example.com/ml/nb:1", ["registry.example.com/ml/"], True),
    ("registry.example.com/any/nb:1", ["registry.example.com"], True),
    ("tensorflow/serving:2", ["docker.io/tensorflow/"], True),
    ("docker.io/tensorflow/serving:2", ["docker.io/tensorflow/"], True),
    ("python:3.11", ["docker.io/tensorflow/"], False),
    ("python:3.11", ["docker.io/library/"], True),
    ("evil.io/registry.example.com/ml/nb:1", ["registry.example.com/ml/"], False),
    ("registry.example.com/ml/nb:1", ["registry.example.com/ml/../"], False),  # not a registry entry: allows nothing
])
def test_allowed(image, registries, allowed):
    assert imageref.allowed(imageref.parse(image), registries) is allowed
