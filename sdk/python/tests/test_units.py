"""The SDK's own rules, without a server."""

from __future__ import annotations

import enum
import math
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import TypeAdapter

from orchestrator_sdk import AsyncClient, StaticToken, TokenSource, Worker, models
from orchestrator_sdk._core import query_params, to_json
from orchestrator_sdk.worker import _json_value


class Colour(str, enum.Enum):
    RED = "red"


def test_query_values_are_written_as_the_server_reads_them() -> None:
    assert query_params({"a": True, "b": None, "c": [True, 2], "d": Colour.RED, "e": 5}) == {
        "a": "true",
        "c": "true,2",
        "d": "red",
        "e": "5",
    }


def test_bodies_keep_what_is_given_and_leave_out_what_is_not() -> None:
    assert to_json({"result": None, "at": datetime(2026, 1, 1, tzinfo=timezone.utc)}) == {
        "result": None,
        "at": "2026-01-01T00:00:00Z",
    }
    assert to_json(models.StatusPatch(status="failed", error_message=None)) == {
        "status": "failed",
        "error_message": None,
    }


def test_a_pending_reason_from_a_newer_server_is_read_not_refused() -> None:
    reasons = TypeAdapter(models.PendingReason)
    assert isinstance(reasons.validate_python({"state": "routable"}), models.PendingReasonRoutable)
    newer = reasons.validate_python({"state": "quota_exhausted", "quota": "gpu"})
    assert isinstance(newer, models.PendingReasonOther)
    assert (newer.state, newer.model_extra) == ("quota_exhausted", {"quota": "gpu"})


def test_a_result_must_be_strict_json() -> None:
    assert _json_value(models.Throughput(created=1, finished=2)) == {"created": 1, "finished": 2}
    for bad in (math.nan, {"x": math.inf}, object()):
        with pytest.raises((TypeError, ValueError)):
            _json_value(bad)


def task(**fields: Any) -> models.Task:
    now = datetime.now(timezone.utc)
    base = dict(id=1, trace_id="6a1f3c9e-0000-4000-8000-000000000001", task_type="t", title="t", payload={})
    base |= dict(status="assigned", priority=5, created_at=now, retry_count=0, max_retries=3, updated_at=now)
    return models.Task.model_validate(base | fields)


def test_a_task_goes_to_the_handler_of_its_capability_else_its_type_else_the_only_one() -> None:
    worker = Worker(AsyncClient("http://localhost:1"), droplet_id=1, name="w", endpoint="http://w:1")

    def a(job: Any) -> None: ...
    def b(job: Any) -> None: ...

    worker.task("a")(a)
    assert worker._handler_for(task(required_capability="zzz")) is None
    assert worker._handler_for(task(task_type="anything")) is a, "nothing required: the only handler"
    worker.task("b")(b)
    assert worker._handler_for(task(required_capability="b")) is b
    assert worker._handler_for(task(task_type="a")) is a
    assert worker._handler_for(task(task_type="c")) is None, "two handlers: none is the one"


def test_a_worker_needs_the_async_client() -> None:
    from orchestrator_sdk import Client

    with pytest.raises(TypeError, match="AsyncClient"):
        Worker(Client("http://localhost:1"), droplet_id=1, name="w", endpoint="http://w:1")  # type: ignore[arg-type]


class Counting(TokenSource):
    def __init__(self, lifetime: float | None) -> None:
        super().__init__()
        self.fetched = 0
        self.lifetime = lifetime

    def _fetch(self, orchestrator: Any) -> tuple[str, float | None]:
        self.fetched += 1
        return f"token-{self.fetched}", self.lifetime


def test_a_refused_token_is_forgotten_only_if_no_call_replaced_it() -> None:
    source = Counting(None)
    assert source.token(None) == "token-1"  # type: ignore[arg-type]
    source.refused("token-1")
    assert source.token(None) == "token-2"  # type: ignore[arg-type]
    source.refused("token-1")  # a call that used the old one, answered late
    assert source.token(None) == "token-2"  # type: ignore[arg-type]
    assert StaticToken("fixed").refused("fixed") is False


def test_a_short_lived_token_is_kept_for_half_its_life() -> None:
    source = Counting(10)
    source.token(None)  # type: ignore[arg-type]
    source.token(None)  # type: ignore[arg-type]
    assert source.fetched == 1
    source._renew_at = time.time() - 1
    source.token(None)  # type: ignore[arg-type]
    assert source.fetched == 2
