"""Spec schemas: loads the JSON Schemas in schemas/ and turns their errors into located diagnostics."""
from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources

import jsonschema

from .diagnostics import Diagnostic, error
from .loader import SpecFile, pointer

KINDS = ("platform", "team")


def schema_text(kind: str) -> str:
    return resources.files("kflowgen").joinpath("schemas", f"{kind}.schema.json").read_text("utf-8")


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_text(kind))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _field(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the file"


def _leaf_errors(err: jsonschema.ValidationError):
    """For anyOf/oneOf failures report the most specific branch errors instead of the summary."""
    if err.context:
        best = max(err.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        yield from _leaf_errors(best)
    else:
        yield err


def validate(kind: str, spec: SpecFile) -> list[Diagnostic]:
    out = []
    for top in _validator(kind).iter_errors(spec.data):
        for err in _leaf_errors(top):
            out.append(_diagnostic(kind, spec, err))
    return sorted(set(out))


def _diagnostic(kind: str, spec: SpecFile, err: jsonschema.ValidationError) -> Diagnostic:
    parts = list(err.absolute_path)
    where = _field(parts)
    hint = err.schema.get("description", "") if isinstance(err.schema, dict) else ""
    v = err.validator
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))[0]
        close = difflib.get_close_matches(extra, allowed, n=1)
        where_extra = _field(parts + [extra])
        if close:
            return error(spec.path, spec.at(pointer(parts + [extra]), key=True), "KF201",
                         f"unknown field '{where_extra}' in {kind} spec; did you mean '{close[0]}'?",
                         f"rename it to '{close[0]}'")
        known = ", ".join(allowed) if allowed else "none"
        return error(spec.path, spec.at(pointer(parts + [extra]), key=True), "KF201",
                     f"unknown field '{where_extra}' in {kind} spec", f"fields allowed here: {known}")
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        return error(spec.path, spec.at(pointer(parts)), "KF202",
                     f"'{_field(parts + [missing])}' is required", _describe(err.schema, missing))
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return error(spec.path, spec.at(pointer(parts)), "KF203",
                     f"'{where}' must be {_article(want)}, not {_typename(err.instance)} {_show(err.instance)}", hint)
    if v == "propertyNames":
        return error(spec.path, spec.at(pointer(parts), key=True), "KF204",
                     f"'{where}' has a key that is not allowed: {err.message}", hint)
    if v in ("enum", "const"):
        choices = ", ".join(str(c) for c in (err.validator_value if v == "enum" else [err.validator_value]))
        close = difflib.get_close_matches(str(err.instance), [str(c) for c in err.validator_value], n=1) if v == "enum" else []
        extra = f"; did you mean '{close[0]}'?" if close else ""
        return error(spec.path, spec.at(pointer(parts)), "KF204",
                     f"'{where}' is {_show(err.instance)}, which is not one of: {choices}{extra}", hint)
    if v == "pattern":
        return error(spec.path, spec.at(pointer(parts)), "KF204",
                     f"'{where}' is {_show(err.instance)}, which is not in the expected form", hint)
    return error(spec.path, spec.at(pointer(parts)), "KF204", f"'{where}': {err.message}", hint)


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


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return ""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
