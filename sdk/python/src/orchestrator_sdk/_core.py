"""What the sync and async clients share: how a call is written as an HTTP
request and how its answer is read (the UDC envelope, the error body)."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import ApiError, DecodeError, OrchestratorError

T = TypeVar("T")

#: Times a request of unknown outcome is sent, with the same
#: `Idempotency-Key`, before its error is raised.
IDEMPOTENT_TRIES = 3
#: The first wait between those tries; each next one is four times longer.
FIRST_RETRY_WAIT = 0.2

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass
class Call(Generic[T]):
    """One request to the orchestrator and how to read its answer."""

    method: str
    path: str
    answer: Any = None
    """The type of the answer's payload (a model or any type pydantic
    reads); None for an answer that is returned as plain JSON."""
    params: Mapping[str, Any] | None = None
    body: Any = None
    authenticated: bool = True
    """False for the bare public endpoints: no token, no envelope."""
    idempotent: bool = False
    """Sent under an `Idempotency-Key`, again with the same key while its
    outcome is unknown (no answer, or a 5xx)."""
    idempotency_key: str | None = None
    text: bool = False
    """The answer is text (the Prometheus metrics), not JSON."""
    ok_statuses: tuple[int, ...] = ()
    """Error statuses whose body is still the answer (`/health` when the
    store is down answers 503 with its usual body)."""
    headers: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """The call's Idempotency-Key, made once and kept for its retries."""
        if self.idempotency_key is None:
            self.idempotency_key = str(uuid.uuid4())
        return self.idempotency_key


def normalize_base_url(base_url: str) -> str:
    base = base_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")) or len(base) < 9:
        raise ValueError(f"invalid orchestrator URL {base_url!r}: give one such as http://localhost:8000")
    return base


def to_json(value: Any) -> Any:
    """A request body or query value as JSON: a model without the fields
    left unset, so that the server's defaults apply; what is given, as given
    (an explicit None is sent as null)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True)
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return _adapter(type(value)).dump_python(value, mode="json")  # datetime, UUID, enum…


def listed_body(field: str, body: Any) -> Any:
    """A body of one list field, given as the list or as the body."""
    return {field: list(body)} if isinstance(body, (list, tuple)) else body


def query_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters without the unset ones, as the server spells them."""
    return {name: _query_value(value) for name, value in (params or {}).items() if value is not None}


def _query_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_query_value(v) for v in value)
    json_value = to_json(value)
    return json_value if isinstance(json_value, str) else json.dumps(json_value)


def build_request(call: Call[Any], token: str | None) -> dict[str, Any]:
    """The keyword arguments of `httpx.Client.request` for `call`."""
    headers = dict(call.headers)
    if call.authenticated and token:
        headers["Authorization"] = f"Bearer {token}"
    if call.idempotent:
        headers["Idempotency-Key"] = call.key()
    request: dict[str, Any] = {
        "method": call.method,
        "url": call.path,
        "params": query_params(call.params),
        "headers": headers,
    }
    if call.body is not None:
        request["json"] = to_json(call.body)
    return request


def payload_of(body: Any) -> Any:
    """The payload of a UDC envelope; any other body as it is."""
    if isinstance(body, dict) and "udc_version" in body and "payload" in body:
        return body["payload"]
    return body


def api_error(status: int, payload: Any) -> ApiError:
    """The error of an answer with `status`, read from its error body; a
    body that is not one still gives an error, of code ``unknown``."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return ApiError(status, "unknown", f"HTTP {status}", None)
    message = error.get("message") or f"HTTP {status}"
    return ApiError(status, error["code"], str(message), error.get("details"))


def read_answer(call: Call[T], response: httpx.Response) -> T:
    """The answer of `call` from `response`, or the error it carries."""
    url = str(response.request.url) if response.request else call.path
    status = response.status_code
    success = 200 <= status < 300 or status in call.ok_statuses
    if call.text and success:
        return response.text  # type: ignore[return-value]
    body = _json_of(url, response)
    payload = payload_of(body)
    if not success:
        raise api_error(status, payload)
    if call.answer is None:
        return payload  # type: ignore[no-any-return]
    try:
        return _adapter(call.answer).validate_python(payload)  # type: ignore[no-any-return]
    except ValidationError as err:
        raise DecodeError(url, f"the answer is not a {_name(call.answer)}: {err}") from None


def _json_of(url: str, response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as err:
        if response.status_code >= 400:
            return None
        raise DecodeError(url, f"status {response.status_code}, body not JSON: {err}") from None


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    """A reader and writer of `kind` (a type), built once: building one is costly."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def _name(answer: Any) -> str:
    return getattr(answer, "__name__", str(answer))


def should_retry(call: Call[Any], error: OrchestratorError, tries: int) -> bool:
    """True when `call` may be sent again after `error` on try number `tries`."""
    return call.idempotent and error.outcome_unknown and tries < IDEMPOTENT_TRIES


def retry_wait(tries: int) -> float:
    return FIRST_RETRY_WAIT * float(4 ** max(tries - 1, 0))
