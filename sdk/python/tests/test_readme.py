"""The README's quick start, run as written against a server of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from conftest import Server, eventually

from orchestrator_sdk import Client

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), flags=re.S)


def run_as_written(code: str, server: Server, **popen: object) -> subprocess.Popen[str]:
    code = code.replace("http://localhost:8000", server.url)
    env = dict(os.environ, TOKEN=server.admin)
    return subprocess.Popen([sys.executable, "-c", code], env=env, text=True, **popen)  # type: ignore[call-overload]


def test_the_quick_start_works_as_written(own_server: Server) -> None:
    submit, work = blocks("python")[:2]
    said = blocks("text")[0]
    client = run_as_written(submit, own_server, stdout=subprocess.PIPE)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0 and out == said
    worker = run_as_written(work, own_server, stderr=subprocess.PIPE)
    try:
        with Client(own_server.url, own_server.admin) as admin:
            task = eventually("the task done", lambda: (t := admin.get_task(1)).status == "completed" and t)
        assert task.result == {"echo": "hi"}
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    assert "failed" not in errors, errors
