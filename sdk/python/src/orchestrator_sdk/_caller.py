"""How a call is sent: the sync and async halves of the same steps (ask the
token source, send, read the answer; once more after a 401 with a renewed
token; again with the same Idempotency-Key while the outcome is unknown).
What to do after a failure is decided once, in `_Attempts`."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, TypeVar

import httpx

from ._core import Call, build_request, read_answer, retry_wait, should_retry
from .auth import TokenSource
from .errors import ApiError, OrchestratorError, TransportError

T = TypeVar("T")


class _Attempts:
    """The tries of one call, and what follows a failed one."""

    def __init__(self, call: Call[Any], source: TokenSource | None) -> None:
        self.call = call
        self.source = source
        self.tries = 0
        self.renewed = False

    def after(self, error: OrchestratorError, token: str | None) -> Literal["again", "wait", "raise"]:
        """`again` at once with a renewed token (after a first 401), `wait`
        then send again (an outcome unknown, for a call that may be
        repeated), else `raise`."""
        if isinstance(error, ApiError) and error.status == 401 and not self.renewed and self._renewable(token):
            self.renewed = True
            return "again"
        return "wait" if should_retry(self.call, error, self.tries) else "raise"

    def _renewable(self, token: str | None) -> bool:
        return self.call.authenticated and self.source is not None and self.source.refused(token)


class _SyncCaller:
    _http: httpx.Client
    _token: TokenSource | None

    def _call(self, call: Call[T]) -> T:
        attempts = _Attempts(call, self._token)
        while True:
            attempts.tries += 1
            token: str | None = None
            try:
                token = self._token.token(self._http) if call.authenticated and self._token else None
                return self._send(call, token)
            except OrchestratorError as err:
                step = attempts.after(err, token)
                if step == "raise":
                    raise
                if step == "wait":
                    time.sleep(retry_wait(attempts.tries))

    def _send(self, call: Call[T], token: str | None) -> T:
        try:
            response = self._http.request(**build_request(call, token))
        except httpx.HTTPError as err:
            raise TransportError(_url(self._http, call), str(err) or type(err).__name__) from err
        return read_answer(call, response)


class _AsyncCaller:
    _http: httpx.AsyncClient
    _token: TokenSource | None

    async def _call(self, call: Call[T]) -> T:
        attempts = _Attempts(call, self._token)
        while True:
            attempts.tries += 1
            token: str | None = None
            try:
                token = await self._token.atoken(self._http) if call.authenticated and self._token else None
                return await self._send(call, token)
            except OrchestratorError as err:
                step = attempts.after(err, token)
                if step == "raise":
                    raise
                if step == "wait":
                    await asyncio.sleep(retry_wait(attempts.tries))

    async def _send(self, call: Call[T], token: str | None) -> T:
        try:
            response = await self._http.request(**build_request(call, token))
        except httpx.HTTPError as err:
            raise TransportError(_url(self._http, call), str(err) or type(err).__name__) from err
        return read_answer(call, response)


def _url(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> str:
    return f"{http.base_url}".rstrip("/") + call.path
