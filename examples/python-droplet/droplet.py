"""An echo droplet of the mesh, on the orchestrator's Python SDK: a FastAPI
service in the shape of the mesh's droplet-integration-guide.md.

At start it registers with the Registry and keeps the token and service id
it gets back (`RegistryToken`), registers its capability and capacity with
the orchestrator, and beats to `POST /heartbeat` with its service id. It
serves the UDC endpoints and `/message`, where the orchestrator pushes its
assignments and cancel requests; a slow pull catches any a push missed.

    uvicorn droplet:app --host 0.0.0.0 --port 8041   # be the droplet
    python droplet.py serve                          # the same, port from SERVICE_PORT
    python droplet.py submit "hello"                 # route one task through the orchestrator
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from orchestrator_sdk import AsyncClient, Client, Job, Registration, RegistryToken, Worker

REGISTRY_URL = os.environ.get("REGISTRY_URL", "http://registry:8000")
ORCHESTRATOR_URL = os.environ.get("ORCHESTRATOR_URL", "http://orchestrator:8001")
SERVICE_NAME = os.environ.get("SERVICE_NAME", "echo-py")
DROPLET_ID = int(os.environ.get("DROPLET_ID", "41"))
SERVICE_PORT = int(os.environ.get("SERVICE_PORT", "8041"))
SERVICE_HOST = os.environ.get("SERVICE_HOST", SERVICE_NAME)
LISTEN_HOST = os.environ.get("LISTEN_HOST", "0.0.0.0")
CAPABILITY = os.environ.get("CAPABILITY", "echo")
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "60"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "5"))


def log(message: str) -> None:
    print(f"{SERVICE_NAME}: {message}", flush=True)


def registry_token() -> RegistryToken:
    """Step 1 of the guide: the Registry's token, by registering with it."""
    me = Registration(name=SERVICE_NAME, droplet_id=DROPLET_ID, port=SERVICE_PORT, capabilities=[CAPABILITY])
    return RegistryToken(REGISTRY_URL, me)


token = registry_token()
worker = Worker(
    AsyncClient(ORCHESTRATOR_URL, token),
    droplet_id=DROPLET_ID,
    name=SERVICE_NAME,
    endpoint=f"http://{SERVICE_HOST}:{SERVICE_PORT}",
    delivery="push",
    poll_interval=POLL_SECONDS,
    heartbeat_interval=HEARTBEAT_SECONDS,
)


@worker.task(CAPABILITY)
def echo(job: Job) -> dict[str, Any]:
    text = job.payload.get("text", "")
    log(f'task {job.id} says "{text}"')
    return {"echo": text, "by": SERVICE_NAME}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Steps 1 and 2 of the guide: register, then beat, as the worker
    starts; on the way out the worker lets running tasks finish."""
    async with worker.lifespan(app):
        log(f"registered with the Registry as service {token.service_id}")
        yield


app = FastAPI(title=SERVICE_NAME, lifespan=lifespan)
app.include_router(worker.router)


def serve() -> None:
    import uvicorn

    log(f"droplet {DROPLET_ID} working for {ORCHESTRATOR_URL}, listening on {SERVICE_PORT}")
    uvicorn.run(app, host=LISTEN_HOST, port=SERVICE_PORT, log_level="warning")


def submit(text: str) -> int:
    """Section 5.3 of the guide: route a task through the orchestrator with
    the guide's body, then wait for its result."""
    with Client(ORCHESTRATOR_URL, registry_token()) as orchestrator:
        created = orchestrator.create_task({"task_type": CAPABILITY, "data": {"text": text}, "priority": "normal"})
        print(f"task {created.task_id} submitted", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            task = orchestrator.get_task(created.task_id)
            if task.status in ("completed", "failed", "cancelled"):
                print(f"task {task.id} {task.status}: {json.dumps(task.result)}", flush=True)
                return 0 if task.status == "completed" else 1
            time.sleep(0.2)
    print(f"task {created.task_id} not finished in 30 s", flush=True)
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["submit"] and len(sys.argv) == 3:
        sys.exit(submit(sys.argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
