"""Helpers for the tests of ``tformer serve``: a real uvicorn server in a thread of the test process, HTTP calls
with the standard library, and Schemathesis fuzzing the server from its own OpenAPI schema."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import uvicorn


@contextlib.contextmanager
def served_app(app):
    """Run ``app`` on a real uvicorn server (loopback, a free port) in a thread; yields its URL."""
    from tformer.cli.serve import listen

    sock = listen("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=15)
        sock.close()
    assert not thread.is_alive(), "the server did not stop"


def request(url: str, path: str, body=None, *, raw: bytes | None = None, content_type: str = "application/json",
            timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON answer) of a GET (no body) or a POST of ``body`` as JSON (or of ``raw`` bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": content_type},
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


# Every check of Schemathesis but one: "a schema-valid request is accepted" cannot hold where a rule spans
# fields or needs the model (nbest <= beam_size, sampling settings only with sample, a text's token count),
# which JSON Schema cannot state; those requests get a documented one-line 422, which the other checks verify.
FUZZ_CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


def fuzz(url: str, workdir: Path, examples: int = 5, seed: int = 1, coverage: bool = False
         ) -> subprocess.CompletedProcess:
    """Schemathesis (``st run``) against the server at ``url``, from its /openapi.json: every operation, its
    schema's examples and ``examples`` generated cases each, and with ``coverage`` the coverage phase too
    (boundary values, wrong types, missing fields: ~100 requests an operation, ~10 s); no 5xx, every status and
    body as the schema documents them. Its reports go to ``workdir``."""
    st = Path(sys.executable).with_name("st")
    phases = "examples,coverage,fuzzing" if coverage else "examples,fuzzing"
    command = [str(st) if st.exists() else "st", "run", f"{url}/openapi.json", "--phases", phases,
               "--max-examples", str(examples), "--seed", str(seed), "--no-shrink", *FUZZ_CHECKS,
               "--report-dir", str(workdir / "reports")]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env, timeout=300)
