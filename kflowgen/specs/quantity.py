"""Kubernetes quantities (cpu cores, bytes): parse to exact fractions, print back canonically."""
from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

_SUFFIX = {"": 1, "m": Fraction(1, 1000), "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$")


def parse(value) -> Fraction:
    """'500m' -> 1/2, 2 -> 2, '16Gi' -> 17179869184. Raises ValueError on anything else."""
    try:
        return _parse(value)
    except TypeError:  # unhashable: a list or mapping where a quantity belongs
        raise ValueError(f"not a quantity: {value!r}") from None


@functools.lru_cache(maxsize=4096, typed=True)  # a platform repeats few quantities; Fractions are immutable
def _parse(value) -> Fraction:
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, (int, float)):
        return Fraction(str(value))
    m = _RE.match(str(value))
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    return Fraction(m.group(1)) * _SUFFIX[m.group(2) or ""]


def cpu(value) -> str:
    """Canonical cpu string for manifests: whole cores as '4', otherwise millicores '500m'."""
    q = parse(value)
    if q.denominator == 1:
        return str(q.numerator)
    milli = q * 1000
    if milli.denominator != 1:
        raise ValueError(f"cpu {value!r} is finer than 1m")
    return f"{milli.numerator}m"


def show_cpu(value: Fraction) -> str:
    """An exact amount of cores as a manifest writes it: '4', or '1500m' (rounded up to a whole millicore)."""
    milli = math.ceil(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def show_bytes(value: Fraction) -> str:
    """An exact amount of bytes as a manifest writes it (rounded up to a whole byte): '384Gi', '1536Mi', '1000'."""
    n = math.ceil(value)
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        if n and n % _SUFFIX[unit] == 0:
            return f"{n // _SUFFIX[unit]}{unit}"
    return str(n)


def text(value) -> str:
    """A quantity as written in the spec, as a string (numbers keep their spelling)."""
    return str(value)


def valid(value, millicores: bool = False) -> bool:
    """A quantity (with millicores: a cpu amount of whole millicores): parse (or cpu) would not raise."""
    try:
        cpu(value) if millicores else parse(value)
        return True
    except ValueError:
        return False


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str | None) -> int | None:
    """'30m' -> 1800 (the schemas' duration pattern); None stays None."""
    return None if duration is None else int(duration[:-1]) * DURATION_UNITS[duration[-1]]
