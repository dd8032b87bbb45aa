"""The worker runtime against the real server: by pull, push and feed; a
restart, a graceful stop, a cancel, progress and timeouts, a report whose
answer is lost, and a workflow."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import Server, free_port
from fastapi import FastAPI

from orchestrator_sdk import (
    HANDED_BACK,
    STOPPED_ON_REQUEST,
    TIMED_OUT,
    AsyncClient,
    Job,
    Registration,
    RegistryToken,
    Worker,
    models,
)

#: The address of droplets that pull or follow the feed: nothing listens there.
NO_PUSH = "http://127.0.0.1:9"


async def eventually(what: str, probe: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


def droplet_client(server: Server, droplet_id: int, **options: Any) -> AsyncClient:
    return AsyncClient(server.url, server.token(f"worker-{droplet_id}", "read,write", droplet_id), **options)


async def finished(admin: AsyncClient, task_id: int) -> models.TaskBody:
    async def probe() -> models.TaskBody | None:
        task = await admin.get_task(task_id)
        return task if task.status in ("completed", "failed", "cancelled") else None

    return await eventually(f"task {task_id} finished", probe)


@asynccontextmanager
async def working(worker: Worker) -> AsyncIterator[Worker]:
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=5)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def worker_for(server: Server, droplet_id: int, **options: Any) -> Worker:
    """A worker for droplet `droplet_id` with its own token; it takes no
    pushes unless `options` name an endpoint."""
    options = {"name": f"py-{droplet_id}", "endpoint": NO_PUSH, **options}
    return Worker(droplet_client(server, droplet_id), droplet_id=droplet_id, **options)


def echo_worker(server: Server, droplet_id: int, capability: str, **options: Any) -> Worker:
    worker = worker_for(server, droplet_id, **options)

    @worker.task(capability)
    def echo(job: Job) -> dict[str, Any]:  # a sync handler, run in a thread
        return {"echo": job.payload["text"], "attempt": job.attempt}

    return worker


@pytest.mark.parametrize("delivery", ["pull", "feed"])
def test_a_worker_runs_its_tasks(server: Server, droplet_id: int, capability: str, delivery: str) -> None:
    async def scenario() -> None:
        # Feed delivery polls an hour apart: its work can only come by the feed.
        interval = 3600 if delivery == "feed" else None
        worker = echo_worker(server, droplet_id, capability, delivery=delivery, poll_interval=interval)
        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            if delivery == "feed":
                await eventually("the feed followed", lambda: _followed(admin))
            ids = [
                (
                    await admin.create_task(
                        {"task_type": "echo", "required_capability": capability, "payload": {"text": f"t{n}"}}
                    )
                ).task_id
                for n in range(3)
            ]
            tasks = [await finished(admin, i) for i in ids]
        assert [t.status for t in tasks] == ["completed"] * 3
        assert [t.result["echo"] for t in tasks] == ["t0", "t1", "t2"]
        assert {t.assigned_droplet_id for t in tasks} == {droplet_id}
        assert worker.report.completed == 3

    run(scenario)


async def _followed(admin: AsyncClient) -> bool:
    return sum((await admin.feed_status()).connections.values()) > 0


class Served:
    """A FastAPI app served by uvicorn in a thread of its own."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def test_a_worker_takes_pushed_work_in_a_fastapi_app(server: Server, droplet_id: int, capability: str) -> None:
    port = free_port()
    # Polls an hour apart: its work can only come by push.
    worker = echo_worker(
        server, droplet_id, capability, delivery="push", poll_interval=3600, endpoint=f"http://127.0.0.1:{port}"
    )
    app = FastAPI(lifespan=worker.lifespan)
    app.include_router(worker.router)
    served = Served(app, port)

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin) as admin:
            created = await admin.create_task(
                {"task_type": "echo", "required_capability": capability, "payload": {"text": "pushed"}}
            )
            task = await finished(admin, created.task_id)
        assert (task.status, task.result["echo"]) == ("completed", "pushed")

    with served:
        run(scenario)
        health = httpx.get(f"{served.url}/health").json()
        assert (health["id"], health["status"]) == (droplet_id, "active")
        assert httpx.get(f"{served.url}/capabilities").json()["capabilities"] == [capability]
        assert httpx.get(f"{served.url}/state").json()["metrics"]["tasks_completed"] == 1
        assert httpx.get(f"{served.url}/dependencies").json()["required_services"][0]["status"] == "connected"
        assert httpx.post(f"{served.url}/message", content=b"{").status_code == 400
        assert httpx.post(f"{served.url}/message", json={"payload": {}}).status_code == 422
        broken = {"message_type": "task_assignment", "payload": {"task": {"id": 1}}}
        assert httpx.post(f"{served.url}/message", json=broken).status_code == 422
        other = httpx.post(f"{served.url}/message", json={"message_type": "status_update", "payload": {}})
        assert other.json()["accepted"] is False


CRASHING_WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from orchestrator_sdk import AsyncClient, Worker

    droplet_id = int(os.environ["DROPLET_ID"])
    worker = Worker(AsyncClient(os.environ["ORCHESTRATOR_URL"], os.environ["TOKEN"]),
                    droplet_id=droplet_id, name="crashing", endpoint="http://127.0.0.1:9",
                    poll_interval=0.1)

    @worker.task(os.environ["CAPABILITY"])
    async def hang(job):
        print("started", job.id, flush=True)
        await asyncio.sleep(3600)

    worker.run_forever()
    """
)


def test_a_restarted_worker_gets_back_the_work_its_last_process_held(
    server: Server, droplet_id: int, capability: str
) -> None:
    env = dict(
        os.environ,
        DROPLET_ID=str(droplet_id),
        ORCHESTRATOR_URL=server.url,
        TOKEN=server.token(f"worker-{droplet_id}", "read,write", droplet_id),
        CAPABILITY=capability,
    )
    first = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER], env=env, stdout=subprocess.PIPE, text=True)

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin) as admin:
            created = await admin.create_task(
                {"task_type": "echo", "required_capability": capability, "payload": {"text": "survives"}}
            )
            assert first.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None, first.stdout.readline)
            assert line.split() == ["started", str(created.task_id)]
            first.kill()  # dies mid-run, reporting nothing
            first.wait()
            running = await admin.get_task(created.task_id)
            assert running.status == "in_progress"
            async with working(echo_worker(server, droplet_id, capability)):
                task = await finished(admin, created.task_id)
        assert (task.status, task.result["echo"]) == ("completed", "survives")
        assert task.result["attempt"] == running.attempt + 1, "run again as a new attempt"

    try:
        run(scenario)
    finally:
        first.kill()


def test_a_stopped_worker_lets_handlers_finish_then_hands_back_the_rest(
    server: Server, droplet_id: int, capability: str
) -> None:
    async def scenario() -> None:
        worker = worker_for(server, droplet_id, concurrency=2)
        release = asyncio.Event()

        @worker.task(capability)
        async def handler(job: Job) -> str:
            if job.payload.get("quick"):
                await release.wait()
                return "finished in the grace period"
            await asyncio.sleep(3600)
            return "never"

        async with AsyncClient(server.url, server.admin) as admin:
            await worker.start()
            quick = await admin.create_task(
                {"task_type": "q", "required_capability": capability, "payload": {"quick": True}, "max_retries": 0}
            )
            slow = await admin.create_task(
                {"task_type": "s", "required_capability": capability, "payload": {}, "max_retries": 0}
            )
            for task_id in (quick.task_id, slow.task_id):
                await eventually("running", lambda i=task_id: _status_is(admin, i, "in_progress"))
            stopping = asyncio.get_running_loop().create_task(worker.stop(grace=1.0))
            await asyncio.sleep(0.2)
            release.set()
            report = await stopping
            done, handed = await finished(admin, quick.task_id), await finished(admin, slow.task_id)
        assert (done.status, done.result) == ("completed", "finished in the grace period")
        assert (handed.status, handed.error_message) == ("failed", HANDED_BACK)
        assert (report.completed, report.handed_back) == (1, 1)

    run(scenario)


async def _status_is(admin: AsyncClient, task_id: int, status: str) -> bool:
    return (await admin.get_task(task_id)).status == status


def hangs_until_stopped(worker: Worker, capability: str) -> asyncio.Event:
    """Gives `worker` a handler that runs until it is stopped; the event is
    set when it is."""
    stopped = asyncio.Event()

    @worker.task(capability)
    async def handler(job: Job) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    return stopped


async def running_task(admin: AsyncClient, capability: str) -> models.TaskCreated:
    """A task for `capability`, once a worker runs it."""
    created = await admin.create_task({"task_type": "runs", "required_capability": capability})
    await eventually("running", lambda: _status_is(admin, created.task_id, "in_progress"))
    return created


@pytest.mark.parametrize("delivery", ["pull", "feed"])
def test_a_cancel_request_stops_the_handler(server: Server, droplet_id: int, capability: str, delivery: str) -> None:
    async def scenario() -> None:
        # By pull, the request is seen in the answer to the next progress report.
        worker = worker_for(
            server,
            droplet_id,
            delivery=delivery,
            progress_interval=0.2,
        )
        stopped = hangs_until_stopped(worker, capability)

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await running_task(admin, capability)
            await admin.request_cancel(created.task_id)
            task = await finished(admin, created.task_id)
            await asyncio.wait_for(stopped.wait(), 5)
        assert (task.status, task.error_message) == ("failed", STOPPED_ON_REQUEST)
        assert worker.report.stopped_on_request == 1

    run(scenario)


def test_a_sync_handler_sees_the_cancel_request(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(server, droplet_id, delivery="feed")
        noticed = threading.Event()

        @worker.task(capability)
        def handler(job: Job) -> str:
            while not job.cancel_requested:
                time.sleep(0.02)
            noticed.set()
            return "stopped early"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_task({"task_type": "c", "required_capability": capability})
            await eventually("running", lambda: _status_is(admin, created.task_id, "in_progress"))
            await admin.request_cancel(created.task_id)
            task = await finished(admin, created.task_id)
        assert noticed.is_set()
        assert (task.status, task.error_message) == ("failed", STOPPED_ON_REQUEST)

    run(scenario)


def test_progress_is_reported_and_the_tasks_timeout_honoured(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(server, droplet_id, concurrency=3)
        seen = asyncio.Event()

        @worker.task(capability)
        async def handler(job: Job) -> Any:
            kind = job.payload["kind"]
            if kind == "reports":
                await job.progress(30, "a third")
                await seen.wait()
                return "reported"
            if kind == "long-but-alive":
                for _ in range(8):  # 2.4 s of work, a timeout of 1 s: alive by its progress
                    await asyncio.sleep(0.3)
                    await job.progress(None, "still going")
                return "alive"
            await asyncio.sleep(3600)  # hangs without progress
            return "never"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):

            def task(kind: str) -> dict[str, Any]:
                return {
                    "task_type": kind,
                    "required_capability": capability,
                    "payload": {"kind": kind},
                    "timeout_seconds": 1,
                    "max_retries": 0,
                }

            reports = await admin.create_task(dict(task("reports"), timeout_seconds=60))
            alive = await admin.create_task(task("long-but-alive"))
            hangs = await admin.create_task(task("hangs"))

            async def progressed() -> models.Progress | None:
                return (await admin.get_task(reports.task_id)).progress

            progress = await eventually("the progress on the task", progressed)
            seen.set()
            results = [await finished(admin, t.task_id) for t in (reports, alive, hangs)]
        assert (progress.percent, progress.message) == (30, "a third")
        assert [(t.status, t.result) for t in results[:2]] == [("completed", "reported"), ("completed", "alive")]
        assert (results[2].status, results[2].error_message) == ("failed", TIMED_OUT)
        assert worker.report.timed_out == 1

    run(scenario)


class LosesTheFirstReport(httpx.AsyncBaseTransport):
    """Sends each request on, but loses the answer to the first `completed`
    report, as a connection cut after the server committed would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.completed_reports = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PATCH" and b'"completed"' in request.content:
            self.completed_reports += 1
            if self.completed_reports == 1:
                await response.aread()
                raise httpx.ReadError("connection reset", request=request)
        return response


def test_a_report_whose_answer_is_lost_is_sent_again(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        transport = LosesTheFirstReport()
        token = server.token(f"worker-{droplet_id}", "read,write", droplet_id)
        client = AsyncClient(server.url, token, http=httpx.AsyncClient(base_url=server.url, transport=transport))
        worker = Worker(client, droplet_id=droplet_id, name="lossy", endpoint=NO_PUSH)

        @worker.task(capability)
        def handler(job: Job) -> str:
            return "reported twice, applied once"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_task({"task_type": "r", "required_capability": capability})
            task = await finished(admin, created.task_id)
            await eventually("the report counted", lambda: _true(worker.report.completed == 1))
        assert (task.status, task.result) == ("completed", "reported twice, applied once")
        assert transport.completed_reports == 2
        assert [h.to_status for h in task.state_history].count("completed") == 1

    run(scenario)


async def _true(value: bool) -> bool:
    return value


def test_a_workflow_runs_in_dependency_order(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(server, droplet_id, delivery="feed")

        @worker.task(capability)
        def step(job: Job) -> dict[str, Any]:
            parents = job.parent_results
            return {"step": job.payload["step"], "sum": sum(p["sum"] for p in parents.values()) + job.payload["step"]}

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_workflow(
                {
                    "name": "sums",
                    "tasks": [
                        {"key": "one", "task_type": "step", "required_capability": capability, "payload": {"step": 1}},
                        {"key": "two", "task_type": "step", "required_capability": capability, "payload": {"step": 2}},
                        {
                            "key": "three",
                            "task_type": "step",
                            "required_capability": capability,
                            "payload": {"step": 3},
                            "depends_on": ["one", "two"],
                        },
                    ],
                }
            )

            async def ended() -> models.WorkflowBody | None:
                flow = await admin.get_workflow(created.workflow_id)
                return flow if flow.state != "running" else None

            flow = await eventually("the workflow ended", ended)
        assert flow.state == "completed"
        last = next(t for t in flow.tasks if t.key == "three")
        assert last.task.result == {"step": 3, "sum": 6}

    run(scenario)


def test_a_run_taken_back_by_the_orchestrator_is_stopped_here(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(
            server,
            droplet_id,
            progress_interval=0.2,
        )
        stopped = hangs_until_stopped(worker, capability)

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await running_task(admin, capability)
            # Taken back: the run is failed and retried elsewhere; this worker's
            # next progress report is refused, and it stops the handler.
            await admin.deactivate_droplet(droplet_id, requeue=True)
            await asyncio.wait_for(stopped.wait(), 10)
            task = await admin.get_task(created.task_id)
        assert task.status == "pending" and task.attempt == 1
        assert worker.report == type(worker.report)(), "nothing reported for a run no longer its own"

    run(scenario)


def test_a_stopped_sync_handler_keeps_its_slot_until_it_returns(
    server: Server, droplet_id: int, capability: str
) -> None:
    async def scenario() -> None:
        worker = worker_for(
            server,
            droplet_id,
            delivery="feed",
            concurrency=1,
        )
        release = threading.Event()

        @worker.task(capability)
        def handler(job: Job) -> str:
            if job.payload.get("blocks"):
                release.wait(30)  # never looks at job.cancel_requested
            return "done"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            first = await admin.create_task(
                {"task_type": "t", "required_capability": capability, "payload": {"blocks": True}}
            )
            await eventually("running", lambda: _status_is(admin, first.task_id, "in_progress"))
            await admin.request_cancel(first.task_id)
            stopped = await finished(admin, first.task_id)
            second = await admin.create_task({"task_type": "t", "required_capability": capability, "payload": {}})
            await eventually("assigned", lambda: _status_is(admin, second.task_id, "assigned"))
            held = worker.state()["running_tasks"]
            release.set()
            done = await finished(admin, second.task_id)
        assert (stopped.status, stopped.error_message) == ("failed", STOPPED_ON_REQUEST)
        assert held == [first.task_id], "the thread still runs: its slot is not given to the next task"
        assert (done.status, done.result) == ("completed", "done")

    run(scenario)


def test_keepalives_keep_the_handlers_progress(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(
            server,
            droplet_id,
            progress_interval=0.2,
        )
        release = asyncio.Event()

        @worker.task(capability)
        async def handler(job: Job) -> str:
            await job.progress(70, "most of it")
            await release.wait()
            return "done"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_task({"task_type": "t", "required_capability": capability})
            first = await eventually("progress", lambda: _progress(admin, created.task_id))

            async def later() -> models.Progress | None:
                now = await _progress(admin, created.task_id)
                return now if now is not None and now.at > first.at else None

            kept = await eventually("a keepalive", later)
            release.set()
            await finished(admin, created.task_id)
        assert (kept.percent, kept.message) == (70, "most of it")

    run(scenario)


async def _progress(admin: AsyncClient, task_id: int) -> models.Progress | None:
    return (await admin.get_task(task_id)).progress


def test_a_result_the_server_refuses_fails_the_task_with_why(server: Server, droplet_id: int, capability: str) -> None:
    async def scenario() -> None:
        worker = worker_for(server, droplet_id)

        @worker.task(capability)
        def handler(job: Job) -> str:
            return "x" * 2_000_000  # past MAX_BODY_BYTES

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_task({"task_type": "t", "required_capability": capability, "max_retries": 0})
            task = await finished(admin, created.task_id)
        assert task.status == "failed"
        assert task.error_message is not None and "payload_too_large" in task.error_message

    run(scenario)


def test_heartbeats_go_to_the_guides_endpoint_by_service_id(
    server: Server, registry: Any, droplet_id: int, capability: str
) -> None:
    from conftest import CALLED

    async def scenario() -> None:
        me = Registration(name=f"beats-{droplet_id}", droplet_id=droplet_id, port=9, capabilities=[capability])
        token = RegistryToken(registry.url, me)
        worker = Worker(
            AsyncClient(server.url, token),
            droplet_id=droplet_id,
            name=me.name,
            endpoint=NO_PUSH,
            heartbeat_interval=0.2,
        )
        worker.task(capability)(lambda job: None)
        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            first = (await admin.get_droplet(droplet_id)).last_heartbeat

            async def beaten_again() -> models.Droplet | None:
                droplet = await admin.get_droplet(droplet_id)
                return droplet if droplet.last_heartbeat and first and droplet.last_heartbeat > first else None

            droplet = await eventually("a later heartbeat", beaten_again)
        assert droplet.service_id == token.service_id is not None
        assert ("POST", "/heartbeat") in CALLED

    run(scenario)


def test_a_token_not_the_droplets_is_warned_of_once(
    server: Server, droplet_id: int, capability: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        # The admin token may register and report, but not keep a run alive.
        client = AsyncClient(server.url, server.admin)
        worker = Worker(client, droplet_id=droplet_id, name="admin", endpoint=NO_PUSH, progress_interval=0.1)

        @worker.task(capability)
        async def handler(job: Job) -> str:
            await asyncio.sleep(0.6)  # several keepalives
            return "done"

        async with AsyncClient(server.url, server.admin) as admin, working(worker):
            created = await admin.create_task({"task_type": "t", "required_capability": capability})
            task = await finished(admin, created.task_id)
        assert (task.status, task.result) == ("completed", "done")

    with caplog.at_level(logging.WARNING, logger="orchestrator_sdk.worker"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if "not droplet" in r.getMessage()]
    assert len(warnings) == 1, caplog.records
