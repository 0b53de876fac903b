"""Spec schemas: loads the JSON Schemas in schemas/ and turns their errors into located diagnostics."""
from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs import hints
from kflowgen.specs.loader import SpecFile, pointer

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF201": "unknown field",
    "KF202": "required field missing",
    "KF203": "wrong type",
    "KF204": "value not allowed (pattern, range or choice)",
}

KINDS = ("platform", "team", "experiment", "model")
_SECRET = re.compile(r"secret|password|passwd|token|private.?key|credential", re.I)
# fields that moved: where they went (a spec written for an earlier kflowgen gets the way, not "unknown field")
MOVED = {"jupyterhub.imagePullSecrets": "pull secrets are per registry now, for notebooks, training and serving "
                                        "alike: write pullSecrets: {<entry of registries>: <Secret name>} at the top "
                                        "of the platform file and delete this line"}


def schema_text(kind: str) -> str:
    return resources.files("kflowgen").joinpath("schemas", f"{kind}.schema.json").read_text("utf-8")


@cache
def validator_class():
    """The JSON Schema validator for specs. JSON Schema counts 6.0 as an integer; a spec's whole numbers (trials,
    workers, replicas, counts) must be written as whole numbers, or `range(6.0)` and friends fail later. A pattern's
    `$` is the end of the text, as in JSON Schema's (ECMA-262) regular expressions: Python's `$` also matches before
    a final newline, which let "team-a\n" pass `^[a-z]...$`."""
    import jsonschema  # here: a run whose specs all come from the cache never needs it (50 ms to import)

    def pattern(validator, patrn, instance, schema):
        if validator.is_type(instance, "string") and not _end_anchored(patrn).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator, validators={"pattern": pattern},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)))


@cache
def _end_anchored(pattern: str) -> re.Pattern:
    """pattern with every `$` outside a character class made `\\Z` (the end of the text, and nothing else)."""
    out, i, first = [], 0, -1  # first: where the open class's first member is (a "]" there is a member); -1: none
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if first >= 0:
            if c == "]" and i != first:
                first = -1
        elif c == "[":
            first = i + 2 if pattern[i + 1:i + 2] == "^" else i + 1
        elif c == "$":
            c = "\\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


@cache
def _validator(kind: str):
    schema = json.loads(schema_text(kind))
    validator_class().check_schema(schema)
    return validator_class()(inline_refs(schema))


def inline_refs(schema: dict) -> dict:
    """The schema with every local `$ref` to `#/$defs/...` replaced by the definition itself: the same checks and
    messages, without a reference lookup per value (a third of validation time). A schema whose definitions refer
    to themselves is returned as it is."""
    defs = schema.get("$defs", {})

    def walk(node, seen: tuple):
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v, seen) for k, v in node.items() if k not in ("$ref", "$defs")}
        ref = node.get("$ref")
        if ref is None:
            return out
        name = ref.removeprefix("#/$defs/")
        if ref == name or name not in defs or name in seen:
            raise _Recursive(ref)
        target = walk(defs[name], seen + (name,))
        return {**target, **out} if not out.keys() & target.keys() else {"allOf": [target], **out}

    try:
        return {**walk(schema, ()), **({"$defs": defs} if defs else {})}
    except _Recursive:
        return schema


class _Recursive(Exception):
    pass


def _field(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the file"


def _leaf_errors(err):
    """For anyOf/oneOf failures report the most specific branch errors instead of the summary."""
    if err.context:
        best = max(err.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        yield from _leaf_errors(best)
    else:
        yield err


def validate(kind: str, spec: SpecFile) -> list[Diagnostic]:
    if _vouched(kind, spec.data):
        return []
    out: list[Diagnostic] = []
    suggested: set[str] = set()  # "parent/field" a did-you-mean already names: no separate "required" for it
    errors = [leaf for top in _validator(kind).iter_errors(spec.data) for leaf in _leaf_errors(top)]
    for err in sorted(errors, key=lambda e: e.validator != "additionalProperties"):
        out.extend(_diagnostics(kind, spec, err, suggested))
    return sorted(set(out))


@cache
def _fast(kind: str):
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(json.loads(schema_text(kind)), validate_formats=False)


_PLAIN_TEXT = re.compile(r"[\t\n\x20-\x7e]*")


def _vouched(kind: str, data) -> bool:
    """The spec passes its schema, as jsonschema-rs (about 40 times faster) sees it, and it holds nothing on which
    the two validators could differ, so Python's jsonschema would pass it too: no whole number written as a float
    (6.0 is an integer to JSON Schema, not to kflowgen) and no text beyond printable ASCII, tab and newline (Python's
    regular expressions count more characters as white space). Whatever it does not vouch for, Python's jsonschema
    checks and words. tests/test_reading_specs.py holds the two to the same verdicts."""
    return _plain(data) and _fast(kind).is_valid(data)


def _plain(value) -> bool:
    if isinstance(value, str):
        return _PLAIN_TEXT.fullmatch(value) is not None
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_plain, value))
    return not (isinstance(value, float) and value.is_integer())


def _diagnostics(kind: str, spec: SpecFile, err, suggested: set[str]) -> list[Diagnostic]:
    parts = list(err.absolute_path)
    where = _field(parts)
    hint = err.schema.get("description", "") if isinstance(err.schema, dict) else ""
    v = err.validator
    if "propertyNames" in err.relative_schema_path:
        meant = _respelt(err.instance, err.validator_value) if v == "pattern" else None
        return [error(spec.path, spec.at(pointer(parts + [err.instance]), key=True), "KF204",
                      f"key {_show(err.instance)} under '{where}' is not allowed" + (f"; did you mean '{meant}'?"
                                                                                   if meant else ""),
                      f"rename it to '{meant}'" if meant else hint or
                      "rename it: lower-case letters, digits and '-', as the other names in specs")]
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        free = [a for a in allowed if a not in err.instance]
        out = []
        for extra in [k for k in err.instance if k not in allowed]:  # file order
            at = spec.at(pointer(parts + [extra]), key=True)
            close = [c for c in (hints.closest(extra, free),) if c]
            owner = _dedented(err.instance, err.schema, extra)
            if owner:  # `storage:` with nothing after it, then `size:` in its column: one mistake, said once
                suggested.add(pointer(parts + [owner]))
                col = spec.at(pointer(parts + [owner]), key=True)[1] + 2
                out.append(error(spec.path, at, "KF201", f"unknown field '{_field(parts + [extra])}' in {kind} spec; "
                                 f"it belongs under '{owner}' above it, which has no value", f"indent '{extra}' "
                                 f"under '{owner}': start it in column {col}"))
            elif _field(parts + [extra]) in MOVED:
                out.append(error(spec.path, at, "KF201", f"'{_field(parts + [extra])}' is no longer a field of the "
                                 f"{kind} spec", MOVED[_field(parts + [extra])]))
            elif _SECRET.search(extra):  # a secret written into Git: say where it belongs instead
                out.append(error(spec.path, at, "KF201", f"'{_field(parts + [extra])}' looks like a secret: secrets "
                                 "are never written in specs, which everyone with the repository can read",
                                 "put it in the Kubernetes Secret the platform creates outside Git (for the hub: the "
                                 "one jupyterhub.secret names, see docs/notebooks-and-network.md, \"Sign-in\") and delete this line"))
            elif close:
                suggested.add(pointer(parts + [close[0]]))
                out.append(error(spec.path, at, "KF201", f"unknown field '{_field(parts + [extra])}' in {kind} spec; "
                                 f"did you mean '{close[0]}'?", f"rename it to '{close[0]}'"))
            else:
                out.append(error(spec.path, at, "KF201", f"unknown field '{_field(parts + [extra])}' in {kind} spec",
                                 f"fields allowed here: {', '.join(allowed) if allowed else 'none'}"))
        return out
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        if pointer(parts + [missing]) in suggested:
            return []
        return [error(spec.path, spec.at(pointer(parts), key=True) if parts else (1, 1), "KF202",
                      f"'{_field(parts + [missing])}' is required", _describe(err.schema, missing))]
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        at = spec.at(pointer(parts))
        if err.instance is None and pointer(parts) in suggested:
            return []  # the field indented too little below it says so
        if err.instance is None:
            return [error(spec.path, at, "KF203", f"'{where}' has no value; it must be {_article(want)}",
                          hint or f"write {_article(want)} after the ':', or remove the line")]
        raw = spec.raw.get(pointer(parts))
        if want in ("integer", "number") and isinstance(err.instance, str) and _numeric(err.instance):
            hint = "remove the quotes: it is a number"
        elif want in ("integer", "number") and isinstance(err.instance, str):
            meant = hints.NUMBERS.get(err.instance.strip().lower())
            hint = f"write {meant}" if meant is not None else f"write {_article(want)} in digits, e.g. 2"
        elif want == "integer" and isinstance(err.instance, float):
            low = int(err.instance // 1)
            whole = " (GPUs come whole: a pod cannot have part of one)" if "gpu" in map(str, parts) else ""
            hint = f"write {low} or {low + 1}{whole}" if low >= 0 else "write a whole number"
        elif want == "object" and not isinstance(err.instance, (dict, list)):
            hint = (f"write its fields on the lines below '{parts[-1] if parts else where}:', indented two spaces "
                    "more" + (f". {hint}" if hint else ""))
        elif "string" in want and isinstance(err.instance, (int, float)) and not isinstance(err.instance, bool):
            written = raw if raw is not None else err.instance
            unit = "Gi" in str(err.schema.get("pattern", ""))
            hint = f'write it with a unit, e.g. "{written}Gi"' if unit else f'quote it: "{written}"'
        return [error(spec.path, at, "KF203", f"'{where}' must be {_article(want)}, not "
                      f"{_typename(err.instance)} {_show(err.instance, raw)}".rstrip(),
                      hint or f"write {_article(want)}")]
    if v in ("enum", "const"):
        choices = ", ".join(str(c) for c in (err.validator_value if v == "enum" else [err.validator_value]))
        meant = hints.closest(err.instance, err.validator_value) if v == "enum" else None
        extra = f"; did you mean '{meant}'?" if meant else ""
        return [error(spec.path, spec.at(pointer(parts)), "KF204",
                      f"'{where}' is {_show(err.instance)}, which is not one of: {choices}{extra}",
                      _write(meant, hint or f"write one of: {choices}"))]
    if v == "pattern":
        meant = _respelt(err.instance, err.validator_value)
        extra = f"; did you mean '{meant}'?" if meant else ""
        return [error(spec.path, spec.at(pointer(parts)), "KF204",
                      f"'{where}' is {_show(err.instance)}, which is not in the expected form{extra}",
                      _write(meant, hint))]
    if v in ("exclusiveMinimum", "minimum", "maximum", "exclusiveMaximum"):
        word = {"exclusiveMinimum": "more than", "minimum": "at least", "maximum": "at most",
                "exclusiveMaximum": "less than"}[v]
        return [error(spec.path, spec.at(pointer(parts)), "KF204",
                      f"'{where}' is {_show(err.instance, spec.raw.get(pointer(parts)))}; it must be {word} "
                      f"{err.validator_value}", hint or f"write a number {word} {err.validator_value}")]
    if v == "uniqueItems" and isinstance(err.instance, list):
        seen: list = []
        for i, item in enumerate(err.instance):
            if item in seen:
                return [error(spec.path, spec.at(pointer(parts + [i])), "KF204",
                              f"'{_field(parts + [i])}' repeats {_show(item)}", "remove the repeated entry")]
            seen.append(item)
    if v in ("minItems", "minProperties"):
        entries = f"{err.validator_value} {'entry' if err.validator_value == 1 else 'entries'}"
        return [error(spec.path, spec.at(pointer(parts)), "KF204", f"'{where}' is empty; it needs at least {entries}",
                      hint or f"add at least {entries} under {where}")]
    return [error(spec.path, spec.at(pointer(parts)), "KF204", f"'{where}': {err.message}",
                  hint or f"schemas/{kind}.schema.json says what '{where}' takes")]


def _dedented(mapping: dict, schema: dict, extra: str) -> str | None:
    """The key just above extra in mapping, if it has no value and takes extra as a field: extra was meant to be
    indented under it."""
    keys = list(mapping)
    above = keys[keys.index(extra) - 1] if keys.index(extra) else None
    sub = schema.get("properties", {}).get(above, {}) if above is not None and mapping[above] is None else {}
    fields = {k for s in [sub, *sub.get("allOf", [])] if isinstance(s, dict) for k in s.get("properties", {})}
    return above if extra in fields else None


def _respelt(value, pattern: str) -> str | None:
    """What a value that does not match pattern was most likely meant to be (hints.respellings), if that matches."""
    return next((c for c in hints.respellings(value) if _end_anchored(pattern).search(c)), None)


def _write(meant: str | None, hint: str) -> str:
    """The fix: what to type, when kflowgen knows it, then what the field takes."""
    return f"write {meant}" + (f". {hint}" if hint else "") if meant else hint


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _describe(schema: dict, name: str) -> str:
    sub = schema.get("properties", {}).get(name, {})
    return sub.get("description", "") if isinstance(sub, dict) else ""


def _article(t: str) -> str:
    return {"object": "a mapping", "array": "a list", "integer": "a whole number", "number": "a number",
            "string": "text", "boolean": "true or false", "number or string": "a number or text"}.get(t, t)


def _typename(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "a mapping", list: "a list", int: "a number", float: "a number", str: "text",
            type(None): "empty"}.get(type(value), type(value).__name__)


def _show(value, raw: str | None = None) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return ""
    text = raw if raw is not None and not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
