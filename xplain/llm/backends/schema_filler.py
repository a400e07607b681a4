"""A small value valid against a JSON schema: what the fake backend answers when a method asks for structured
output without a script, and what the OpenAI stub server answers to `response_format`."""

from __future__ import annotations

import math
from typing import Any

_MAX_DEPTH = 24

_STRING_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "duration": "PT0S",
    "email": "a@example.com",
    "idn-email": "a@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "http://example.com/",
    "iri": "http://example.com/",
    "uri-reference": "http://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "ipvanyaddress": "127.0.0.1",
    "ipvanyinterface": "127.0.0.1/32",
    "ipvanynetwork": "127.0.0.0/8",
}


def schema_instance(schema: Any, root: Any = None) -> Any:
    """A small value valid against `schema` (JSON Schema as written by pydantic v2's ``model_json_schema()``).

    Objects get every listed property; strings honour ``minLength``/``enum``/``const`` and common formats;
    numbers honour ``minimum``/``maximum`` (exclusive too) and ``multipleOf``; arrays get ``minItems`` items;
    ``anyOf``/``oneOf`` take the first branch that does not recurse into a ``$ref`` being expanded (so optional
    self-references end as null); ``allOf`` is merged; ``$ref`` is resolved against `root` (by default
    `schema` itself). ``pattern`` is not honoured.
    """
    return _instance(schema, schema if root is None else root, 0, frozenset({"#"}) if root is None else frozenset())


def _resolve_ref(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $refs are supported, not {ref!r}")
    node = root
    for part in ref[1:].split("/"):
        if part:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _expand(schema: dict, root: Any, depth: int, refs: set[str] | None = None) -> dict:
    """Resolve `$ref` and merge `allOf` into one dict of keywords; the refs followed are added to `refs`."""
    while "$ref" in schema:
        if depth > _MAX_DEPTH * 4:
            raise ValueError("$ref chain too deep")
        if refs is not None:
            refs.add(schema["$ref"])
        target = _resolve_ref(schema["$ref"], root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**(target if isinstance(target, dict) else {}), **rest}
        depth += 1
    if "allOf" in schema:
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            if not isinstance(sub, dict):
                continue
            sub = _expand(sub, root, depth + 1, refs)
            for key, value in sub.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                else:
                    merged.setdefault(key, value)
        schema = merged
    return schema


def _is_null_branch(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _recurses(schema: Any, refs: frozenset[str]) -> bool:
    return isinstance(schema, dict) and schema.get("$ref") in refs


def _instance(schema: Any, root: Any, depth: int, refs: frozenset[str]) -> Any:
    if schema is True or schema is None:
        return None
    if not isinstance(schema, dict):
        raise ValueError(f"no instance of schema {schema!r}")
    if "$ref" in schema or "allOf" in schema:
        followed: set[str] = set()
        schema = _expand(schema, root, depth, followed)
        refs = refs | followed
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if branches:
            branch = next((b for b in branches if not _recurses(b, refs)), branches[0])
            if depth > _MAX_DEPTH:  # deep in a recursive model: stop where the schema allows it
                branch = next((b for b in branches if _is_null_branch(b)), branch)
            return _instance(branch, root, depth + 1, refs)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind is None:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        elif "minLength" in schema or "maxLength" in schema or "format" in schema:
            kind = "string"
        elif any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            kind = "number"
        else:
            return None

    if kind == "object":
        return _object_instance(schema, root, depth, refs)
    if kind == "array":
        return _array_instance(schema, root, depth, refs)
    if kind == "string":
        return _string_instance(schema)
    if kind == "integer":
        return _number_instance(schema, integer=True)
    if kind == "number":
        return _number_instance(schema, integer=False)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    raise ValueError(f"unknown schema type {kind!r}")


def _object_instance(schema: dict, root: Any, depth: int, refs: frozenset[str]) -> dict:
    properties: dict = schema.get("properties") or {}
    required = schema.get("required") or []
    extra = schema.get("additionalProperties")
    extra_schema = extra if isinstance(extra, dict) else {}
    names = list(properties) if depth <= _MAX_DEPTH else [n for n in properties if n in required]
    result = {name: _instance(properties[name], root, depth + 1, refs) for name in names}
    for name in required:
        if name not in result:
            result[name] = _instance(extra_schema, root, depth + 1, refs)
    index = 0
    while len(result) < schema.get("minProperties", 0):
        result.setdefault(f"key{index}", _instance(extra_schema, root, depth + 1, refs))
        index += 1
    return result


def _array_instance(schema: dict, root: Any, depth: int, refs: frozenset[str]) -> list:
    prefix = schema.get("prefixItems") or []
    items = [_instance(sub, root, depth + 1, refs) for sub in prefix]
    wanted = schema.get("minItems", 0)
    if len(items) < wanted:
        item_schema = schema.get("items")
        item_schema = item_schema if isinstance(item_schema, dict) else {}
        item = _instance(item_schema, root, depth + 1, refs)
        unique = schema.get("uniqueItems", False)
        while len(items) < wanted:
            items.append(_vary(item, len(items)) if unique else item)
    return items


def _vary(value: Any, index: int) -> Any:
    """Distinct-ish variants of a value, so that `uniqueItems` arrays of scalars stay unique."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value + index
    if isinstance(value, str):
        return value + str(index) if index else value
    return value


def _string_instance(schema: dict) -> str:
    text = _STRING_FORMATS.get(schema.get("format", ""), "")
    min_length = schema.get("minLength", 0)
    if len(text) < min_length:
        text += "x" * (min_length - len(text))
    return text


def _number_instance(schema: dict, *, integer: bool) -> int | float:
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    lo_ex = schema.get("exclusiveMinimum")
    hi_ex = schema.get("exclusiveMaximum")
    # draft-4 style: exclusiveMinimum/Maximum are booleans qualifying minimum/maximum
    if isinstance(lo_ex, bool):
        lo_ex, lo = (lo, None) if lo_ex else (None, lo)
    if isinstance(hi_ex, bool):
        hi_ex, hi = (hi, None) if hi_ex else (None, hi)

    def ok(v: float) -> bool:
        return (
            (lo is None or v >= lo)
            and (hi is None or v <= hi)
            and (lo_ex is None or v > lo_ex)
            and (hi_ex is None or v < hi_ex)
        )

    candidates: list[float] = [0]
    if lo is not None:
        candidates.append(lo)
    if lo_ex is not None:
        candidates += [math.floor(lo_ex) + 1, lo_ex + 1]
    if hi is not None:
        candidates.append(hi)
    if hi_ex is not None:
        candidates += [math.ceil(hi_ex) - 1, hi_ex - 1]
    low = lo if lo is not None else lo_ex
    high = hi if hi is not None else hi_ex
    if low is not None and high is not None:
        candidates.append((low + high) / 2)
    step = schema.get("multipleOf")
    if step:
        candidates = [m * step for c in candidates for m in (math.ceil(c / step), math.floor(c / step))]
    if integer:
        candidates = [v for c in candidates for v in (math.ceil(c), math.floor(c))]
    value = next((c for c in candidates if ok(c)), candidates[0])
    return int(value) if integer else float(value)
