"""The worker runtime: a droplet in a dozen lines.

    from orchestrator_sdk import AsyncClient, Worker

    worker = Worker(AsyncClient("http://orchestrator:8001", token),
                    droplet_id=21, name="echo", endpoint="http://echo:8021")

    @worker.task("echo")
    def echo(job):
        return {"echo": job.payload["text"]}

    worker.run_forever()          # or mount worker.router in a FastAPI app

It registers the droplet with the capabilities it has handlers for, sends
heartbeats to `POST /heartbeat` (by the Registry's `service_id` when its
token comes from the Registry), learns of its assignments by pull, by push
(`POST /message`, served by `worker.router`) or by the `/ws/tasks` feed
(the latter two with a slow pull to catch what a lost message missed), and
runs each handler with a concurrency limit: it reports `in_progress`, then
`completed` with the handler's value or `failed` with its exception. A
report whose outcome is unknown is sent again (the orchestrator applies a
report once, by its `attempt`).

While a handler runs, the worker tells the orchestrator the run is alive
(a progress report every `progress_interval`, or three per
`timeout_seconds` when that is shorter); a handler may report its own
progress with `job.progress(percent, message)`. A task's `timeout_seconds`
is honoured here too: a handler that goes that long without reporting
progress is stopped and the task failed, to be retried by its budget. A
cancel request (pushed, on the feed, or seen in the answer to a progress
report) stops the handler and fails the task, never retried. On stop the
worker takes no more work, lets running handlers finish within the grace
period, and fails the rest as handed back, so that the orchestrator
retries them elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from .auth import RegistryToken
from .client import AsyncClient
from .errors import ApiError, OrchestratorError
from .models import Task, TaskBody

#: The error message of a task handed back at stop.
HANDED_BACK = "the worker shut down before finishing; handed back to be retried"
#: The error message of a task stopped because its creator or an admin asked.
STOPPED_ON_REQUEST = "stopped: a cancel was requested while it ran"
#: The error message of a task whose handler went past its timeout.
TIMED_OUT = "the run timed out: the handler reported no progress within the task's timeout_seconds"
#: Why a handler is stopped when the orchestrator took its task back (the
#: run timed out there, or the droplet was deactivated): nothing is reported.
TAKEN_BACK = "taken back by the orchestrator"

#: Times a report is sent while its outcome is unknown (about 20 s in all).
REPORT_TRIES = 8
#: How long to wait before following the feed again after it was cut.
FEED_RETRY_SECONDS = 1.0

Delivery = Literal["pull", "push", "feed"]
Handler = Callable[["Job"], Any | Awaitable[Any]]


#: The worker's log: failures it works around (a heartbeat, a pull, a
#: report that could not be sent) as warnings. Without a logging set-up,
#: Python prints warnings to stderr.
logger = logging.getLogger("orchestrator_sdk.worker")


@dataclass
class WorkerReport:
    """How a run of the worker went."""

    completed: int = 0
    failed: int = 0
    handed_back: int = 0
    stopped_on_request: int = 0
    timed_out: int = 0


class Job:
    """One run of a task, as its handler sees it."""

    def __init__(self, task: TaskBody, worker: Worker) -> None:
        self.task = task
        self._worker = worker
        self._loop = asyncio.get_running_loop()
        self.last_progress = time.monotonic()
        self.percent: int | None = None
        self.message: str | None = None
        self._stop_reason: str | None = None
        self._stopped = asyncio.Event()

    @property
    def id(self) -> int:
        return self.task.id

    @property
    def attempt(self) -> int:
        return self.task.attempt or 0

    @property
    def payload(self) -> Any:
        return self.task.payload

    @property
    def parent_results(self) -> dict[str, Any]:
        """In a workflow, the results of the tasks this one depends on, by
        task id (the payload's `parent_results`); empty otherwise."""
        payload = self.task.payload
        parents = payload.get("parent_results") if isinstance(payload, dict) else None
        return parents if isinstance(parents, dict) else {}

    @property
    def cancel_requested(self) -> bool:
        """True once the worker was asked to stop this run (a cancel
        request, its timeout, or the worker's stop). A sync handler, which
        cannot be interrupted, checks it to end early."""
        return self._stop_reason is not None

    async def progress(self, percent: int | None = None, message: str | None = None) -> None:
        """Reports how far the run is (0-100, and what it does); restarts
        the clock of the task's timeout. From an async handler."""
        self.last_progress = time.monotonic()
        self.percent, self.message = percent, message
        await self._worker._report_progress(self)

    def report_progress(self, percent: int | None = None, message: str | None = None) -> None:
        """`progress` for a sync handler (which runs in a thread of its own)."""
        if _loop_running_here(self._loop):
            raise RuntimeError("report_progress waits for the report: in an async handler, await job.progress()")
        future = asyncio.run_coroutine_threadsafe(self.progress(percent, message), self._loop)
        future.result()

    def stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stopped.set()


@dataclass
class _Outcome:
    status: Literal["completed", "failed"]
    result: Any = None
    error: str | None = None
    reason: str | None = None  # why the worker stopped the run, if it did


class Worker:
    """A droplet: handlers for capabilities, and the loops that feed them.

    `client` must call with the droplet's token: one `orchestrator token
    --droplet-id N` made, or a `RegistryToken` (then heartbeats name the
    Registry's `service_id`). `endpoint` is the droplet's address, where
    the orchestrator pushes (`{endpoint}/message`): with `delivery="push"`
    it must reach the app that mounts `worker.router`; a droplet that
    pulls or follows the feed may name one that takes no pushes."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        droplet_id: int,
        name: str,
        endpoint: str,
        delivery: Delivery = "pull",
        concurrency: int = 4,
        poll_interval: float | None = None,
        shutdown_grace: float = 30.0,
        progress_interval: float = 30.0,
        heartbeat_interval: float | None = None,
        steward: str | None = None,
        version: str = "1.0.0",
    ) -> None:
        if delivery not in ("pull", "push", "feed"):
            raise ValueError(f"delivery must be pull, push or feed, not {delivery!r}")
        if not isinstance(client, AsyncClient):
            raise TypeError(f"a Worker calls with an AsyncClient, not a {type(client).__name__}")
        self.client = client
        self.droplet_id = droplet_id
        self.name = name
        self.endpoint = endpoint
        self.delivery = delivery
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval if poll_interval is not None else (0.25 if delivery == "pull" else 5.0)
        self.shutdown_grace = shutdown_grace
        self.progress_interval = max(0.1, progress_interval)
        self.heartbeat_interval = heartbeat_interval
        self.steward = steward
        self.version = version
        self.report = WorkerReport()
        self.handlers: dict[str, Handler] = {}
        self._in_hand: set[int] = set()
        self._jobs: dict[int, Job] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._missed = False
        self._cancel_asked: set[int] = set()
        self._token_warned = False
        self._taking = False
        self._started_at = time.time()
        self._reachable = False

    # -- declaring handlers -------------------------------------------------

    def task(self, capability: str) -> Callable[[Handler], Handler]:
        """Registers the decorated function (sync or async) as the handler of
        tasks that require `capability`. It gets a `Job`; what it returns
        (JSON, or a pydantic model) is the task's result; what it raises
        fails the task with its message."""

        def register(handler: Handler) -> Handler:
            self.handlers[capability] = handler
            return handler

        return register

    # -- running ------------------------------------------------------------

    async def start(self) -> None:
        """Registers the droplet and starts its loops; returns at once."""
        if not self.handlers:
            raise ValueError("the worker has no handler: add one with @worker.task(capability)")
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        registered = await self.client.register_droplet(
            {
                "droplet_id": self.droplet_id,
                "name": self.name,
                "endpoint": self.endpoint,
                "steward": self.steward,
                "capabilities": sorted(self.handlers),
                "max_concurrent_tasks": self.concurrency,
            }
        )
        self._reachable = True
        beat_every = self.heartbeat_interval or float(min(max(registered.heartbeat_interval_seconds, 1), 30))
        self._taking = True
        self._spawn_loop(self._heartbeats(beat_every))
        self._spawn_loop(self._pulls())
        if self.delivery == "feed":
            self._spawn_loop(self._follow_feed())

    async def stop(self, grace: float | None = None) -> WorkerReport:
        """Takes no more work, lets running handlers finish within `grace`
        (default `shutdown_grace`), hands back the rest, stops the loops."""
        self._taking = False
        if self._stopping is not None:
            self._stopping.set()
        grace = self.shutdown_grace if grace is None else grace
        if self._runs:
            _, pending = await asyncio.wait(set(self._runs), timeout=grace)
            if pending:
                for job in list(self._jobs.values()):
                    job.stop(HANDED_BACK)
                await asyncio.wait(pending)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        return self.report

    async def run(self, stop: asyncio.Event | None = None) -> WorkerReport:
        """Starts, works until `stop` is set (or SIGINT/SIGTERM), then stops."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        with _stop_on_signals(loop, stop):
            await self.start()
            await stop.wait()
        return await self.stop()

    def run_forever(self) -> WorkerReport:
        """`run` from blocking code: until SIGINT or SIGTERM."""
        return asyncio.run(self.run())

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The worker's life inside a FastAPI app's:
        ``FastAPI(lifespan=worker.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    @property
    def router(self) -> Any:
        """A FastAPI router serving `POST /message` (pushed assignments and
        cancel requests) and the UDC endpoints `/health`, `/capabilities`,
        `/state` and `/dependencies`: ``app.include_router(worker.router)``."""
        from .push import router_for

        return router_for(self)

    # -- what arrives -------------------------------------------------------

    def receive(self, envelope: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Takes a message pushed to `/message`: starts an assigned task or
        stops a task whose cancel was requested. Returns the HTTP status and
        body to answer. A pushed task is only a notice: the task run is the
        one the orchestrator returns when the worker starts it."""
        kind = envelope.get("message_type")
        if not isinstance(kind, str):
            return 422, _error("validation_failed", "the envelope has no message_type")
        if kind not in ("task_assignment", "task_cancel_requested"):
            return 200, {"received": True, "accepted": False, "message_type": kind}
        payload = envelope.get("payload")
        task = payload.get("task") if isinstance(payload, dict) else None
        try:
            notice = Task.model_validate(task)
        except ValidationError as err:
            return 422, _error("validation_failed", f"the payload is not a pushed task: {err}")
        if kind == "task_assignment":
            accepted = self._start(notice)
        else:
            accepted = self._stop_on_request(notice.id)
        return 202, {"received": True, "accepted": accepted, "task_id": notice.id}

    def _start(self, task: Task) -> bool:
        """Runs `task` when the worker takes work, has it not in hand, and a
        slot is free; else the next pull finds it."""
        if not self._taking or task.id in self._in_hand or task.status != "assigned":
            return False
        if len(self._runs) >= self.concurrency:
            self._missed = True
            return False
        self._in_hand.add(task.id)
        run = asyncio.get_running_loop().create_task(self._work(task))
        self._runs.add(run)
        run.add_done_callback(self._finished)
        return True

    def _finished(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        if self._missed and self._wake is not None:
            self._missed = False
            self._wake.set()

    def _stop_on_request(self, task_id: int) -> bool:
        job = self._jobs.get(task_id)
        if job is not None:
            job.stop(STOPPED_ON_REQUEST)
            return True
        if task_id in self._in_hand:  # still starting: stopped once it has
            self._cancel_asked.add(task_id)
            return True
        return False

    # -- one run ------------------------------------------------------------

    async def _work(self, notice: Task) -> None:
        try:
            await self._run(notice)
        except Exception as err:  # logged, never lost in a forgotten task
            logger.warning(f"task {notice.id}: the worker failed: {type(err).__name__}: {err}")
        finally:
            self._jobs.pop(notice.id, None)
            self._in_hand.discard(notice.id)
            self._cancel_asked.discard(notice.id)

    async def _run(self, notice: Task) -> None:
        try:
            task = await self._report_status(notice.id, {"status": "in_progress", "attempt": notice.attempt})
        except OrchestratorError as err:
            # A notice that arrives after the task moved on is refused with 409: expected.
            if not (isinstance(err, ApiError) and err.status == 409):
                logger.warning(f"could not start task {notice.id}: {err}")
            return
        job = Job(task, self)
        self._jobs[task.id] = job
        if task.id in self._cancel_asked or task.cancel_requested_at is not None:
            job.stop(STOPPED_ON_REQUEST)
        if not self._taking:
            job.stop(HANDED_BACK)  # the worker began stopping while it started
        handler = self._handler_for(task)
        if handler is None:
            capability = task.required_capability or task.task_type
            outcome = _Outcome("failed", error=f"this worker has no handler for {capability!r}")
            await self._report_outcome(job, outcome)
            return
        running = self._spawn_handler(handler, job)
        keepalive = asyncio.get_running_loop().create_task(self._keep_alive(job))
        try:
            outcome = await self._outcome_of(running, job)
        finally:
            keepalive.cancel()
        await self._report_outcome(job, outcome)
        await self._until_ended(running)

    def _handler_for(self, task: Task) -> Handler | None:
        """The handler of the task's required capability, else of its type;
        a task that requires nothing may go to any droplet, so a worker of
        one handler runs it with that one."""
        for name in (task.required_capability, task.task_type):
            if name is not None and name in self.handlers:
                return self.handlers[name]
        if task.required_capability is None and len(self.handlers) == 1:
            return next(iter(self.handlers.values()))
        return None

    def _spawn_handler(self, handler: Handler, job: Job) -> asyncio.Future[Any]:
        """Runs an async handler on the loop, a sync one in a daemon thread
        of its own (a thread cannot be stopped, and must not keep the
        process alive at exit)."""
        loop = asyncio.get_running_loop()
        if _is_async(handler):
            return loop.create_task(handler(job))  # type: ignore[arg-type]
        future: asyncio.Future[Any] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        def in_thread() -> None:
            try:
                value, error = handler(job), None
            except BaseException as err:  # handed to the loop, raised there
                value, error = None, err
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(settle, value, error)

        threading.Thread(target=in_thread, name=f"orchestrator-task-{job.id}", daemon=True).start()
        return future

    async def _until_ended(self, running: asyncio.Future[Any]) -> None:
        """Holds the run's slot until its handler has really ended (a thread
        runs on after a stop until it returns), unless the worker stops."""
        if running.done() or self._stopping is None:
            return
        stopping = asyncio.get_running_loop().create_task(self._stopping.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def _outcome_of(self, running: asyncio.Future[Any], job: Job) -> _Outcome:
        stopped = asyncio.get_running_loop().create_task(job._stopped.wait())
        try:
            await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not running.done():
            if isinstance(running, asyncio.Task):
                running.cancel()  # an async handler gets CancelledError; a thread sees job.cancel_requested
            reason = job._stop_reason or HANDED_BACK
            return _Outcome("failed", error=reason, reason=reason)
        # A handler that finished is reported as it ended, even when a stop
        # was asked meanwhile: its work is done.
        try:
            value = running.result()
            if inspect.isawaitable(value):  # an async handler that did not look like one
                value = await value
        except asyncio.CancelledError:
            reason = job._stop_reason or HANDED_BACK
            return _Outcome("failed", error=reason, reason=reason)
        except Exception as err:  # the handler's failure is the task's
            return _Outcome("failed", error=f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        try:
            return _Outcome("completed", result=_json_value(value))
        except (TypeError, ValueError) as err:
            return _Outcome("failed", error=f"the handler's result is not JSON: {err}")

    async def _report_outcome(self, job: Job, outcome: _Outcome) -> None:
        if outcome.reason == TAKEN_BACK:
            return  # no longer ours to report
        body: dict[str, Any] = {"status": outcome.status, "attempt": job.attempt}
        if outcome.status == "completed":
            body["result"] = outcome.result
        else:
            body["error_message"] = outcome.error
        try:
            await self._report_status(job.id, body)
        except ApiError as err:
            # 409: the task moved on meanwhile (taken back, or cancelled).
            if err.status != 409 and outcome.status == "completed":
                # The result itself was refused (too large, say): the run fails
                # with why, rather than staying in progress until it times out.
                refused = _Outcome("failed", error=f"the result was refused: {err}")
                await self._report_outcome(job, refused)
            elif err.status != 409:
                logger.warning(f"could not report task {job.id}: {err}")
            return
        except Exception as err:  # no answer, even after the retries
            logger.warning(f"could not report task {job.id}: {err}")
            return
        self._count(outcome)

    def _count(self, outcome: _Outcome) -> None:
        if outcome.status == "completed":
            self.report.completed += 1
        elif outcome.reason == STOPPED_ON_REQUEST:
            self.report.stopped_on_request += 1
        elif outcome.reason == HANDED_BACK:
            self.report.handed_back += 1
        elif outcome.reason == TIMED_OUT:
            self.report.timed_out += 1
        else:
            self.report.failed += 1

    async def _report_status(self, task_id: int, body: dict[str, Any]) -> TaskBody:
        """Sends a report, again while its outcome is unknown (no answer, or
        a 5xx): the orchestrator answers a repeated report with the task as
        it is, and never applies it twice."""
        wait = 0.1
        for attempt in range(1, REPORT_TRIES + 1):
            try:
                return await self.client.update_status(task_id, body)
            except OrchestratorError as err:
                if not err.outcome_unknown or attempt == REPORT_TRIES:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)
        raise AssertionError("unreachable")

    async def _report_progress(self, job: Job) -> None:
        """Reports the job's latest progress (the handler's own, resent by
        the keepalive so as not to erase it)."""
        body = {"attempt": job.attempt, "progress": job.percent, "message": job.message}
        try:
            task = await self.client.report_progress(job.id, body)
        except ApiError as err:
            if err.status in (403, 409) and not await self._still_ours(job):
                # The task moved on: its run timed out or was taken back (or it
                # just finished). The handler's work is no longer wanted here.
                job.stop(TAKEN_BACK)
            elif err.status == 403:
                self._warn_token_once(err)
            elif err.status != 409:
                logger.warning(f"progress report of task {job.id} failed: {err}")
            return
        except Exception as err:  # the keepalive must outlive any one failure
            logger.warning(f"progress report of task {job.id} failed: {err}")
            return
        if task.cancel_requested_at is not None:
            job.stop(STOPPED_ON_REQUEST)

    def _warn_token_once(self, err: ApiError) -> None:
        """The task is this droplet's, yet its report is refused: the token
        is not the droplet's. Said once, not on every keepalive."""
        if not self._token_warned:
            self._token_warned = True
            logger.warning(
                f"progress reports are refused ({err}): the worker's token is not droplet "
                f"{self.droplet_id}'s; runs are not kept alive, and cancel requests are seen only "
                "by push or feed. Use a token made for the droplet (orchestrator token --droplet-id)"
            )

    async def _still_ours(self, job: Job) -> bool:
        """Whether this droplet still runs the job's attempt of its task (a
        refused report may also mean a token that is not the droplet's)."""
        try:
            task = await self.client.get_task(job.id)
        except Exception:  # unknown: keep running rather than drop work
            return True
        return (
            task.status == "in_progress" and task.assigned_droplet_id == self.droplet_id and task.attempt == job.attempt
        )

    async def _keep_alive(self, job: Job) -> None:
        """Tells the orchestrator the run is alive, and stops the handler
        when the task's own timeout passes without its progress."""
        timeout = job.task.timeout_seconds or 0
        every = min(self.progress_interval, timeout / 3) if timeout > 0 else self.progress_interval
        every = max(every, 0.1)
        while True:
            await asyncio.sleep(every)
            if timeout > 0 and time.monotonic() - job.last_progress > timeout:
                job.stop(TIMED_OUT)
                return
            await self._report_progress(job)

    # -- the loops ----------------------------------------------------------

    def _spawn_loop(self, loop: Awaitable[None]) -> None:
        self._loops.append(asyncio.get_running_loop().create_task(loop))  # type: ignore[arg-type]

    async def _pulls(self) -> None:
        """Asks for assigned tasks every poll interval, and at once when a
        slot frees after one was turned away."""
        assert self._wake is not None
        while True:
            await self._pull()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            self._wake.clear()

    async def _pull(self) -> None:
        free = self.concurrency - len(self._runs)
        if free <= 0 or not self._taking:
            return
        try:
            page = await self.client.list_tasks(
                assigned_droplet_id=self.droplet_id, status="assigned", limit=min(free, 500)
            )
        except Exception as err:  # the loop must outlive any one failure
            logger.warning(f"pulling tasks failed: {err}")
            return
        for task in page.tasks:
            self._start(task)

    async def _follow_feed(self) -> None:
        """Starts this droplet's assignments and stops its cancelled tasks as
        `/ws/tasks` tells of them, following it again whenever it is cut."""
        cut = False
        while True:
            try:
                async with await self.client.subscribe_tasks(droplet_id=self.droplet_id) as feed:
                    if cut:
                        logger.info("following /ws/tasks again")
                        cut = False
                    async for event in feed:
                        self._on_event(event.event, event.task())
            except Exception as err:  # the loop must outlive any one failure
                if not cut:
                    logger.warning(f"following /ws/tasks failed, retrying every second: {err}")
                cut = True
            await asyncio.sleep(FEED_RETRY_SECONDS)

    def _on_event(self, event: str, task: Task | None) -> None:
        if task is None or task.assigned_droplet_id != self.droplet_id:
            return
        if event == "task_assigned" and task.status == "assigned":
            self._start(task)
        elif event == "task_cancel_requested":
            self._stop_on_request(task.id)

    async def _heartbeats(self, every: float) -> None:
        while True:
            try:
                await self.client.service_heartbeat(self._heartbeat())
                self._reachable = True
            except Exception as err:  # the loop must outlive any one failure
                self._reachable = False
                logger.warning(f"heartbeat of droplet {self.droplet_id} failed: {err}")
            await asyncio.sleep(every)

    def _heartbeat(self) -> dict[str, Any]:
        """The guide's heartbeat: `{"service_id", "status", "metrics"}`, or by
        droplet id when the token is not the Registry's."""
        source = self.client.token_source
        beat: dict[str, Any] = {"status": "active", "metrics": self.metrics()}
        if isinstance(source, RegistryToken) and source.service_id is not None:
            beat["service_id"] = source.service_id
        else:
            beat["droplet_id"] = self.droplet_id
        return beat

    def metrics(self) -> dict[str, Any]:
        """What the worker has done, as its heartbeats and `/state` tell it."""
        return {
            "tasks_running": len(self._runs),
            "tasks_completed": self.report.completed,
            "tasks_failed": self.report.failed + self.report.timed_out,
            "uptime_seconds": int(time.time() - self._started_at),
        }

    # -- the UDC endpoints' answers -----------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "id": self.droplet_id,
            "name": self.name,
            "status": "active" if self._taking else "inactive",
            "endpoint": self.endpoint,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "message": "taking assignments" if self._taking else "not taking work",
        }

    def capabilities(self) -> dict[str, Any]:
        return {
            "service_name": self.name,
            "droplet_id": self.droplet_id,
            "capabilities": sorted(self.handlers),
            "supported_operations": ["task_assignment", "task_cancel_requested"],
            "integration_endpoints": [
                {"path": "/message", "method": "POST", "description": "Assignments and cancel requests"}
            ],
            "version": self.version,
        }

    def state(self) -> dict[str, Any]:
        return {
            "status": "active" if self._taking else "inactive",
            "delivery": self.delivery,
            "concurrency": self.concurrency,
            "running_tasks": sorted(self._in_hand),
            "metrics": self.metrics(),
        }

    def dependencies(self) -> dict[str, Any]:
        orchestrator = {
            "name": "orchestrator",
            "type": "service",
            "status": "connected" if self._reachable else "disconnected",
            "host": self.client.base_url,
        }
        return {"required_services": [orchestrator], "optional_services": [], "external_apis": []}


def _loop_running_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _json_value(value: Any) -> Any:
    """A handler's value as JSON: a model as its fields, anything else as
    strict JSON writes it (which refuses what it cannot, NaN included)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    json.dumps(value, allow_nan=False)
    return value


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Any:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or a platform without signals
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
