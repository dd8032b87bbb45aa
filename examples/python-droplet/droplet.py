"""An echo droplet of the mesh, written the way droplet-integration-guide.md
says: it registers with the Registry and keeps the token and service id it
gets back, beats every HEARTBEAT_SECONDS to the orchestrator's /heartbeat,
implements /health and /message, and reports its work with PATCH /tasks/{id}.

    python droplet.py serve            # be the droplet
    python droplet.py submit "hello"   # route one task through the orchestrator

Work arrives by push (the orchestrator POSTs a `task_assignment` envelope to
/message) and, as a safety net, by pull (GET /tasks?assigned_droplet_id=...)
every POLL_SECONDS. A push is only a notice: the droplet reads the task from
the orchestrator and runs it only if it is assigned to it.

Authenticated answers of the orchestrator are UDC envelopes: what the
guide reads at the top level (`task_id`, `task`) is inside `payload`.
"""

import json
import os
import queue
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

REGISTRY_URL = os.environ.get("REGISTRY_URL", "http://registry:8000")
ORCHESTRATOR_URL = os.environ.get("ORCHESTRATOR_URL", "http://orchestrator:8001")
SERVICE_NAME = os.environ.get("SERVICE_NAME", "echo-py")
DROPLET_ID = int(os.environ.get("DROPLET_ID", "41"))
SERVICE_PORT = int(os.environ.get("SERVICE_PORT", "8041"))
LISTEN_HOST = os.environ.get("LISTEN_HOST", "0.0.0.0")
CAPABILITY = os.environ.get("CAPABILITY", "echo")
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "60"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "5"))

started_at = time.time()
handled = 0


def log(message):
    print(f"{SERVICE_NAME}: {message}", flush=True)


def register_with_registry():
    """Step 1 of the guide: register, and keep the token and service id."""
    response = requests.post(
        f"{REGISTRY_URL}/register",
        json={
            "name": SERVICE_NAME,
            "droplet_id": DROPLET_ID,
            "port": SERVICE_PORT,
            "health_endpoint": "/health",
            "capabilities": [CAPABILITY],
            "version": "1.0.0",
            "udc_compliant": True,
        },
        timeout=10,
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"Registration failed: {response.status_code} {response.text}")
    data = response.json()
    return data["token"], data["service_id"]


class Orchestrator:
    """The orchestrator's API, with the Registry's token."""

    def __init__(self, token):
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method, path, **kwargs):
        response = self.http.request(method, f"{ORCHESTRATOR_URL}{path}", timeout=10, **kwargs)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("payload", body).get("error", {})
            raise RuntimeError(f"{method} {path}: {response.status_code} {error.get('code')}: {error.get('message')}")
        return body.get("payload", body)

    def heartbeat(self, service_id):
        """Step 2 of the guide: the heartbeat, by the Registry's service id."""
        metrics = {"tasks_handled": handled, "uptime_seconds": int(time.time() - started_at)}
        return self.call("POST", "/heartbeat", json={"service_id": service_id, "status": "active", "metrics": metrics})

    def route_task(self, task_type, task_data):
        """Section 5.3 of the guide: route a task through the orchestrator."""
        created = self.call("POST", "/tasks", json={"task_type": task_type, "data": task_data, "priority": "normal"})
        return created["task_id"]

    def get_task(self, task_id):
        return self.call("GET", f"/tasks/{task_id}")["task"]

    def assigned_to_me(self):
        query = {"assigned_droplet_id": DROPLET_ID, "status": "assigned"}
        return [task["id"] for task in self.call("GET", "/tasks", params=query)["tasks"]]

    def report(self, task, status, **fields):
        # `attempt` fences the report: one about an earlier assignment is refused.
        body = {"status": status, "attempt": task.get("attempt"), **fields}
        return self.call("PATCH", f"/tasks/{task['id']}", json=body)


def run(orchestrator, task_id):
    """Starts, runs and completes one task, if it is still ours to run."""
    global handled
    task = orchestrator.get_task(task_id)
    if task["status"] != "assigned" or task["assigned_droplet_id"] != DROPLET_ID:
        return
    try:
        orchestrator.report(task, "in_progress")
    except RuntimeError as refused:  # taken back, or started by a pull meanwhile
        log(f"task {task_id} is not ours to start: {refused}")
        return
    text = task["payload"].get("text", "")
    log(f'task {task_id} says "{text}"')
    orchestrator.report(task, "completed", result={"echo": text, "by": SERVICE_NAME})
    handled += 1


def work(orchestrator, inbox):
    """Runs pushed tasks at once, and polls for any a push did not bring."""
    while True:
        try:
            ids = [inbox.get(timeout=POLL_SECONDS)]
        except queue.Empty:
            try:
                ids = orchestrator.assigned_to_me()
            except (requests.RequestException, RuntimeError) as err:
                log(f"poll failed: {err}")
                continue
        for task_id in ids:
            try:
                run(orchestrator, task_id)
            except (requests.RequestException, RuntimeError) as err:
                log(f"task {task_id} failed to run: {err}")


def heartbeat_loop(orchestrator, service_id):
    while True:
        try:
            orchestrator.heartbeat(service_id)
        except (requests.RequestException, RuntimeError) as err:
            log(f"heartbeat failed: {err}")
        time.sleep(HEARTBEAT_SECONDS)


def endpoints(inbox):
    """/health (UDC) and /message, where the orchestrator pushes work."""

    class Endpoints(BaseHTTPRequestHandler):
        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != "/health":
                return self.answer(404, {"error": "not found"})
            now = datetime.now(timezone.utc).isoformat()
            self.answer(200, {"id": DROPLET_ID, "name": SERVICE_NAME, "status": "active", "updated_at": now})

        def do_POST(self):
            if self.path != "/message":
                return self.answer(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length", "0"))
            try:
                message = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self.answer(400, {"error": "not JSON"})
            if message.get("message_type") == "task_assignment":
                inbox.put(message["payload"]["task"]["id"])
            self.answer(200, {"received": True})

        def log_message(self, *args):
            pass

    return Endpoints


def serve():
    token, service_id = register_with_registry()
    log(f"registered with the Registry as service {service_id}")
    orchestrator = Orchestrator(token)
    inbox = queue.Queue()
    server = ThreadingHTTPServer((LISTEN_HOST, SERVICE_PORT), endpoints(inbox))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=heartbeat_loop, args=(orchestrator, service_id), daemon=True).start()
    log(f"droplet {DROPLET_ID} working for {ORCHESTRATOR_URL}, listening on {SERVICE_PORT}")
    work(orchestrator, inbox)


def submit(text):
    token, _ = register_with_registry()
    orchestrator = Orchestrator(token)
    task_id = orchestrator.route_task(CAPABILITY, {"text": text})
    print(f"task {task_id} submitted", flush=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        task = orchestrator.get_task(task_id)
        if task["status"] in ("completed", "failed", "cancelled"):
            print(f"task {task_id} {task['status']}: {json.dumps(task['result'])}", flush=True)
            return 0 if task["status"] == "completed" else 1
        time.sleep(0.2)
    print(f"task {task_id} not finished in 30 s", flush=True)
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["submit"] and len(sys.argv) == 3:
        sys.exit(submit(sys.argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
