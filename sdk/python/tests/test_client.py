"""The clients against every endpoint of the real server."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import Server, eventually, free_port
from pydantic import ValidationError

from orchestrator_sdk import (
    ApiError,
    AsyncClient,
    Client,
    IssuedToken,
    Registration,
    RegistryToken,
    TransportError,
    models,
)


@pytest.fixture
def admin(server: Server) -> Iterator[Client]:
    with Client(server.url, server.admin) as client:
        yield client


def droplet_client(server: Server, droplet_id: int) -> Client:
    return Client(server.url, server.token(f"droplet-{droplet_id}", "read,write", droplet_id))


def register(client: Client, droplet_id: int, capability: str, endpoint: str = "http://127.0.0.1:9") -> None:
    client.register_droplet(
        models.RegistrationDraft(
            droplet_id=droplet_id, name=f"d{droplet_id}", endpoint=endpoint, capabilities=[capability]
        )
    )


def test_public_endpoints_answer_bare_models(admin: Client) -> None:
    anonymous = Client(admin.base_url)
    assert anonymous.health().status == "active"
    assert anonymous.readiness().status == "ready"
    assert anonymous.capabilities().udc_version == "1.0"
    assert anonymous.state().custom_metrics.droplets_total >= 0
    assert anonymous.dependencies().required is not None
    assert anonymous.metadata().openapi_endpoint == "/openapi.json"
    assert anonymous.openapi_document()["openapi"] == "3.1.0"
    assert "orchestrator_" in anonymous.prometheus_metrics()


def test_a_task_goes_through_its_life(server: Server, admin: Client, droplet_id: int, capability: str) -> None:
    droplet = droplet_client(server, droplet_id)
    register(droplet, droplet_id, capability)
    created = admin.create_task(
        models.TaskDraft(task_type="sdk", required_capability=capability, payload={"n": 1}, timeout_seconds=60)
    )
    assert created.status in ("pending", "assigned")
    task = eventually("assigned", lambda: (t := admin.get_task(created.task_id)).status == "assigned" and t)
    assert task.assigned_droplet_id == droplet_id and task.state_history
    started = droplet.update_status(task.id, {"status": "in_progress", "attempt": task.attempt})
    assert started.status == "in_progress"
    progressed = droplet.report_progress(task.id, models.ProgressReport(attempt=task.attempt, progress=40))
    assert progressed.progress is not None and progressed.progress.percent == 40
    asked = admin.request_cancel(task.id)
    assert asked.cancel_requested_at is not None
    failed = droplet.update_status(task.id, {"status": "failed", "attempt": task.attempt, "error_message": "asked"})
    assert failed.status == "failed"
    retried = admin.retry_task(task.id, models.RetryRequest(reason="once more"))
    assert retried.status in ("pending", "assigned")
    page = admin.list_tasks(capability=capability, limit=10)
    assert [t.id for t in page.tasks] == [task.id] and page.total == 1


def test_a_refused_call_raises_the_api_error_with_its_code(admin: Client) -> None:
    with pytest.raises(ApiError) as missing:
        admin.get_task(987654321)
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as invalid:
        admin.create_task({"task_type": "x", "priority": 11})
    assert (invalid.value.status, invalid.value.code) == (422, "validation_failed")
    assert "priority" in invalid.value.message
    assert not invalid.value.outcome_unknown
    pending = admin.create_task({"task_type": "never-routed", "required_capability": "nobody-offers-this"})
    admin.cancel_task(pending.task_id)
    with pytest.raises(ApiError) as conflict:
        admin.cancel_task(pending.task_id)
    assert conflict.value.status == 409


def test_a_request_model_refuses_a_field_the_server_would_refuse() -> None:
    with pytest.raises(ValidationError, match="paylod"):
        models.TaskDraft(task_type="x", paylod={"typo": True})  # type: ignore[call-arg]


def test_no_answer_is_a_transport_error() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", "token", timeout=2)
    with pytest.raises(TransportError) as lost:
        client.get_task(1)
    assert lost.value.outcome_unknown


def test_a_batch_is_created_in_one_commit(admin: Client) -> None:
    created = admin.create_tasks({"tasks": [{"task_type": "batch-a"}, {"task_type": "batch-b"}]})
    assert len(created) == 2 and created[0].task_id < created[1].task_id
    listed = admin.create_tasks([models.TaskDraft(task_type="batch-c"), {"task_type": "batch-d"}])
    assert [admin.get_task(c.task_id).task_type for c in listed] == ["batch-c", "batch-d"]
    with pytest.raises(ApiError) as invalid:
        admin.create_tasks({"tasks": [{"task_type": "ok"}, {"task_type": ""}]})
    assert "tasks[1]" in invalid.value.message


class LosesTheFirstAnswer(httpx.BaseTransport):
    """Sends each request on, but loses the first answer to a creation, as a
    connection cut after the server committed would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/tasks":
            self.keys.append(request.headers["Idempotency-Key"])
            if len(self.keys) == 1:
                response.read()
                raise httpx.ReadError("connection reset", request=request)
        return response


def test_a_creation_of_unknown_outcome_is_sent_again_under_the_same_key(server: Server, admin: Client) -> None:
    transport = LosesTheFirstAnswer()
    http = httpx.Client(base_url=server.url, transport=transport)
    client = Client(server.url, server.admin, http=http)
    created = client.create_task({"task_type": "once-only", "required_capability": "nobody-offers-this"})
    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
    same = admin.list_tasks(task_type="once-only")
    assert [t.id for t in same.tasks] == [created.task_id], "the retry made no second task"


def test_a_given_idempotency_key_makes_a_request_happen_once(admin: Client) -> None:
    first = admin.create_task({"task_type": "keyed"}, idempotency_key="sdk-key-1")
    again = admin.create_task({"task_type": "keyed"}, idempotency_key="sdk-key-1")
    assert first.task_id == again.task_id
    with pytest.raises(ApiError) as reused:
        admin.create_task({"task_type": "other"}, idempotency_key="sdk-key-1")
    assert reused.value.code == "idempotency_key_reused"


def test_droplets_register_beat_and_are_managed(
    server: Server, admin: Client, droplet_id: int, capability: str
) -> None:
    droplet = droplet_client(server, droplet_id)
    register(droplet, droplet_id, capability)
    assert droplet.heartbeat(droplet_id, models.HeartbeatReport(status="active")).status == "active"
    assert droplet.service_heartbeat({"droplet_id": droplet_id, "status": "active"}).droplet_id == droplet_id
    assert admin.get_droplet(droplet_id).name == f"d{droplet_id}"
    assert droplet_id in [d.droplet_id for d in admin.list_droplets(capability=capability).droplets]
    assert admin.droplet_capabilities(droplet_id).capabilities == [capability]
    out = admin.deactivate_droplet(droplet_id, requeue=True)
    assert out.status == "inactive" and out.tasks_taken_back == 0
    assert admin.activate_droplet(droplet_id).status == "active"


def test_concurrency_limits_are_set_read_and_removed(admin: Client) -> None:
    limit = admin.set_concurrency_limit("sdk-key", {"max_running": 2})
    assert (limit.key, limit.max_running, limit.running) == ("sdk-key", 2, 0)
    assert admin.get_concurrency_limit("sdk-key").max_running == 2
    assert "sdk-key" in [entry.key for entry in admin.list_concurrency_limits()]
    assert admin.delete_concurrency_limit("sdk-key").deleted
    with pytest.raises(ApiError) as gone:
        admin.get_concurrency_limit("sdk-key")
    assert gone.value.code == "not_found"


def test_schedules_are_created_changed_paused_and_deleted(admin: Client) -> None:
    draft = models.ScheduleDraft(name="sdk-nightly", cron="0 3 * * *", task=models.TaskDraft(task_type="nightly"))
    schedule = admin.create_schedule(draft)
    assert schedule.name == "sdk-nightly"
    assert admin.get_schedule("sdk-nightly").cron == "0 3 * * *"
    assert "sdk-nightly" in [s.name for s in admin.list_schedules()]
    assert admin.update_schedule("sdk-nightly", {"cron": "0 4 * * *"}).cron == "0 4 * * *"
    assert admin.pause_schedule("sdk-nightly").paused
    assert not admin.resume_schedule("sdk-nightly").paused
    assert admin.delete_schedule("sdk-nightly").deleted


def test_workflows_are_submitted_read_and_cancelled(admin: Client) -> None:
    submission = models.WorkflowSubmission(
        name="sdk-flow",
        tasks=[
            models.WorkflowTaskBody(key="a", task_type="flow-a", required_capability="nobody-offers-this"),
            models.WorkflowTaskBody(key="b", task_type="flow-b", depends_on=["a"]),
        ],
    )
    created = admin.create_workflow(submission)
    assert [t.key for t in created.tasks] == ["a", "b"]
    workflow = admin.get_workflow(created.workflow_id)
    assert workflow.state == "running" and [t.waiting for t in workflow.tasks] == [False, True]
    assert created.workflow_id in [w.id for w in admin.list_workflows(limit=10)]
    waiting = admin.get_task(created.tasks[1].task_id)
    assert isinstance(waiting.routing, models.PendingReasonWaitingFor)
    assert admin.cancel_workflow(created.workflow_id).state == "cancelled"


def test_management_endpoints(admin: Client) -> None:
    assert admin.version().udc_version == "1.0"
    jobs = admin.list_jobs()
    assert "task_router" in [job.id for job in jobs]
    assert admin.pause_job("health_monitor").paused
    assert not admin.resume_job("health_monitor").paused
    assert admin.background_services().running >= 1
    assert admin.clear_cache().cleared
    assert admin.reload_config().changed == []


def test_an_emergency_stop_pauses_every_job(admin: Client) -> None:
    stopped = admin.emergency_stop()
    try:
        assert stopped.stopped and all(job.paused for job in stopped.jobs)
    finally:
        for job in stopped.jobs:
            admin.resume_job(job.id)
    assert not any(job.paused for job in admin.list_jobs())


def test_metrics_endpoints(admin: Client) -> None:
    assert admin.metrics_summary(time_range="24h").time_range == "24h"
    assert admin.routing_stats().time_range == "24h"
    assert admin.system_health().store.status == "up"
    assert isinstance(admin.tasks_by_type(time_range="1h").types, list)
    assert admin.task_performance(task_type="sdk").task_type == "sdk"


class EchoDroplet:
    """A droplet's `/message` that answers what it was sent."""

    def __init__(self) -> None:
        outer = self
        self.received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append(body)
                data = json.dumps({"received": True, "echo": body["payload"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_messages_to_the_orchestrator_and_through_it(
    server: Server, admin: Client, droplet_id: int, capability: str
) -> None:
    envelope = {
        "udc_version": "1.0",
        "trace_id": "6a1f3c9e-0000-4000-8000-000000000001",
        "source": "sdk-tests",
        "target": "droplet-10",
        "message_type": "query",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "payload": {"query": "system_status"},
    }
    reply = admin.message(envelope)
    assert isinstance(reply, models.SystemStatus) and reply.status
    echo = EchoDroplet()
    try:
        register(droplet_client(server, droplet_id), droplet_id, capability, endpoint=echo.url)
        sent = admin.send({"target_droplet_id": droplet_id, "message_type": "ping", "payload": {"n": 7}})
        assert sent.status == 200 and sent.response["echo"] == {"n": 7}
        broadcast = admin.broadcast({"message_type": "notice", "payload": {"n": 8}, "capability_filter": capability})
        assert (broadcast.targets, broadcast.delivered) == (1, 1)
    finally:
        echo.server.shutdown()


def test_the_task_feed_tells_of_each_change(admin: Client) -> None:
    with admin.subscribe_tasks(task_type="feed-sync") as feed:
        created = admin.create_task({"task_type": "feed-sync"})
        event = feed.next(timeout=10)
    assert event is not None and event.event == "task_created"
    task = event.task()
    assert task is not None and task.id == created.task_id
    assert admin.feed_status().total_connections >= 0


def test_a_refused_feed_raises_the_api_error(server: Server) -> None:
    with pytest.raises(ApiError) as refused:
        Client(server.url, "not-a-token").subscribe_droplets()
    assert refused.value.status == 401


def test_tokens_come_from_the_orchestrator(server: Server, admin: Client) -> None:
    issued = admin.issue_token(models.TokenBody(subject="sdk-reader", permissions=["read"]))
    assert issued.token_type.lower() == "bearer" and issued.expires_in > 0
    reader = Client(server.url, issued.access_token)
    assert reader.list_tasks(limit=1).limit == 1
    with pytest.raises(ApiError) as forbidden:
        reader.create_task({"task_type": "x"})
    assert forbidden.value.code == "forbidden"
    source = IssuedToken("sdk-writer", ["read", "write"], admin_token=server.admin)
    writer = Client(server.url, source)
    assert writer.create_task({"task_type": "by-issued-token"}).task_id > 0
    assert writer.get_task(writer.list_tasks(task_type="by-issued-token").tasks[0].id).created_by == "sdk-writer"


def test_tokens_come_from_the_registry(server: Server, registry: Any, droplet_id: int) -> None:
    source = RegistryToken(registry.url, Registration(name=f"py-{droplet_id}", droplet_id=droplet_id, port=8000))
    client = Client(server.url, source)
    created = client.create_task({"task_type": "by-registry-token"})
    assert source.service_id is not None and source.service_id >= registry.FIRST_SERVICE_ID
    assert client.get_task(created.task_id).created_by == f"py-{droplet_id}"


def test_a_refused_token_is_renewed_once(server: Server, registry: Any, droplet_id: int) -> None:
    source = RegistryToken(registry.url, Registration(name=f"py-{droplet_id}", droplet_id=droplet_id, port=8000))
    client = Client(server.url, source)
    client.list_tasks(limit=1)
    source._token = "expired-or-revoked"
    assert client.list_tasks(limit=1).limit == 1, "a 401 fetched a new token and tried again"


def test_the_async_client_has_every_method_and_works(server: Server) -> None:
    sync_methods = {n for n, m in inspect.getmembers(Client, inspect.isfunction) if not n.startswith("_")}
    for name in sync_methods - {"close"}:
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin) as client:
            created = await client.create_task(
                {"task_type": "async-sdk", "deadline": datetime.now(timezone.utc) + timedelta(hours=1)}
            )
            task = await client.get_task(created.task_id)
            assert task.deadline is not None
            with pytest.raises(ApiError):
                await client.get_task(987654321)
            async with await client.subscribe_tasks(task_type="feed-async") as feed:
                await client.create_task({"task_type": "feed-async"})
                event = await asyncio.wait_for(feed.next(), 10)
            assert event is not None and event.event == "task_created"

    asyncio.run(scenario())


def test_a_shutdown_stops_the_server(own_server: Server) -> None:
    with Client(own_server.url, own_server.admin) as admin:
        stopping = admin.shutdown()
    assert stopping.shutting_down
    assert own_server.process.wait(timeout=30) == 0


def test_droplet_figures_and_events(server: Server, admin: Client, droplet_id: int, capability: str) -> None:
    with admin.subscribe_droplets(droplet_id=droplet_id) as feed:
        register(droplet_client(server, droplet_id), droplet_id, capability)
        event = feed.next(timeout=10)
    assert event is not None and event.event == "droplet_registered"
    droplet = event.droplet()
    assert droplet is not None and droplet.droplet_id == droplet_id
    assert admin.droplet_performance(droplet_id, time_range="1h").droplet_id == droplet_id
