"""What the SDK's tests run against: the real orchestrator server (the
binary at ORCHESTRATOR_BIN, else the repository's release build) on the
store ORCHESTRATOR_TEST_STORE names (`memory`, the default, or `postgres`:
a throwaway database on the server DATABASE_URL points at), beside a fake
Registry of the mesh that signs real RS256 tokens."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REPOSITORY = Path(__file__).resolve().parents[3]
SECRET = "sdk-tests-secret-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(what: str, probe: Callable[[], Any], within: float = 10.0) -> Any:
    """The first truthy value of `probe`, asked every 20 ms for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.02)


# -- the fake Registry -------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeRegistry:
    """The mesh's Registry as its guides describe it: `POST /register`
    answers `{"token", "service_id"}` (an RS256 token naming the service),
    `GET /services` lists the services, `GET /auth/public-key` its key."""

    FIRST_SERVICE_ID = 7001

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.services: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps({**claims, "iat": now, "exp": now + 600}).encode())
        signature = self.key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(signature)}"

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            known = next((s for s in self.services if s["droplet_id"] == body["droplet_id"]), None)
            if known is not None:
                self.services.remove(known)
            service_id = known["service_id"] if known else self.FIRST_SERVICE_ID + len(self.services)
            self.services.append(
                {
                    "service_id": service_id,
                    "droplet_id": body["droplet_id"],
                    "name": body["name"],
                    "host": "127.0.0.1",
                    "port": body.get("port"),
                    "health_endpoint": body.get("health_endpoint"),
                    "capabilities": body.get("capabilities", []),
                }
            )
        name = body["name"]
        token = self.sign({"sub": name, "service_id": service_id, "service_name": name})
        return {"token": token, "service_id": service_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path == "/auth/public-key":
                    return self.answer(200, {"public_key": registry.public_pem})
                if self.path.startswith("/services"):
                    with registry.lock:
                        return self.answer(200, {"services": list(registry.services)})
                self.answer(404, {"detail": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/register":
                    return self.answer(404, {"detail": "not found"})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if "name" not in body or not isinstance(body.get("droplet_id"), int):
                    return self.answer(422, {"detail": "name and droplet_id needed"})
                self.answer(201, registry.register(body))

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture(scope="session")
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    fake.server.shutdown()


# -- the orchestrator --------------------------------------------------------


def binary() -> Path:
    path = Path(os.environ.get("ORCHESTRATOR_BIN", REPOSITORY / "target" / "release" / "orchestrator"))
    if not path.exists():
        raise RuntimeError(
            f"no orchestrator binary at {path}: build it with "
            "`cargo build --release -p orchestrator-server --bin orchestrator` or set ORCHESTRATOR_BIN"
        )
    return path


class Server:
    """A running orchestrator, and how to make tokens for it."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url = url
        self.process = process
        self.env = env

    def token(self, subject: str, permissions: str = "read,write", droplet_id: int | None = None) -> str:
        command = [str(binary()), "token", "--subject", subject, "--permissions", permissions]
        if droplet_id is not None:
            command += ["--droplet-id", str(droplet_id)]
        return subprocess.run(command, env=self.env, check=True, capture_output=True, text=True).stdout.strip()

    @property
    def admin(self) -> str:
        return self.token("sdk-admin", "admin")


def _database(store: str) -> tuple[str, Callable[[], None]]:
    """The DATABASE_URL of the server under test, and how to drop it after."""
    if store == "memory":
        return "memory", lambda: None
    if store != "postgres":
        raise RuntimeError(f"ORCHESTRATOR_TEST_STORE is memory or postgres, not {store!r}")
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        raise RuntimeError("ORCHESTRATOR_TEST_STORE=postgres needs DATABASE_URL (a PostgreSQL server)")
    name = f"sdk_tests_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", server_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    database = server_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        subprocess.run(["psql", server_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)

    return database, drop


#: The OpenAPI document, read from the first server of the session.
DOCUMENT: dict[str, Any] | None = None


def start_server(registry: FakeRegistry, **settings: str) -> Iterator[Server]:
    """Runs an orchestrator until the generator is closed; `settings`
    override its environment."""
    store = os.environ.get("ORCHESTRATOR_TEST_STORE", "memory")
    database, drop = _database(store)
    port = free_port()
    env = dict(
        os.environ,
        ENVIRONMENT="test",
        HOST="127.0.0.1",
        PORT=str(port),
        DATABASE_URL=database,
        JWT_SECRET_KEY=SECRET,
        LOG_FORMAT="text",
        LOG_LEVEL="warn",
        REGISTRY_URL=registry.url,
        REGISTRY_SYNC_INTERVAL="3600",
        ENABLE_PUSH_DELIVERY="true",
        ALLOW_PRIVATE_DROPLET_ENDPOINTS="true",
        RATE_LIMIT_PER_MINUTE="100000000",
        BROADCAST_RATE_LIMIT_PER_MINUTE="100000000",
        ENABLE_METRICS="true",
        RETRY_BACKOFF_BASE_SECONDS="1",
        RETRY_BACKOFF_MAX_SECONDS="1",
        **settings,
    )
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"orchestrator-sdk-tests-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen([str(binary()), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the orchestrator exited with {process.returncode}; see {log_path}")
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        eventually("the orchestrator ready", up, within=60)
        global DOCUMENT
        DOCUMENT = DOCUMENT or httpx.get(f"{url}/openapi.json", timeout=10).json()
        yield Server(url, process, env)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        drop()
        if "panicked" in log_path.read_text(errors="replace"):
            raise AssertionError(f"the orchestrator panicked; see {log_path}")


@pytest.fixture(scope="session")
def server(registry: FakeRegistry) -> Iterator[Server]:
    """The orchestrator most tests share."""
    yield from start_server(registry)


@pytest.fixture
def own_server(registry: FakeRegistry) -> Iterator[Server]:
    """An orchestrator of the test's own, for what would disturb the others."""
    yield from start_server(registry)


_ids = iter(range(100, 10_000))


@pytest.fixture
def droplet_id() -> int:
    """A droplet id no other test of the session uses."""
    return next(_ids)


@pytest.fixture
def capability(droplet_id: int) -> str:
    """A capability only this test's droplet offers."""
    return f"cap-{droplet_id}"


# -- every operation exercised -------------------------------------------------

#: (method, path) of every request the clients made this session.
CALLED: set[tuple[str, str]] = set()


@pytest.fixture(scope="session", autouse=True)
def record_calls() -> Iterator[None]:
    """Notes each request the SDK builds, so that the session can tell
    which operations of the document no test called."""
    import orchestrator_sdk._caller as caller
    import orchestrator_sdk.client as client

    build, url = caller.build_request, client.feed_url

    def recording_build(call: Any, token: str | None) -> dict[str, Any]:
        CALLED.add((call.method, call.path))
        return build(call, token)

    def recording_url(base_url: str, path: str, filters: Any) -> str:
        CALLED.add(("GET", path))
        return url(base_url, path, filters)

    caller.build_request, client.feed_url = recording_build, recording_url  # type: ignore[assignment]
    yield
    caller.build_request, client.feed_url = build, url  # type: ignore[assignment]


def uncalled(document: dict[str, Any]) -> list[str]:
    """The operations of `document` no request of the session matched."""
    import re

    missing = []
    for path, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item and not any(m == method.upper() and pattern.match(p) for m, p in CALLED):
                missing.append(f"{method.upper()} {path}")
    return missing


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With SDK_EVERY_ENDPOINT=1 (scripts/test-python, on a whole run), a
    session that left an operation of the document uncalled fails."""
    if os.environ.get("SDK_EVERY_ENDPOINT") != "1" or exitstatus != 0 or not CALLED:
        return
    missing = uncalled(DOCUMENT) if DOCUMENT else ["(no server ran to read the document from)"]
    if missing:
        print("\nno test called these operations:\n  " + "\n  ".join(missing))
        session.exitstatus = 1
