"""The live feeds (`/ws/tasks`, `/ws/droplets`) over WebSockets: one
`FeedEvent` per committed change, in commit order for any one task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, ValidationError
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from ._core import api_error, payload_of
from .errors import DecodeError, OrchestratorError, TransportError
from .models import Droplet, Task

Carried = TypeVar("Carried", bound=BaseModel)

#: Close codes that end a feed as asked: a normal close (1000, or 1005 when
#: the close frame gives no code), or the server going away (shutting down).
NORMAL_CLOSE = (1000, 1001, 1005)


class FeedFilter(BaseModel):
    """Which events a feed sends: all when nothing is set."""

    model_config = ConfigDict(extra="forbid")

    task_type: str | None = None
    capability: str | None = None
    droplet_id: int | None = None


class FeedEvent(BaseModel):
    """One event: ``{"event": "task_assigned", "data": {…}, "timestamp": …}``."""

    model_config = ConfigDict(extra="ignore")

    event: str
    data: Any = None
    timestamp: datetime

    def task(self) -> Task | None:
        """The task a task event carries, else None."""
        return self._carried("task_", Task)

    def droplet(self) -> Droplet | None:
        """The droplet a droplet event carries, else None."""
        return self._carried("droplet_", Droplet)

    def _carried(self, prefix: str, model: type[Carried]) -> Carried | None:
        if not self.event.startswith(prefix) or not isinstance(self.data, dict):
            return None
        try:
            return model.model_validate(self.data)
        except ValidationError:
            return None


def feed_url(base_url: str, path: str, filters: FeedFilter) -> str:
    if base_url.startswith("https://"):
        base = "wss://" + base_url.removeprefix("https://")
    else:
        base = "ws://" + base_url.removeprefix("http://")
    query = urlencode(filters.model_dump(exclude_none=True))
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _refusal(url: str, err: Exception) -> OrchestratorError:
    """A refused upgrade carries the API's error body; anything else is transport."""
    if isinstance(err, InvalidStatus):
        response = err.response
        try:
            body = payload_of(json.loads(response.body or b"null"))
        except ValueError:
            body = None
        return api_error(response.status_code, body)
    return TransportError(url, str(err))


def _decode(url: str, text: str | bytes) -> FeedEvent:
    try:
        return FeedEvent.model_validate_json(text)
    except ValidationError as err:
        raise DecodeError(url, f"feed frame is not an event: {err}") from None


def _cut(url: str, err: ConnectionClosed) -> OrchestratorError | None:
    """None for a normal close; else why the feed was cut."""
    frame = err.rcvd
    if frame is not None and frame.code in NORMAL_CLOSE:
        return None
    if frame is None and err.sent is not None:
        return None  # closed from this side (`close`)
    reason = f"({frame.code}): {frame.reason}" if frame is not None else "without a close frame"
    return TransportError(url, f"the feed was closed {reason}")


class Subscription:
    """An open feed (blocking). Iterate it for events; it ends when the
    server closes the feed, and raises when the feed is cut."""

    def __init__(self, url: str, token: str | None, *, open_timeout: float = 10.0) -> None:
        self.url = url
        try:
            # Entered at once: the connection is kept open past this call
            # (closed by `close`), in every websockets version's terms.
            self._socket: ClientConnection = connect(
                url, additional_headers=_headers(token), open_timeout=open_timeout
            ).__enter__()
        except (WebSocketException, OSError, TimeoutError, asyncio.TimeoutError) as err:
            raise _refusal(url, err) from err

    def next(self, timeout: float | None = None) -> FeedEvent | None:
        """The next event; None once the server has closed the feed.
        Raises `TimeoutError` when none comes within `timeout` seconds."""
        try:
            return _decode(self.url, self._socket.recv(timeout=timeout))
        except ConnectionClosed as err:
            cut = _cut(self.url, err)
            if cut is None:
                return None
            raise cut from err

    def __iter__(self) -> Iterator[FeedEvent]:
        while (event := self.next()) is not None:
            yield event

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscription:
    """An open feed (asyncio); iterate it with ``async for``."""

    def __init__(self, url: str, socket: AsyncConnection) -> None:
        self.url = url
        self._socket = socket

    @classmethod
    async def open(cls, url: str, token: str | None, *, open_timeout: float = 10.0) -> AsyncSubscription:
        try:
            socket = await async_connect(url, additional_headers=_headers(token), open_timeout=open_timeout)
        except (WebSocketException, OSError, TimeoutError, asyncio.TimeoutError) as err:
            raise _refusal(url, err) from err
        return cls(url, socket)

    async def next(self) -> FeedEvent | None:
        """The next event; None once the server has closed the feed."""
        try:
            return _decode(self.url, await self._socket.recv())
        except ConnectionClosed as err:
            cut = _cut(self.url, err)
            if cut is None:
                return None
            raise cut from err

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> FeedEvent:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        await self._socket.close()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
