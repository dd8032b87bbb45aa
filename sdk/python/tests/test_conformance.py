"""The SDK stays true to the server: every schema of the live OpenAPI
document has its model (no field missing, none extra, the same types and
the same required fields), every operation its method on both clients,
and the generated files are what the generator makes of the document."""

from __future__ import annotations

import datetime
import sys
import types
import typing
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from orchestrator_sdk import AsyncClient, Client, models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import generate  # noqa: E402

REF = "#/components/schemas/"
NONE = ("none",)
ANY = ("any",)


@pytest.fixture(scope="module")
def document(server: Any) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json", timeout=10).json()


# -- what the document says a type is ------------------------------------------


def union(*kinds: tuple[Any, ...]) -> tuple[Any, ...]:
    flat: set[tuple[Any, ...]] = set()
    for kind in kinds:
        flat |= kind[1] if kind[0] == "union" else {kind}
    if ANY in flat:
        return ANY
    return next(iter(flat)) if len(flat) == 1 else ("union", frozenset(flat))


def expected(schema: dict[str, Any], schemas: dict[str, Any]) -> tuple[Any, ...]:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        target = schemas[name]
        if target.get("type") == "object" and "properties" in target or "allOf" in target:
            return ("model", generate.class_name(name))
        if "oneOf" in target and not all("$ref" in v for v in target["oneOf"]):
            tag = "state"
            variants = [("model", name + generate.camel(v["properties"][tag]["enum"][0])) for v in target["oneOf"]]
            # and the catch-all of a variant from a newer server
            return union(*variants, ("model", name + generate.OTHER))
        return expected(target, schemas)
    if "oneOf" in schema:
        return union(*(expected(v, schemas) for v in schema["oneOf"]))
    kind = schema.get("type")
    if kind is None:
        return ANY
    if isinstance(kind, list):
        return union(*(expected(dict(schema, type=k), schemas) for k in kind))
    if kind == "null":
        return NONE
    if kind == "string" and "enum" in schema:
        return ("literal", frozenset(schema["enum"]))
    if kind == "array":
        return ("list", expected(schema.get("items", {}), schemas))
    if kind == "object":
        values = schema.get("additionalProperties")
        return ("dict", expected(values, schemas) if isinstance(values, dict) else ANY)
    formats = {"date-time": ("datetime",), "uuid": ("uuid",)}
    if kind == "string" and schema.get("format") in formats:
        return formats[schema["format"]]
    return ({"string": "str", "integer": "int", "number": "float", "boolean": "bool"}[kind],)


# -- what the SDK says it is -----------------------------------------------------


def actual(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return actual(arguments[0])
    if origin in (typing.Union, types.UnionType):
        return union(*(actual(a) for a in arguments))
    if origin is typing.Literal:
        return ("literal", frozenset(arguments))
    if origin is list:
        return ("list", actual(arguments[0]))
    if origin is dict:
        assert arguments[0] is str, f"a map's keys are strings in JSON: {annotation}"
        return ("dict", actual(arguments[1]))
    if annotation is typing.Any:
        return ANY
    if annotation is type(None):
        return NONE
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation.__name__)
    simple = {str: "str", int: "int", float: "float", bool: "bool", datetime.datetime: "datetime", uuid.UUID: "uuid"}
    return (simple[annotation],)


def object_of(schema: dict[str, Any], schemas: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The properties and required fields of an object schema, allOf merged."""
    if "allOf" in schema:
        properties: dict[str, Any] = {}
        required: set[str] = set()
        for part in schema["allOf"]:
            part = schemas[part["$ref"].removeprefix(REF)] if "$ref" in part else part
            more, needed = object_of(part, schemas)
            properties.update(more)
            required |= needed
        return properties, required
    return dict(schema.get("properties", {})), set(schema.get("required", []))


def model_problems(model: type[BaseModel], schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    properties, required = object_of(schema, schemas)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    problems = [f"{model.__name__}: no field {p!r}" for p in sorted(set(properties) - set(fields))]
    problems += [f"{model.__name__}: field {f!r} is not in the document" for f in sorted(set(fields) - set(properties))]
    for name in sorted(set(properties) & set(fields)):
        field = fields[name]
        schema_of_field = properties[name]
        if schema_of_field.get("type") == "object" and "properties" in schema_of_field:
            # An inline object is a model of its own, named after its place.
            inline = getattr(models, model.__name__ + generate.camel(name))
            problems += model_problems(inline, schema_of_field, schemas)
            schema_of_field = {"$ref": REF + inline.__name__}
            schemas = dict(schemas, **{inline.__name__: properties[name]})
        want = expected(schema_of_field, schemas)
        if name not in required:
            want = union(want, NONE)
        got = actual(field.annotation)
        if got != want:
            problems.append(f"{model.__name__}.{name}: {got} where the document says {want}")
        if field.is_required() != (name in required):
            problems.append(f"{model.__name__}.{name}: required {field.is_required()}, the document {name in required}")
    return problems


def test_every_schema_has_a_model_with_the_same_fields_and_types(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    problems: list[str] = []
    for name, schema in schemas.items():
        python_name = generate.class_name(name)
        if not hasattr(models, python_name):
            problems.append(f"no model {python_name} for schema {name}")
            continue
        found = getattr(models, python_name)
        if schema.get("type") == "object" and "properties" in schema or "allOf" in schema:
            problems += model_problems(found, schema, schemas)
        elif "oneOf" in schema and not all("$ref" in v for v in schema["oneOf"]):
            for variant in schema["oneOf"]:
                member = getattr(models, name + generate.camel(variant["properties"]["state"]["enum"][0]))
                problems += model_problems(member, variant, schemas)
        elif actual(found) != expected(schema, schemas):
            problems.append(f"{python_name}: {actual(found)} where the document says {expected(schema, schemas)}")
    assert not problems, "\n".join(problems)


def test_the_conformance_check_catches_drift() -> None:
    """The check above fails on a missing, an extra or a retyped field."""
    schema = {"type": "object", "required": ["task_id"], "properties": {"task_id": {"type": "integer"}}}
    assert model_problems(models.Cancelled, schema, {}) == [
        "Cancelled: field 'cancelled_at' is not in the document",
        "Cancelled: field 'status' is not in the document",
    ]
    schema["properties"]["extra"] = {"type": "string"}
    assert "Cancelled: no field 'extra'" in model_problems(models.Cancelled, schema, {})
    retyped = {"type": "object", "required": ["task_id"], "properties": {"task_id": {"type": "string"}}}
    assert any("task_id: ('int',)" in p for p in model_problems(models.Cancelled, retyped, {}))


def test_every_operation_has_a_method_on_both_clients(document: dict[str, Any]) -> None:
    missing = []
    for path, item in document["paths"].items():
        for method in generate.HTTP_METHODS:
            if method not in item:
                continue
            op_id = item[method]["operationId"]
            name = generate.METHODS.get(op_id) or f"subscribe_{path.rsplit('/', 1)[1]}"
            for client in (Client, AsyncClient):
                if not callable(getattr(client, name, None)):
                    missing.append(f"{client.__name__}.{name} for {method.upper()} {path} ({op_id})")
    assert not missing, "\n".join(missing)


def test_the_generated_files_are_what_the_document_makes(document: dict[str, Any]) -> None:
    stale = [path.name for path, text in generate.generate(document).items() if path.read_text() != text]
    assert not stale, f"{stale} out of date: run `python sdk/python/scripts/generate.py URL/openapi.json`"
