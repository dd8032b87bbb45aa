"""Push delivery in a FastAPI app: the orchestrator `POST`s each assignment
and cancel request to `{endpoint}/message`; the router also serves the UDC
endpoints every droplet of the mesh has. Needs FastAPI
(``pip install "orchestrator-sdk[fastapi]"``)."""

import json
from typing import TYPE_CHECKING, Any

try:
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError('worker.router needs FastAPI: pip install "orchestrator-sdk[fastapi]"') from err

if TYPE_CHECKING:
    from .worker import Worker

#: The largest message accepted; an assignment is a few kilobytes.
MAX_MESSAGE_BYTES = 1024 * 1024


def router_for(worker: "Worker") -> APIRouter:
    # No `from __future__ import annotations` here: FastAPI reads the
    # handlers' annotations at run time to know `request` is the request.
    router = APIRouter(tags=["droplet"])

    @router.post("/message")
    async def message(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_MESSAGE_BYTES:
            return JSONResponse(_error("payload_too_large", "a message is at most 1 MiB"), status_code=413)
        try:
            envelope = json.loads(body)
        except ValueError as err:
            return JSONResponse(_error("invalid_json", f"the body is not JSON: {err}"), status_code=400)
        if not isinstance(envelope, dict):
            return JSONResponse(_error("validation_failed", "the body is not an envelope"), status_code=422)
        status, answer = worker.receive(envelope)
        return JSONResponse(answer, status_code=status)

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return worker.health()

    @router.get("/capabilities")
    async def capabilities() -> dict[str, Any]:
        return worker.capabilities()

    @router.get("/state")
    async def state() -> dict[str, Any]:
        return worker.state()

    @router.get("/dependencies")
    async def dependencies() -> dict[str, Any]:
        return worker.dependencies()

    return router


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
