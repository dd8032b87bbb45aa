"""Where a client's bearer token comes from: a fixed string, the
orchestrator's own `POST /token`, or the mesh's Registry.

A source is asked for its token before each call; after a 401 the client
tells it the token was refused (`refused`) and asks once more, so that a
source that can get a new token (the Registry, `/token`) renews it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._core import api_error, payload_of
from .errors import DecodeError, RegistryError, TransportError

#: A token is renewed this long before it expires (or halfway through its
#: life, when that is shorter).
RENEW_MARGIN_SECONDS = 60.0


class TokenSource:
    """Gives the bearer token of each call. Subclasses implement `_fetch`
    (sync) and `_afetch` (async); the token is kept until refused or
    close to its expiry."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._renew_at: float | None = None
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._async_lock_loop: asyncio.AbstractEventLoop | None = None

    def token(self, orchestrator: httpx.Client) -> str:
        with self._lock:
            if not self._fresh():
                self._keep(*self._fetch(orchestrator))
            assert self._token is not None
            return self._token

    async def atoken(self, orchestrator: httpx.AsyncClient) -> str:
        # One fetch at a time: calls that start together share it.
        async with self._lock_of_this_loop():
            if not self._fresh():
                self._keep(*await self._afetch(orchestrator))
            assert self._token is not None
            return self._token

    def _lock_of_this_loop(self) -> asyncio.Lock:
        """An asyncio lock belongs to one event loop; a source may outlive one."""
        loop = asyncio.get_running_loop()
        if self._async_lock is None or self._async_lock_loop is not loop:
            self._async_lock, self._async_lock_loop = asyncio.Lock(), loop
        return self._async_lock

    def refused(self, token: str | None) -> bool:
        """Forgets `token`, which the orchestrator refused, unless another
        call has already replaced it; True when a new one can be fetched
        (worth trying the call again)."""
        if self._token == token:
            self._token = None
        return True

    def _keep(self, token: str, lifetime: float | None) -> None:
        self._token = token
        if lifetime is None:
            self._renew_at = None
        else:
            self._renew_at = time.time() + lifetime - min(RENEW_MARGIN_SECONDS, lifetime / 2)

    def _fresh(self) -> bool:
        if self._token is None:
            return False
        return self._renew_at is None or time.time() < self._renew_at

    def _fetch(self, orchestrator: httpx.Client) -> tuple[str, float | None]:
        raise NotImplementedError

    async def _afetch(self, orchestrator: httpx.AsyncClient) -> tuple[str, float | None]:
        raise NotImplementedError


class StaticToken(TokenSource):
    """A token given as it is, such as one made by `orchestrator token`."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def refused(self, token: str | None) -> bool:
        return False

    def _fresh(self) -> bool:
        return True


class IssuedToken(TokenSource):
    """A token the orchestrator signs (`POST /token`) for `subject` with
    `permissions`, asked with `admin_token` (a server in `development`
    signs for anyone). Renewed before it expires."""

    def __init__(
        self,
        subject: str,
        permissions: Sequence[str] = ("read", "write"),
        *,
        droplet_id: int | None = None,
        steward: str | None = None,
        admin_token: str | None = None,
    ) -> None:
        super().__init__()
        self.body: dict[str, Any] = {"subject": subject, "permissions": list(permissions)}
        if droplet_id is not None:
            self.body["droplet_id"] = droplet_id
        if steward is not None:
            self.body["steward"] = steward
        self.admin_token = admin_token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def _fetch(self, orchestrator: httpx.Client) -> tuple[str, float | None]:
        try:
            response = orchestrator.post("/token", json=self.body, headers=self._headers())
        except httpx.HTTPError as err:
            raise TransportError(f"{orchestrator.base_url}/token", str(err)) from err
        return _issued(response)

    async def _afetch(self, orchestrator: httpx.AsyncClient) -> tuple[str, float | None]:
        try:
            response = await orchestrator.post("/token", json=self.body, headers=self._headers())
        except httpx.HTTPError as err:
            raise TransportError(f"{orchestrator.base_url}/token", str(err)) from err
        return _issued(response)


def _issued(response: httpx.Response) -> tuple[str, float | None]:
    """The token `POST /token` answered, and its lifetime in seconds."""
    try:
        body = payload_of(response.json() if response.content else None)
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise api_error(response.status_code, body)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise DecodeError(str(response.request.url), f"the answer has no access_token: {response.text[:200]}")
    lifetime = body.get("expires_in")
    return token, float(lifetime) if isinstance(lifetime, (int, float)) else None


@dataclass
class Registration:
    """What a droplet tells the Registry of itself (the mesh's integration
    guide, step 1)."""

    name: str
    droplet_id: int
    port: int
    capabilities: list[str] = field(default_factory=list)
    version: str = "1.0.0"
    health_endpoint: str = "/health"
    udc_compliant: bool = True

    def body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "droplet_id": self.droplet_id,
            "port": self.port,
            "health_endpoint": self.health_endpoint,
            "capabilities": self.capabilities,
            "version": self.version,
            "udc_compliant": self.udc_compliant,
        }


class RegistryToken(TokenSource):
    """The token the mesh's Registry gives a service that registers with
    it (`POST {registry_url}/register`); registers again when the
    orchestrator refuses it. `service_id` is the Registry's id of the
    service, the one its heartbeats name."""

    def __init__(self, registry_url: str, registration: Registration, *, timeout: float = 10.0) -> None:
        super().__init__()
        self.registry_url = registry_url.rstrip("/")
        self.registration = registration
        self.timeout = timeout
        self.service_id: int | None = None

    def _fetch(self, orchestrator: httpx.Client) -> tuple[str, float | None]:
        try:
            with httpx.Client(timeout=self.timeout) as http:
                response = http.post(f"{self.registry_url}/register", json=self.registration.body())
        except httpx.HTTPError as err:
            raise RegistryError(f"could not reach the Registry at {self.registry_url}: {err}") from err
        return self._registered(response)

    async def _afetch(self, orchestrator: httpx.AsyncClient) -> tuple[str, float | None]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(f"{self.registry_url}/register", json=self.registration.body())
        except httpx.HTTPError as err:
            raise RegistryError(f"could not reach the Registry at {self.registry_url}: {err}") from err
        return self._registered(response)

    def _registered(self, response: httpx.Response) -> tuple[str, float | None]:
        if response.status_code not in (200, 201):
            raise RegistryError(f"the Registry refused the registration: {response.status_code} {response.text}")
        try:
            data = response.json()
            token, service_id = data["token"], data["service_id"]
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryError(f"the Registry's answer has no token and service_id: {response.text}") from err
        self.service_id = int(service_id)
        return str(token), None


def as_source(token: str | TokenSource | None) -> TokenSource | None:
    if token is None or isinstance(token, TokenSource):
        return token
    return StaticToken(token)
