"""Table tests for Kubernetes quantities."""
from __future__ import annotations

from fractions import Fraction

import pytest

from kflowgen.specs import quantity


@pytest.mark.parametrize("text, value", [
    (2, 2), (0.5, Fraction(1, 2)), ("500m", Fraction(1, 2)), ("4", 4), ("16Gi", 16 * 2**30), ("1Ti", 2**40),
    ("1.5Gi", 3 * 2**29), ("1G", 10**9), ("512Mi", 2**29),
])
def test_parse(text, value):
    assert quantity.parse(text) == value


@pytest.mark.parametrize("bad", ["", "1.5.2", "Gi", "-1", True, "1 Gi", "1e3"])
def test_parse_refuses(bad):
    with pytest.raises(ValueError):
        quantity.parse(bad)


@pytest.mark.parametrize("value, text", [(4, "4"), (0.5, "500m"), ("250m", "250m"), ("2000m", "2"), (1.25, "1250m")])
def test_cpu_canonical(value, text):
    assert quantity.cpu(value) == text
