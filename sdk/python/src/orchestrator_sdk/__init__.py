"""The Python SDK of the Orchestrator: typed clients of its API and a
worker runtime that makes a Python service a droplet.

    from orchestrator_sdk import Client
    client = Client("http://localhost:8000", token)
    created = client.create_task({"task_type": "echo", "payload": {"text": "hi"}})
    print(client.get_task(created.task_id).status)
"""

from . import models
from .auth import IssuedToken, Registration, RegistryToken, StaticToken, TokenSource
from .client import AsyncClient, Client
from .errors import ApiError, DecodeError, OrchestratorError, RegistryError, TransportError
from .feed import AsyncSubscription, FeedEvent, FeedFilter, Subscription
from .worker import HANDED_BACK, STOPPED_ON_REQUEST, TIMED_OUT, Job, Worker, WorkerReport

__version__ = "0.1.0"

__all__ = [
    "HANDED_BACK",
    "STOPPED_ON_REQUEST",
    "TIMED_OUT",
    "ApiError",
    "AsyncClient",
    "AsyncSubscription",
    "Client",
    "DecodeError",
    "FeedEvent",
    "FeedFilter",
    "IssuedToken",
    "Job",
    "OrchestratorError",
    "Registration",
    "RegistryError",
    "RegistryToken",
    "StaticToken",
    "Subscription",
    "TokenSource",
    "TransportError",
    "Worker",
    "WorkerReport",
    "models",
]
