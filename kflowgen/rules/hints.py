"""Fix hints shared by the rules: the closest known name, matched without regard to case."""
from __future__ import annotations

import difflib


def close(name: str, known) -> str:
    known = list(known)
    lower = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(lower), n=1)
    return f"did you mean '{lower[match[0]]}'?" if match else f"known: {', '.join(known) or 'none'}"
