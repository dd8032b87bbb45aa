"""The exceptions of the SDK: every failed call raises an `OrchestratorError`."""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """A call to the orchestrator failed."""

    @property
    def outcome_unknown(self) -> bool:
        """True when the request may have been applied or not: it got no
        answer, or a 5xx that does not say which. Such a request may be sent
        again only where the server takes a repeat as the same request."""
        return False


class ApiError(OrchestratorError):
    """The orchestrator answered with its error body.

    `code` is the API's error code, such as ``not_found``,
    ``invalid_transition`` or ``stale_attempt``; `details` what the body
    says beyond the message (the field at fault, a retry delay…)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def outcome_unknown(self) -> bool:
        return self.status >= 500


class TransportError(OrchestratorError):
    """The orchestrator could not be reached, or the connection failed."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"could not reach the orchestrator at {url}: {message}")
        self.url = url
        self.message = message

    @property
    def outcome_unknown(self) -> bool:
        return True


class DecodeError(OrchestratorError):
    """The answer was not what this SDK expects of that endpoint."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"unexpected answer from {url}: {message}")
        self.url = url
        self.message = message


class RegistryError(OrchestratorError):
    """The Registry refused a registration, or could not be reached."""
