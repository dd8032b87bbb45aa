"""The clients: `Client` (blocking) and `AsyncClient` (asyncio), with a
method for every operation of the API (see `_operations.py`)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from ._core import DEFAULT_TIMEOUT, normalize_base_url
from ._operations import AsyncOperations, SyncOperations
from .auth import TokenSource, as_source
from .feed import AsyncSubscription, FeedFilter, Subscription, feed_url


class Client(SyncOperations):
    """A client of the orchestrator at `base_url`, such as
    ``http://localhost:8000``, calling with `token`: a bearer token string,
    or a `TokenSource` (`IssuedToken`, `RegistryToken`) that fetches and
    renews one.

    Authenticated answers come in the UDC envelope; the methods return its
    payload as a model. A refused call raises `ApiError` with the API's
    error code; a call that got no answer raises `TransportError`.
    Creations (`create_task`, `create_tasks`, `message`) are sent under an
    `Idempotency-Key` and sent again with the same key while their outcome
    is unknown, so that a retry never makes a second task."""

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._token = as_source(token)
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    @property
    def token_source(self) -> TokenSource | None:
        return self._token

    def subscribe_tasks(self, **filters: Any) -> Subscription:
        """Follows `/ws/tasks`: an event per committed change of a task.
        Filters: `task_type`, `capability`, `droplet_id`."""
        return Subscription(self._feed_url("/ws/tasks", filters), self._bearer())

    def subscribe_droplets(self, **filters: Any) -> Subscription:
        """Follows `/ws/droplets`: registrations, health changes, missed heartbeats."""
        return Subscription(self._feed_url("/ws/droplets", filters), self._bearer())

    def _feed_url(self, path: str, filters: dict[str, Any]) -> str:
        return feed_url(self.base_url, path, FeedFilter(**filters))

    def _bearer(self) -> str | None:
        return self._token.token(self._http) if self._token else None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(AsyncOperations):
    """The asyncio twin of `Client`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._token = as_source(token)
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    @property
    def token_source(self) -> TokenSource | None:
        return self._token

    async def subscribe_tasks(self, **filters: Any) -> AsyncSubscription:
        """Follows `/ws/tasks`; see `Client.subscribe_tasks`."""
        return await AsyncSubscription.open(self._feed_url("/ws/tasks", filters), await self._bearer())

    async def subscribe_droplets(self, **filters: Any) -> AsyncSubscription:
        """Follows `/ws/droplets`; see `Client.subscribe_droplets`."""
        return await AsyncSubscription.open(self._feed_url("/ws/droplets", filters), await self._bearer())

    def _feed_url(self, path: str, filters: dict[str, Any]) -> str:
        return feed_url(self.base_url, path, FeedFilter(**filters))

    async def _bearer(self) -> str | None:
        return await self._token.atoken(self._http) if self._token else None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()
