"""An aiohttp app on a free 127.0.0.1 port, served from its own event loop in a background
thread, so tests (and bot processes) can talk to it over real HTTP while they run."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, ClassVar, Self

from aiohttp import web


class LocalServer:
    """Base of the fake servers: subclasses build the app; this starts and stops it."""

    name = "local server"
    runner_options: ClassVar[dict[str, Any]] = {"shutdown_timeout": 0.5}

    def __init__(self) -> None:
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def prepare_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hook to configure the server's event loop before it serves."""

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already started (and cannot be restarted)")
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, ready), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the {self.name} did not start")

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self.prepare_loop(loop)
        try:
            loop.run_until_complete(self._run_site(sock, ready))
            # Handlers still waiting (a slow reply whose client gave up) end with the server.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _run_site(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.build_app(), access_log=None, **self.runner_options)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        ready.set()
        await self._stopping.wait()
        await runner.cleanup()
