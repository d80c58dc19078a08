"""Real HTTP servers for the browser tests: an ASGI app under uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.integration.conftest import free_port

STARTUP_TIMEOUT_SECONDS = 30.0


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1:`port` (lifespan on) until stopped."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.port = port
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name=f"uvicorn-{port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


@contextmanager
def serving(app: ASGIApp, port: int | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, port or free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
