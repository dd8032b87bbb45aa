"""How a call is sent: the sync and async halves of the same steps (ask the
token source, send, read the answer; once more after a 401 with a renewed
token; again with the same Idempotency-Key while the outcome is unknown)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import httpx

from ._core import Call, build_request, read_answer, retry_wait, should_retry
from .auth import TokenSource
from .errors import ApiError, OrchestratorError, TransportError

T = TypeVar("T")


class _SyncCaller:
    _http: httpx.Client
    _token: TokenSource | None

    def _call(self, call: Call[T]) -> T:
        tries = 0
        renewed = False
        while True:
            tries += 1
            token: str | None = None
            try:
                token = self._bearer_for(call)
                return self._send(call, token)
            except ApiError as err:
                if err.status == 401 and not renewed and self._renewable(call, token):
                    renewed = True
                    continue
                if not should_retry(call, err, tries):
                    raise
            except OrchestratorError as err:
                if not should_retry(call, err, tries):
                    raise
            time.sleep(retry_wait(tries))

    def _bearer_for(self, call: Call[Any]) -> str | None:
        return self._token.token(self._http) if call.authenticated and self._token else None

    def _send(self, call: Call[T], token: str | None) -> T:
        try:
            response = self._http.request(**build_request(call, token))
        except httpx.HTTPError as err:
            raise TransportError(_url(self._http, call), str(err) or type(err).__name__) from err
        return read_answer(call, response)

    def _renewable(self, call: Call[Any], token: str | None) -> bool:
        return call.authenticated and self._token is not None and self._token.refused(token)


class _AsyncCaller:
    _http: httpx.AsyncClient
    _token: TokenSource | None

    async def _call(self, call: Call[T]) -> T:
        tries = 0
        renewed = False
        while True:
            tries += 1
            token: str | None = None
            try:
                token = await self._bearer_for(call)
                return await self._send(call, token)
            except ApiError as err:
                if err.status == 401 and not renewed and self._renewable(call, token):
                    renewed = True
                    continue
                if not should_retry(call, err, tries):
                    raise
            except OrchestratorError as err:
                if not should_retry(call, err, tries):
                    raise
            await asyncio.sleep(retry_wait(tries))

    async def _bearer_for(self, call: Call[Any]) -> str | None:
        return await self._token.atoken(self._http) if call.authenticated and self._token else None

    async def _send(self, call: Call[T], token: str | None) -> T:
        try:
            response = await self._http.request(**build_request(call, token))
        except httpx.HTTPError as err:
            raise TransportError(_url(self._http, call), str(err) or type(err).__name__) from err
        return read_answer(call, response)

    def _renewable(self, call: Call[Any], token: str | None) -> bool:
        return call.authenticated and self._token is not None and self._token.refused(token)


def _url(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> str:
    return f"{http.base_url}".rstrip("/") + call.path
