"""Did-you-mean, in one place: the known name closest to what was written (case first: Dev is dev, A100 is a100),
and the quantity a memory amount was meant to be (512GB is 512Gi). Every message that suggests a name asks here."""
from __future__ import annotations

import difflib
import re

# decimal or lower-case units people write for memory, and the Kubernetes binary unit they mean
_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp])(?:i?b|i)?\s*$", re.I)
# numbers written as words, as people say them ("two GPUs")
NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def closest(name, known) -> str | None:
    """The known name closest to name, matched without regard to case; None when none is close."""
    known = [str(k) for k in known]
    lower = {k.lower(): k for k in reversed(known)}  # the first of two that differ only in case
    text = str(name).lower()
    if text in lower:
        return lower[text]
    match = difflib.get_close_matches(text, list(lower), n=1)
    return lower[match[0]] if match else None


def did_you_mean(name, known) -> str:
    """"did you mean 'x'?", or "" when nothing known is close."""
    best = closest(name, known)
    return f"did you mean '{best}'?" if best is not None else ""


def close(name, known, what: str = "known") -> str:
    """A fix hint: did you mean the closest known name, or else the list of known names."""
    known = list(known)
    return did_you_mean(name, known) or f"{what}: {', '.join(map(str, known)) or 'none'}"


def quantity(text) -> str | None:
    """The Kubernetes memory quantity a near miss means: 512GB, 512gb, 512 GB and 512gi are 512Gi."""
    m = _UNIT.match(str(text)) if isinstance(text, str) else None
    return f"{m[1]}{m[2].upper()}i" if m else None


def respellings(text) -> list[str]:
    """What a value that failed its pattern may have been meant as, most likely first: the number a word names, the
    quantity, then the lower-case spelling (names in specs are lower-case: Dev, Vision, Admin) and the trimmed one."""
    if not isinstance(text, str):
        return []
    word = NUMBERS.get(text.strip().lower())
    meant = quantity(text)
    out = ([str(word)] if word is not None else []) + ([meant] if meant else []) + [text.lower(), text.strip()]
    return [c for i, c in enumerate(out) if c != text and c not in out[:i]]
