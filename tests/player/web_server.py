"""Running the web app for a test: uvicorn in a thread on a free port, stopped afterwards."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bus.settings import BusSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_web(settings: BusSettings, **app_kw: Any) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the app serves."""
    import uvicorn

    from player_agent.web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, **app_kw), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
