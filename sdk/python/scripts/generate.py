"""Writes the SDK's models and operations from the server's OpenAPI document.

    python scripts/generate.py http://localhost:8000/openapi.json   # or a file
    python scripts/generate.py --check URL                          # fails if stale

It writes `src/orchestrator_sdk/models.py` (a pydantic model of every
schema) and `src/orchestrator_sdk/_operations.py` (a sync and an async
method of every operation). Both are committed; `tests/test_conformance.py`
checks them against the live document, so that the SDK cannot drift from
the server. An operation without a name in `METHODS` stops the generator:
a new endpoint gets its Python name here.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "src" / "orchestrator_sdk"

#: The Python method of each operation, by operationId. None: written by
#: hand (the live feeds, which are WebSockets, not JSON over HTTP).
METHODS: dict[str, str | None] = {
    "public_health": "health",
    "public_readiness": "readiness",
    "public_capabilities": "capabilities",
    "public_state": "state",
    "public_dependencies": "dependencies",
    "public_metadata": "metadata",
    "public_document": "openapi_document",
    "tokens_issue": "issue_token",
    "tasks_list": "list_tasks",
    "tasks_create": "create_task",
    "tasks_create_batch": "create_tasks",
    "tasks_get": "get_task",
    "tasks_cancel": "cancel_task",
    "tasks_update_status": "update_status",
    "tasks_request_cancel": "request_cancel",
    "tasks_report_progress": "report_progress",
    "tasks_retry": "retry_task",
    "concurrency_list": "list_concurrency_limits",
    "concurrency_get": "get_concurrency_limit",
    "concurrency_set": "set_concurrency_limit",
    "concurrency_delete": "delete_concurrency_limit",
    "workflows_list": "list_workflows",
    "workflows_create": "create_workflow",
    "workflows_get": "get_workflow",
    "workflows_cancel": "cancel_workflow",
    "schedules_list": "list_schedules",
    "schedules_create": "create_schedule",
    "schedules_get": "get_schedule",
    "schedules_update": "update_schedule",
    "schedules_delete": "delete_schedule",
    "schedules_pause": "pause_schedule",
    "schedules_resume": "resume_schedule",
    "droplets_list": "list_droplets",
    "droplets_register": "register_droplet",
    "droplets_get": "get_droplet",
    "droplets_activate": "activate_droplet",
    "droplets_deactivate": "deactivate_droplet",
    "droplets_capabilities": "droplet_capabilities",
    "droplets_heartbeat": "heartbeat",
    "droplets_service_heartbeat": "service_heartbeat",
    "management_version": "version",
    "management_jobs": "list_jobs",
    "management_pause": "pause_job",
    "management_resume": "resume_job",
    "management_services": "background_services",
    "management_clear_cache": "clear_cache",
    "management_reload_config": "reload_config",
    "management_emergency_stop": "emergency_stop",
    "management_shutdown": "shutdown",
    "messages_message": "message",
    "messages_send": "send",
    "messages_broadcast": "broadcast",
    "metrics_prometheus": "prometheus_metrics",
    "metrics_summary": "metrics_summary",
    "metrics_routing": "routing_stats",
    "metrics_system_health": "system_health",
    "metrics_by_type": "tasks_by_type",
    "metrics_performance": "task_performance",
    "metrics_droplet_performance": "droplet_performance",
    "feeds_status": "feed_status",
    "feeds_tasks_feed": None,
    "feeds_droplets_feed": None,
}

#: Public endpoints whose error status still carries their usual body.
ANSWERED_WHEN_DOWN = {"/health": (503,), "/readyz": (503,)}

REF = "#/components/schemas/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def class_name(schema_name: str) -> str:
    """`i64` is the only lower-case schema name; it reads `I64` in Python."""
    return schema_name[:1].upper() + schema_name[1:]


def field_name(name: str) -> str:
    """A property as a Python identifier (a keyword gets a trailing `_`)."""
    safe = re.sub(r"\W", "_", name)
    if keyword.iskeyword(safe) or safe.startswith("model_") or not safe.isidentifier():
        safe += "_"
    return safe


def camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]", text) if part)


def doc_line(text: str | None, indent: str) -> list[str]:
    """A docstring of `text`, or nothing."""
    if not text:
        return []
    body = text.strip().replace('"""', "'''").replace("\\", "\\\\")
    lines = textwrap.fill(" ".join(body.split()), 88 - len(indent)).splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" for line in lines[1:]), f'{indent}"""']


class Models:
    """Renders `components.schemas` as pydantic models and type aliases."""

    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        self.aliases: list[str] = []
        self.classes: dict[str, list[str]] = {}
        self.bases: dict[str, str] = {}
        self.unions: list[str] = []
        self.names: list[str] = []

    def render(self) -> str:
        for name, schema in self.schemas.items():
            self.schema(class_name(name), schema)
        out = [HEADER_MODELS]
        out += self.aliases
        out += [""]
        for name in self.class_order():
            out += ["", "", *self.classes[name]]
        out += ["", "", *self.unions]
        out += ["", "", "for _model in list(globals().values()):"]
        out += ["    if isinstance(_model, type) and issubclass(_model, Model) and _model is not Model:"]
        out += ["        _model.model_rebuild()"]
        out += ["", "__all__ = ["] + [f'    "{n}",' for n in sorted(self.names)] + ["]", ""]
        return "\n".join(out)

    def class_order(self) -> list[str]:
        """Classes with the class they extend (allOf) first."""
        done: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in self.bases:
                visit(self.bases[name])
            done.append(name)

        for name in self.classes:
            visit(name)
        return done

    def schema(self, name: str, schema: dict[str, Any]) -> None:
        self.names.append(name)
        if schema.get("type") == "object" and "properties" in schema:
            self.object_class(name, schema, base="Model")
        elif "allOf" in schema:
            base_ref, extra = schema["allOf"]
            base = class_name(base_ref["$ref"].removeprefix(REF))
            self.bases[name] = base
            merged = dict(extra, description=schema.get("description"))
            self.object_class(name, merged, base=base)
        elif "oneOf" in schema:
            self.union(name, schema)
        else:
            annotation = self.type_of(schema)
            self.aliases += doc_comment(schema.get("description"))
            self.aliases.append(f"{name}: TypeAlias = {annotation}")

    def object_class(self, name: str, schema: dict[str, Any], base: str) -> None:
        lines = [f"class {name}({base}):"]
        lines += doc_line(schema.get("description"), "    ") or ([] if schema.get("properties") else ['    """"""'])
        if schema.get("additionalProperties") is False:
            # The server refuses unknown fields: a misspelt one fails here, not there.
            lines.append('    model_config = ConfigDict(extra="forbid")')
        required = set(schema.get("required", []))
        for prop, prop_schema in schema.get("properties", {}).items():
            lines.append(self.field(name, prop, prop_schema, prop in required))
        if len(lines) == 1:
            lines.append("    pass")
        self.classes[name] = lines

    def field(self, owner: str, prop: str, schema: dict[str, Any], required: bool) -> str:
        if schema.get("type") == "object" and "properties" in schema:
            # An inline object is a model of its own, named after its place.
            inline = f"{owner}{camel(prop)}"
            self.names.append(inline)
            self.object_class(inline, schema, base="Model")
            schema = {"$ref": REF + inline, "description": schema.get("description")}
        annotation = self.type_of(schema)
        if not required and "None" not in annotation.split(" | ") and annotation != "Any":
            annotation += " | None"
        arguments = [] if required else ["default=None"]
        python_name = field_name(prop)
        if python_name != prop:
            arguments.append(f'alias="{prop}"')
        description = schema.get("description")
        if description:
            arguments.append(f"description={json.dumps(' '.join(description.split()))}")
        value = f" = Field({', '.join(arguments)})" if arguments else ""
        return f"    {python_name}: {annotation}{value}"

    def union(self, name: str, schema: dict[str, Any]) -> None:
        variants = schema["oneOf"]
        if all("$ref" in v for v in variants):
            refs = " | ".join(class_name(v["$ref"].removeprefix(REF)) for v in variants)
            self.unions += doc_comment(schema.get("description"))
            self.unions.append(f"{name}: TypeAlias = {refs}")
            return
        # Objects told apart by the one-value enum every variant has. A value
        # a newer server adds is read as the `…Other` model, not refused.
        tag = next(iter(p for p, s in variants[0]["properties"].items() if len(s.get("enum", [])) == 1))
        members: list[str] = []
        values: list[str] = []
        for variant in variants:
            value = variant["properties"][tag]["enum"][0]
            member = f"{name}{camel(value)}"
            self.object_class(member, variant, base="Model")
            members.append(f'Annotated[{member}, Tag("{value}")]')
            values.append(value)
            self.names.append(member)
        other = f"{name}{OTHER}"
        self.classes[other] = [
            f"class {other}(Model):",
            f'    """A {name} this SDK does not know yet (from a newer server): its `{tag}` and every field."""',
            "",
            '    model_config = ConfigDict(extra="allow")',
            f"    {field_name(tag)}: str",
        ]
        self.names.append(other)
        members.append(f'Annotated[{other}, Tag("{OTHER_TAG}")]')
        known = ", ".join(json.dumps(v) for v in values)
        self.unions += doc_comment(schema.get("description"))
        self.unions.append(f"{name}: TypeAlias = Annotated[")
        self.unions += [f"    {m}" + (" |" if i < len(members) - 1 else ",") for i, m in enumerate(members)]
        self.unions.append(f'    Discriminator(_tag_or_other("{tag}", ({known},))),')
        self.unions.append("]")

    def type_of(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return class_name(schema["$ref"].removeprefix(REF))
        if "oneOf" in schema:
            parts = [self.type_of(v) for v in schema["oneOf"]]
            nulls = [p for p in parts if p == "None"]
            return " | ".join([p for p in parts if p != "None"] + nulls)
        kind = schema.get("type")
        if kind is None:
            return "Any"
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            inner = self.type_of(dict(schema, type=non_null[0]))
            return f"{inner} | None" if "null" in kind else inner
        if "enum" in schema and kind == "string":
            return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
        if kind == "array":
            return f"list[{self.type_of(schema.get('items', {}))}]"
        if kind == "object":
            if "properties" in schema:
                raise ValueError(f"an inline object with properties has no model: {schema}")
            values = schema.get("additionalProperties")
            inner = self.type_of(values) if isinstance(values, dict) else "Any"
            return f"dict[str, {inner}]"
        return (
            PRIMITIVES[(kind, schema.get("format"))]
            if (kind, schema.get("format")) in PRIMITIVES
            else PRIMITIVES[(kind, None)]
        )


#: The model of a variant this SDK does not know, and its tag.
OTHER = "Other"
OTHER_TAG = "__other__"

PRIMITIVES = {
    ("string", None): "str",
    ("string", "date-time"): "datetime",
    ("string", "uuid"): "UUID",
    ("integer", None): "int",
    ("number", None): "float",
    ("boolean", None): "bool",
    ("null", None): "None",
}


def doc_comment(text: str | None) -> list[str]:
    if not text:
        return []
    return ["#: " + line for line in textwrap.fill(" ".join(text.split()), 85).splitlines()]


HEADER_MODELS = '''"""The models of every request and answer of the orchestrator's API.

Generated by `scripts/generate.py` from the server's OpenAPI document; do
not edit by hand. `tests/test_conformance.py` checks them against the live
document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class Model(BaseModel):
    """The base of every model: fields by name or by their JSON name;
    fields a newer server adds are ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


def _tag_or_other(field: str, known: tuple[str, ...]) -> Callable[[Any], str]:
    """The variant of a tagged union: the value of `field` when this SDK
    knows it, else the catch-all one."""

    def tag(value: Any) -> str:
        found = value.get(field) if isinstance(value, dict) else getattr(value, field, None)
        return found if found in known else "__other__"

    return tag

'''


class Operations:
    """Renders every operation as a method of the sync and async clients."""

    def __init__(self, document: dict[str, Any], models: Models) -> None:
        self.document = document
        self.models = models
        self.schemas = document["components"]["schemas"]

    def render(self) -> str:
        sync, asynchronous = [], []
        seen = set()
        for path, item in self.document["paths"].items():
            for method in HTTP_METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                op_id = operation["operationId"]
                if op_id not in METHODS:
                    raise SystemExit(f"{method.upper()} {path} ({op_id}) has no Python name in METHODS")
                seen.add(op_id)
                name = METHODS[op_id]
                if name is None:
                    continue
                sync += self.method(name, method, path, operation, is_async=False)
                asynchronous += self.method(name, method, path, operation, is_async=True)
        stale = set(METHODS) - seen
        if stale:
            raise SystemExit(f"METHODS names operations the document no longer has: {sorted(stale)}")
        body = "\n".join(sync + asynchronous)
        used = sorted((n for n in self.models.names if re.search(rf"\b{n}\b", body)), key=str.lower)
        imports = ["from .models import ("] + [f"    {n}," for n in used] + [")"]
        return "\n".join(
            [
                HEADER_OPERATIONS,
                *imports,
                "",
                "",
                "class SyncOperations(_SyncCaller):",
                *sync,
                "",
                "",
                "class AsyncOperations(_AsyncCaller):",
                *asynchronous,
                "",
            ]
        )

    def method(self, name: str, http: str, path: str, op: dict[str, Any], is_async: bool) -> list[str]:
        params = op.get("parameters", [])
        path_params = [p for p in params if p["in"] == "path"]
        body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        body_fields = (
            set(self.schemas.get(body_schema["$ref"].removeprefix(REF), {}).get("properties", {}))
            if body_schema and "$ref" in body_schema
            else set()
        )
        query = [p for p in params if p["in"] == "query" and p["name"] not in body_fields and p["name"] != "token"]
        idempotent = any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in params)
        answer, unwrap = self.answer(op)
        signature = ["self"]
        signature += [f"{field_name(p['name'])}: {self.models.type_of(p['schema'])}" for p in path_params]
        listed = self.list_field(body_schema)
        if body_schema is not None:
            body_type = self.models.type_of(body_schema)
            also = f" | Sequence[{listed[1]} | Mapping[str, Any]]" if listed else ""
            signature.append(f"body: {body_type} | Mapping[str, Any]{also}")
        if query or idempotent:
            signature.append("*")
        for p in query:
            annotation = self.models.type_of(p["schema"])
            signature.append(f"{field_name(p['name'])}: {annotation} | None = None")
        if idempotent:
            signature.append("idempotency_key: str | None = None")
        returns = answer if not unwrap else unwrap[1]
        prefix = "async def" if is_async else "def"
        lines = ["", f"    {prefix} {name}({', '.join(signature)}) -> {returns}:"]
        summary = op.get("summary") or op.get("description")
        lines += doc_line(summary, "        ")
        url = path
        for p in path_params:
            url = url.replace("{" + p["name"] + "}", "{" + field_name(p["name"]) + "}")
        arguments = [f'"{http.upper()}"', f'f"{url}"' if path_params else f'"{url}"']
        if answer not in ("Any", "str"):
            arguments.append(f"answer={answer}")
        if query:
            pairs = ", ".join(f'"{p["name"]}": {field_name(p["name"])}' for p in query)
            arguments.append(f"params={{{pairs}}}")
        if listed:
            arguments.append(f'body=listed_body("{listed[0]}", body)')
        elif body_schema is not None:
            arguments.append("body=body")
        if not any(op.get("security") or []):
            arguments.append("authenticated=False")
        if idempotent:
            arguments.append("idempotent=True, idempotency_key=idempotency_key")
        if answer == "str":
            arguments.append("text=True")
        if path in ANSWERED_WHEN_DOWN:
            arguments.append(f"ok_statuses={ANSWERED_WHEN_DOWN[path]}")
        call = f"Call({', '.join(arguments)})"
        awaiting = "await " if is_async else ""
        if unwrap:
            lines.append(f"        return ({awaiting}self._call({call})).{unwrap[0]}")
        else:
            lines.append(f"        return {awaiting}self._call({call})")
        return lines

    def list_field(self, body: dict[str, Any] | None) -> tuple[str, str] | None:
        """The field of a body whose one field is a list (`{"tasks": […]}`),
        and the type of its items: such a body may be given as the list."""
        if body is None or "$ref" not in body:
            return None
        properties = self.schemas[body["$ref"].removeprefix(REF)].get("properties", {})
        if len(properties) != 1:
            return None
        ((name, schema),) = properties.items()
        if schema.get("type") != "array":
            return None
        return name, self.models.type_of(schema.get("items", {}))

    def answer(self, op: dict[str, Any]) -> tuple[str, tuple[str, str] | None]:
        """The answer's model, and the one field it is returned as, if it has one."""
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            content = response.get("content", {})
            if "application/json" not in content:
                return ("str" if content else "Any"), None
            schema = content["application/json"].get("schema")
            if schema is None:
                return "Any", None
            if "allOf" in schema:
                schema = schema["allOf"][1]["properties"]["payload"]
            if "$ref" not in schema:
                return self.models.type_of(schema), None
            name = schema["$ref"].removeprefix(REF)
            target = self.schemas[name]
            props = target.get("properties", {})
            if target.get("type") == "object" and len(props) == 1 and set(target.get("required", [])) == set(props):
                ((only, only_schema),) = props.items()
                return class_name(name), (field_name(only), self.models.type_of(only_schema))
            return class_name(name), None
        return "Any", None


HEADER_OPERATIONS = '''"""A method of the clients for every operation of the orchestrator's API.

Generated by `scripts/generate.py` from the server's OpenAPI document; do
not edit by hand. An answer of one field (`{"task": {…}}`) is returned as
that field; a body of one list field (`{"tasks": […]}`) may be given as the
list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ._caller import _AsyncCaller, _SyncCaller
from ._core import Call, listed_body'''


def load(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
            return document
    loaded: dict[str, Any] = json.loads(Path(source).read_text())
    return loaded


def generate(document: dict[str, Any]) -> dict[Path, str]:
    models = Models(document["components"]["schemas"])
    models_text = models.render()
    operations_text = Operations(document, models).render()
    return {PACKAGE / "models.py": models_text, PACKAGE / "_operations.py": operations_text}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    sources = [a for a in argv if a != "--check"]
    if len(sources) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for path, text in generate(load(sources[0])).items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date with the document: {', '.join(stale)}; run scripts/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
