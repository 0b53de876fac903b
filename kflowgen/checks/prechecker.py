"""The prechecker: strict validation, in this process, of the built objects kflowgen already holds, against the
same files of the schema folder (kflowgen.checks.schemas) that kubeconform would use; it only vouches for objects
kubeconform would pass, and hands every other one to kubeconform."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kflowgen.checks.schemas import DRAFT, schema_paths

_SIMPLE_KIND = re.compile(r"[A-Za-z0-9]+")
_SIMPLE_API = re.compile(r"(?:[a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?v[a-z0-9]+")


class Prechecker:
    """Strict validation of built objects kflowgen already holds, with jsonschema-rs (compiled once per kind per
    run), for objects kubeconform would check against the same file of this folder in the same way: the file it
    would pick, draft 2020-12 (every file here declares it), formats not asserted (kubeconform asserts them only
    below draft 2019). It only vouches: an object it does not pass goes to kubeconform, whose verdict and message are
    the ones reported. It does not pass an object that is invalid, a list (kubeconform checks its items), one without
    a plain kind and apiVersion, one holding an integer beyond 2^53 (kubeconform reads numbers as float64), or one
    whose schema file is damaged (kubeconform would then try the next location) or has a regular expression outside
    the part of the syntax in which Go's regexp and jsonschema-rs agree and which Go compiles (CRDs may hold any).
    tests/test_kubernetes_schemas.py holds its verdicts to kubeconform's on valid and broken objects of every kind."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._validators: dict[tuple[str, str], Any] = {}

    @staticmethod
    def version() -> str:
        from kflowgen.cache import dist_version

        return dist_version("jsonschema_rs")

    def passes(self, obj: Any) -> bool:
        if not isinstance(obj, dict):
            return False
        kind, api = obj.get("kind"), obj.get("apiVersion")
        if not (isinstance(kind, str) and isinstance(api, str) and _SIMPLE_KIND.fullmatch(kind)
                and _SIMPLE_API.fullmatch(api)) or kind.lower() == "list":  # kubeconform checks a list's items
            return False
        validator = self._validators.get((api, kind), False)
        if validator is False:
            validator = self._validators[api, kind] = self._compile(kind, api)
        return validator is not None and validator.is_valid(obj) and _float64_exact(obj)

    def _compile(self, kind: str, api: str):
        import jsonschema_rs

        for path in schema_paths(self.folder, kind, api):
            try:
                schema = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # as kubeconform: the next location
            except (OSError, ValueError):  # kubeconform would go on to the next location: not vouched for here
                return None
            if not isinstance(schema, dict) or schema.get("$schema") != DRAFT or not _portable_patterns(schema):
                return None
            try:
                return jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
            except ValueError:  # jsonschema_rs.ValidationError is one
                return None
        return None


_FLOAT64_EXACT = 2 ** 53
# Regular expressions read alike by Go's RE2 (kubeconform) and jsonschema-rs: printable ASCII literals, classes of
# them, groups without flags, alternation, anchors, `.` and counted repetition. Not \d, \s, \w or \b (Unicode in
# one, ASCII in the other), (?...) (RE2 refuses lookaround), back-references, escapes of code points, nested or
# [:posix:] classes, a class opening with "]", stacked quantifiers, or counts that Go refuses: above 1000, nested
# ones whose product is above 1000 (Go's repeatIsValid), or any in a pattern over 1000 characters (Go also limits
# the size of the compiled program).
_ESCAPABLE = set(".^$|()[]{}*+?\\/-")
_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def _portable_patterns(node: Any) -> bool:
    if isinstance(node, list):
        return all(map(_portable_patterns, node))
    if not isinstance(node, dict):
        return True
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str) and not _portable(value):
            return False
        if key == "patternProperties" and isinstance(value, dict) and not all(map(_portable, value)):
            return False
        if not _portable_patterns(value):
            return False
    return True


def _portable(pattern: str) -> bool:
    i, in_class, quantified = 0, False, False
    counted = [1]  # per open group: the largest product of counted repetitions inside it
    last = 1  # that product for the atom just read (1 for a plain atom)
    while i < len(pattern):
        c, was_quantified, quantified = pattern[i], quantified, False
        if c == "\\":
            if pattern[i + 1:i + 2] not in _ESCAPABLE or i + 1 == len(pattern):
                return False
            i, last = i + 2, 1
            continue
        if not " " <= c <= "~":
            return False
        if in_class:
            if c == "[":
                return False
            in_class = c != "]"
        elif c == "[":
            i += 2 if pattern[i + 1:i + 2] == "^" else 1
            if pattern[i:i + 1] in ("]", ""):
                return False
            in_class, last = True, 1
            continue
        elif c == "(" and pattern[i + 1:i + 2] == "?" or c == "}":
            return False
        elif c == "(":
            counted.append(1)
        elif c == ")":
            if len(counted) == 1:
                return False
            last = counted.pop()
            counted[-1] = max(counted[-1], last)
        elif c in "*+?{":
            if was_quantified and not (c == "?" and pattern[i - 1] != "?"):
                return False
            if c == "{":
                count = _COUNT.match(pattern, i)
                if not count or any(int(n) > 1000 for n in count.groups() if n) or len(pattern) > 1000:
                    return False
                low, high = count.groups()
                last *= int(high) if high else int(low)  # {n,}: Go counts the minimum
                if last > 1000:
                    return False
                counted[-1] = max(counted[-1], last)
                i = count.end()
                quantified = True
                continue
            quantified = True
        else:
            last = 1
        i += 1
    return not in_class and len(counted) == 1


def _float64_exact(value: Any) -> bool:
    """No integer in value that a float64 (as kubeconform reads JSON numbers) would round."""
    t = type(value)
    if t is dict:
        return all(map(_float64_exact, value.values()))
    if t is list:
        return all(map(_float64_exact, value))
    return t is not int or -_FLOAT64_EXACT <= value <= _FLOAT64_EXACT
