"""A fake web for the source-fetching tests: feeds, article pages and misbehaving servers on 127.0.0.1.

`FakeWeb` runs an aiohttp application on its own event loop in a background thread (like
`fake_telegram.FakeTelegram`), so the code under test reaches it over real HTTP, from its own
event loop or from a `talks` subprocess. Each path is a `Route`: a body with its Content-Type,
optional ETag / Last-Modified (answered with 304 when the client's validators match), errors
to answer first (500 then 200; 429 with Retry-After), a delay (a slow server), a redirect, or
an oversized body streamed until the client hangs up. Every request is counted and its headers
are kept.

Usage::

    with FakeWeb() as web:
        web.install_site()                  # the fixtures in tests/data/web at their paths
        web.fail("/feeds/rss.xml", 500)     # the next request gets a 500, the one after the feed
        url = web.url("/feeds/rss.xml")
        ...
        assert web.hits("/feeds/rss.xml") == 2
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from local_server import LocalServer

__all__ = ["WEB_DATA", "FakeWeb", "Route"]

WEB_DATA = Path(__file__).parent / "data" / "web"
HTML = "text/html; charset=utf-8"
_CHUNK = b"<p>" + b"x" * 65_530 + b"</p>"


@dataclass
class Route:
    body: bytes = b""
    content_type: str = HTML
    etag: str | None = None
    last_modified: str | None = None
    errors: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # answered first, one per request
    delay: float = 0.0
    redirect_to: str | None = None
    stream_bytes: int | None = None  # an oversized body of this size, streamed in chunks
    declare_length: bool = False  # send Content-Length for the streamed body


class FakeWeb(LocalServer):
    """Serves `Route`s on 127.0.0.1; configure it from any thread."""

    name = "fake web server"

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, Route] = {}
        self._hits: Counter[str] = Counter()
        self._headers: dict[str, list[dict[str, str]]] = {}
        self._sent: Counter[str] = Counter()
        self._lock = threading.Lock()


    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeWeb.start() has not been called")
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- configuring ---------------------------------------------------------------------

    def route(self, path: str, route: Route) -> Route:
        with self._lock:
            self._routes[path] = route
        return route

    def page(self, path: str, body: bytes | str, *, content_type: str = HTML, **options: object) -> Route:
        """Serve `body` at `path`; `{base}` in a str body becomes the server's address."""
        data = body.replace("{base}", self.base_url).encode("utf-8") if isinstance(body, str) else body
        return self.route(path, Route(body=data, content_type=content_type, **options))  # type: ignore[arg-type]

    def fixture(self, path: str, name: str, *, content_type: str = HTML, **options: object) -> Route:
        """Serve the file `tests/data/web/<name>` (bytes as stored; `{base}` replaced)."""
        data = (WEB_DATA / name).read_bytes().replace(b"{base}", self.base_url.encode("ascii"))
        return self.page(path, data, content_type=content_type, **options)

    def fail(self, path: str, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests for `path` with `status` (and Retry-After)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            route = self._routes.setdefault(path, Route())
            route.errors.extend([(status, headers)] * times)

    def redirect(self, path: str, to: str) -> Route:
        return self.route(path, Route(redirect_to=to))

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits[path]

    def request_headers(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self._headers.get(path, []))

    def bytes_sent(self, path: str) -> int:
        with self._lock:
            return self._sent[path]

    def install_site(self) -> None:
        """The fixture site: feeds, pages in three encodings, a sitemap, redirects and traps."""
        self.fixture("/feeds/rss.xml", "rss.xml", content_type="application/rss+xml; charset=utf-8", etag='"rss-1"')
        self.fixture(
            "/feeds/atom.xml", "atom.xml", content_type="application/atom+xml",
            last_modified="Thu, 13 Jan 2022 12:00:00 GMT",
        )
        self.fixture("/feeds/malformed.xml", "malformed.xml", content_type="application/rss+xml")
        self.fixture("/news/nato-council", "nato_council_clutter.html")
        self.fixture("/news/wheat-prices", "wheat_prices.html")
        self.fixture("/wire/site-a/ryabkov-warning", "wire_site_a.html")
        self.fixture("/wire/site-b/story-ryabkov", "wire_site_b.html")
        self.fixture("/pages/vienna-osce", "vienna_osce.html", etag='"vienna-1"')
        self.fixture("/ar/osce-vienna", "osce_ar_cp1256.html", content_type="text/html")  # charset in <meta> only
        self.fixture("/ar/nato-brussels", "nato_ar_iso88596.html", content_type="text/html; charset=iso-8859-6")
        self.fixture("/sitemap.xml", "sitemap.xml", content_type="application/xml")
        self.fixture("/sitemap_index.xml", "sitemap_index.xml", content_type="application/xml")
        for step in (1, 2, 3):
            self.redirect(f"/redirect/{step}", f"/redirect/{step + 1}" if step < 3 else "/pages/vienna-osce")
        self.redirect("/loop/a", "/loop/b")
        self.redirect("/loop/b", "/loop/a")
        self.fixture("/slow", "vienna_osce.html", delay=3.0)
        self.route("/huge", Route(stream_bytes=500_000_000, declare_length=True))
        self.route("/huge-chunked", Route(stream_bytes=500_000_000))

    # --- serving ---------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            self._hits[path] += 1
            self._headers.setdefault(path, []).append(dict(request.headers))
            route = self._routes.get(path)
            error = route.errors.pop(0) if route is not None and route.errors else None
        if route is None:
            return web.Response(status=404, text="not found")
        if route.delay:
            await asyncio.sleep(route.delay)
        if error is not None:
            status, headers = error
            return web.Response(status=status, headers=headers, text=f"error {status}")
        if route.redirect_to is not None:
            return web.Response(status=302, headers={"Location": route.redirect_to})
        if route.stream_bytes is not None:
            return await self._stream(request, route)
        if (route.etag and request.headers.get("If-None-Match") == route.etag) or (
            route.last_modified and request.headers.get("If-Modified-Since") == route.last_modified
        ):
            return web.Response(status=304, headers=self._validators(route))
        headers = {"Content-Type": route.content_type, **self._validators(route)}
        return web.Response(body=route.body, headers=headers)

    @staticmethod
    def _validators(route: Route) -> dict[str, str]:
        headers = {}
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        return headers

    async def _stream(self, request: web.Request, route: Route) -> web.StreamResponse:
        """Send chunks until `stream_bytes` or until the client hangs up, counting what went out."""
        assert route.stream_bytes is not None
        response = web.StreamResponse(headers={"Content-Type": HTML})
        if route.declare_length:
            response.content_length = route.stream_bytes
        await response.prepare(request)
        sent = 0
        try:
            while sent < route.stream_bytes:
                await response.write(_CHUNK)
                sent += len(_CHUNK)
                with self._lock:
                    self._sent[request.path] += len(_CHUNK)
        except ConnectionError:  # the client hung up: what a size cap does
            pass
        return response
