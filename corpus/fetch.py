"""HTTP for the sources: one shared `httpx.AsyncClient`, bounded, retried, size-capped and decoded.

`Fetcher.get(url)` returns the body of a URL or raises a `FetchError` named for what went wrong.
Timeouts, connection errors, 429 and 5xx are retried with exponential backoff and jitter
(a 429's or 503's Retry-After is honoured, up to `fetch_retry_max_wait_s`); other 4xx are not.
A body larger than `fetch_max_bytes` is refused from its Content-Length, or as soon as the
streamed bytes pass the cap, so a 500 MB page is never read.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Self

import httpx
from charset_normalizer import from_bytes
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from talks.settings import Settings

logger = logging.getLogger(__name__)

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/html;q=0.9, */*;q=0.5"


class FetchError(Exception):
    """A URL could not be fetched; the message says why."""

    retryable = False
    retry_after: float | None = None


class FetchTimeoutError(FetchError):
    retryable = True


class FetchConnectionError(FetchError):
    retryable = True


class HTTPStatusFetchError(FetchError):
    """The server answered with an error status."""

    def __init__(self, url: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status
        self.retry_after = retry_after
        self.retryable = status == 429 or status >= 500


class TooManyRedirectsError(FetchError):
    """More redirects than `fetch_max_redirects`, or a redirect loop."""


class ResponseTooLargeError(FetchError):
    """The body is larger than `fetch_max_bytes`; it was not read."""


class InvalidURLError(FetchError):
    """Not an http(s) URL that can be fetched."""


@dataclass(frozen=True)
class Fetched:
    """A response: `url` is where the redirects ended; `not_modified` for a 304 (empty content)."""

    url: str
    status: int
    content: bytes
    content_type: str
    charset: str | None
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return decode_body(self.content, self.charset)


# --- decoding -------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_MARKUP_SNIFF_BYTES = 4096


def declared_encoding(content: bytes) -> str | None:
    """The encoding an XML declaration or HTML <meta> names, if any, in the first few KB."""
    head = content[:_MARKUP_SNIFF_BYTES]
    found = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    return found.group(1).decode("ascii") if found else None


def _decode_as(content: bytes, encoding: str | None) -> str | None:
    if not encoding:
        return None
    try:
        return content.decode(codecs.lookup(encoding).name)
    except (LookupError, UnicodeDecodeError):
        return None


def decode_body(content: bytes, charset: str | None = None) -> str:
    """Text from a body: byte-order mark, then the header's charset, then the markup's own
    declaration, then UTF-8, then detection (Windows-1256 and ISO-8859-6 Arabic included)."""
    bom = next((encoding for mark, encoding in _BOMS if content.startswith(mark)), None)
    for encoding in (bom, charset, declared_encoding(content), "utf-8"):
        if (text := _decode_as(content, encoding)) is not None:
            return text
    best = from_bytes(content).best()
    if best is not None:
        logger.debug("detected encoding %s", best.encoding)
        return str(best)
    return content.decode("utf-8", errors="replace")


# --- retries ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.retryable


class _RetryWait:
    """Exponential backoff with jitter; the server's Retry-After (capped) when it sent one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.maximum = maximum
        self.backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, FetchError) and exc.retry_after is not None:
            return min(exc.retry_after, self.maximum)
        return self.backoff(state)


def _log_retry(url: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("retrying %s in %.2fs (attempt %d failed: %s)", url, wait, state.attempt_number, exc)


# --- the client ---------------------------------------------------------------------------


class Fetcher:
    """One `httpx.AsyncClient` for a whole poll; use as `async with Fetcher(settings) as fetcher`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            headers={"User-Agent": settings.fetch_user_agent, "Accept": ACCEPT},
            timeout=httpx.Timeout(settings.fetch_timeout_s),
            follow_redirects=True,
            max_redirects=settings.fetch_max_redirects,
            limits=httpx.Limits(max_connections=max(10, settings.fetch_connections_per_host * 4)),
        )
        self._host_slots: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The response body of `url`, retried as the settings say; a 304 when the validators match."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_after_attempt(self.settings.fetch_retries + 1),
            wait=_RetryWait(self.settings.fetch_retry_wait_s, self.settings.fetch_retry_max_wait_s),
            before_sleep=lambda state: _log_retry(url, state),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_once(url, headers)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _host_slot(self, url: str) -> asyncio.Semaphore:
        host = httpx.URL(url).host
        if host not in self._host_slots:
            self._host_slots[host] = asyncio.Semaphore(self.settings.fetch_connections_per_host)
        return self._host_slots[host]

    async def _get_once(self, url: str, headers: dict[str, str]) -> Fetched:
        try:
            # The timeout starts once a connection slot for the host is free: waiting in line is not slowness.
            async with self._host_slot(url), asyncio.timeout(self.settings.fetch_timeout_s):
                return await self._stream(url, headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FetchTimeoutError(f"timed out after {self.settings.fetch_timeout_s:g}s: {url}") from exc
        except httpx.TooManyRedirects as exc:
            raise TooManyRedirectsError(
                f"more than {self.settings.fetch_max_redirects} redirects (or a redirect loop): {url}"
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise InvalidURLError(f"cannot fetch {url!r}: {exc}") from exc
        except httpx.TransportError as exc:
            raise FetchConnectionError(f"connection failed ({type(exc).__name__}: {exc}): {url}") from exc
        except httpx.HTTPError as exc:  # DecodingError and the like: a broken response
            raise FetchError(f"unreadable response ({exc}): {url}") from exc

    async def _stream(self, url: str, headers: dict[str, str]) -> Fetched:
        limit = self.settings.fetch_max_bytes
        async with self.client.stream("GET", url, headers=headers) as response:
            final_url = str(response.url)
            if response.status_code >= 400:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise HTTPStatusFetchError(final_url, response.status_code, retry_after)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ResponseTooLargeError(f"{final_url} is {int(declared):,} bytes, more than the {limit:,} allowed")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ResponseTooLargeError(f"{final_url} is more than the {limit:,} bytes allowed")
            return Fetched(
                url=final_url,
                status=response.status_code,
                content=bytes(body),
                content_type=response.headers.get("Content-Type", ""),
                charset=response.charset_encoding,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
