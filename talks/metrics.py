"""The bot's Prometheus metrics, and the small HTTP endpoint that serves them with the health
report: `GET /metrics` (Prometheus text format) and `GET /health` (JSON; 200 when healthy,
503 when not). On when TALKS_METRICS_PORT is set; it runs in a thread of the bot process.

Each process counts its own: with several bot workers, scrape each one (Prometheus sums them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from talks.health import HealthReport
from talks.settings import Settings

if TYPE_CHECKING:
    from corpus.ingest import FetchReport
    from retrieval.service import IndexStats

logger = logging.getLogger(__name__)

LANGUAGES = ("ar", "en")

QUESTIONS = Counter(
    "talks_questions", "Questions answered with sources, or declined (nothing relevant found)", ["language", "outcome"]
)
QUESTIONS_REFUSED = Counter(
    "talks_questions_refused",
    "Questions refused with a reply, by its reason: empty_question, too_long, rate_limited (told once "
    "while a user stays limited), store_unavailable, no_index",
    ["reason"],
)
ANSWER_SECONDS = Histogram(
    "talks_answer_seconds",
    "Time from question to final answer (retrieval and answering, LLM included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80),
)
SOURCE_POLLS = Counter(
    "talks_source_polls", "Polls of a source by outcome (ok, not_modified, failed, skipped)", ["outcome"]
)
FETCHED_ARTICLES = Counter("talks_fetched_articles", "Articles stored by the polls of the sources", ["kind"])
DIGEST_DELIVERIES = Counter(
    "talks_digest_deliveries",
    "Digest messages to subscribers: sent, failed (retried later), chat_gone (unsubscribed)",
    ["outcome"],
)
REINDEXES = Counter("talks_reindexes", "Reindexes requested by admins (/reindex)", ["outcome"])
INDEX_ARTICLES = Gauge("talks_index_articles", "Articles in the index the bot answers from")
INDEX_CHUNKS = Gauge("talks_index_chunks", "Chunks (passages) in the index the bot answers from")

# Every series exists from the start, at 0, so that rates work before the first event.
for _language in LANGUAGES:
    for _outcome in ("answered", "declined"):
        QUESTIONS.labels(_language, _outcome)
for _outcome in ("ok", "not_modified", "failed", "skipped"):
    SOURCE_POLLS.labels(_outcome)
for _outcome in ("sent", "failed", "chat_gone"):
    DIGEST_DELIVERIES.labels(_outcome)
for _outcome in ("ok", "failed"):
    REINDEXES.labels(_outcome)


def record_answer(language: str, answered: bool, seconds: float) -> None:
    QUESTIONS.labels(language, "answered" if answered else "declined").inc()
    ANSWER_SECONDS.observe(seconds)


def record_fetch(report: FetchReport) -> None:
    for source in report.sources:
        SOURCE_POLLS.labels(source.status).inc()
    FETCHED_ARTICLES.labels("new").inc(len(report.new_article_ids))
    FETCHED_ARTICLES.labels("updated").inc(len(report.updated_article_ids))


def record_index(stats: IndexStats) -> None:
    INDEX_ARTICLES.set(stats.articles)
    INDEX_CHUNKS.set(stats.chunks)


# --- the endpoint -----------------------------------------------------------------------------


class MetricsEndpointError(RuntimeError):
    """The metrics endpoint cannot listen where TALKS_METRICS_LISTEN / TALKS_METRICS_PORT say."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds up the bot's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log: a line per scrape is noise (and not JSON)."""


def operations_app(health: Callable[[], HealthReport]) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app: /metrics from the default Prometheus registry, /health from `health()`."""
    metrics = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/health":
            report = health()
            status = "200 OK" if report.healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [report.model_dump_json().encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /health\n"]

    return app


def serve_operations(settings: Settings, health: Callable[[], HealthReport]) -> WSGIServer | None:
    """Serve /metrics and /health from a background thread when TALKS_METRICS_PORT is set;
    `shutdown()` the server to stop it."""
    if settings.metrics_port is None:
        return None
    listen, port = settings.metrics_listen, settings.metrics_port
    try:
        server = make_server(listen, port, operations_app(health), _ThreadingWSGIServer, _QuietHandler)
    except OSError as error:
        raise MetricsEndpointError(f"cannot serve metrics on {listen}:{port}: {error.strerror or error}") from None
    threading.Thread(target=server.serve_forever, name="talks-metrics", daemon=True).start()
    logger.info("metrics on http://%s:%d/metrics, health on /health", listen, server.server_port)
    return server
