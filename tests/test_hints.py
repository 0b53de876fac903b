"""Table tests for did-you-mean (kflowgen/specs/hints.py), the one place every message finds what was meant."""
from __future__ import annotations

import pytest

from kflowgen.specs import hints


@pytest.mark.parametrize("written, known, meant", [
    ("Dev", ["dev", "prod"], "dev"),
    ("A100", ["a100", "t4"], "a100"),
    ("Admin", ["view", "edit", "admin"], "admin"),
    ("editor", ["view", "edit", "admin"], "edit"),
    ("a200", ["a100", "t4"], "a100"),
    ("visoin", ["nlp", "vision"], "vision"),
    ("qa", ["dev", "prod"], None),
    ("x", [], None),
])
def test_closest(written, known, meant):
    assert hints.closest(written, known) == meant


@pytest.mark.parametrize("written, meant", [
    ("512GB", "512Gi"), ("512gb", "512Gi"), ("16G B", None), ("1.5 TB", "1.5Ti"), ("512gi", "512Gi"),
    ("512Mi", "512Mi"), ("lots", None), (512, None),
])
def test_quantity(written, meant):
    assert hints.quantity(written) == meant


@pytest.mark.parametrize("written, candidates", [
    ("two", ["2"]), ("Dev", ["dev"]), ("512GB", ["512Gi", "512gb"]), ("dev", []), (2, []),
])
def test_respellings(written, candidates):
    assert hints.respellings(written) == candidates


def test_close_lists_what_is_known_when_nothing_is_close():
    assert (hints.close("qa", ["dev", "prod"], "environments"), hints.close("prd", ["dev", "prod"])) == \
        ("environments: dev, prod", "did you mean 'prod'?")
