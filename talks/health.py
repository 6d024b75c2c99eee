"""Is the bot able to answer? One report for `talks health`, the admins' /health and the
HTTP /health endpoint: the Chroma database, the index in it, the embedding model, the bot's
state database, and the last fetch of the sources.

A check that fails means questions go unanswered (or the state is lost); a warning is worth a
look but the bot works (a news site that keeps failing, a state database not created yet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, computed_field

from talks.settings import Settings

if TYPE_CHECKING:
    import chromadb

    from corpus.sources import Source
    from retrieval.embeddings import SentenceTransformerEmbeddings
    from retrieval.service import TalksService

Status = Literal["ok", "warning", "failed"]
CheckValue = str | int | list[str] | None
MARKS: dict[Status, str] = {"ok": "✅", "warning": "⚠️", "failed": "❌"}
STATE_CONNECT_TIMEOUT_S = 5


class Check(BaseModel):
    name: str
    status: Status
    detail: str
    data: dict[str, CheckValue] = {}

    @property
    def line(self) -> str:
        return f"{MARKS[self.status]} {self.name}: {self.detail}"


class HealthReport(BaseModel):
    checked_at: datetime
    checks: list[Check]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy(self) -> bool:
        return all(check.status != "failed" for check in self.checks)

    def lines(self) -> list[str]:
        """The report as text: a verdict, then one line per check."""
        verdict = "healthy" if self.healthy else "UNHEALTHY"
        return [verdict, *(check.line for check in self.checks)]


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --- Chroma and the index --------------------------------------------------------------


def chroma_location(settings: Settings) -> str:
    if settings.chroma_host:
        scheme = "https" if settings.chroma_ssl else "http"
        return f"server {scheme}://{settings.chroma_host}:{settings.chroma_port}"
    return f"embedded at {settings.chroma_path}"


def check_chroma(
    settings: Settings, connect: Callable[[], chromadb.ClientAPI]
) -> tuple[Check, chromadb.ClientAPI | None]:
    """The client `connect` gives, if the database answers its heartbeat."""
    where = chroma_location(settings)
    try:
        client = connect()
        client.heartbeat()
    except Exception as error:  # noqa: BLE001 - whatever it is, the report says it instead of crashing
        return Check(name="chroma", status="failed", detail=f"{where}: {_failure(error)}"), None
    return Check(name="chroma", status="ok", detail=f"{where} reachable"), client


def check_index(
    client: chromadb.ClientAPI | None, settings: Settings, embeddings: SentenceTransformerEmbeddings | None
) -> Check:
    """The index names a collection that can be read, and was built with the loaded model."""
    from retrieval.store import PassageStore

    if client is None or embeddings is None:
        missing = "Chroma" if client is None else "the embedding model"
        return Check(name="index", status="failed", detail=f"not checked: {missing} unavailable")
    store = PassageStore(client, settings.collection_name, embeddings)
    try:
        if not store.exists():
            return Check(
                name="index", status="failed", detail=f"no index {settings.collection_name!r}: run `talks index`"
            )
        store.vectorstore()  # raises ModelMismatchError for an index of another model
        chunks = store.count()
        store.collection().peek(limit=1)
    except Exception as error:  # noqa: BLE001
        return Check(
            name="index", status="failed", detail=f"{settings.collection_name!r} unreadable: {_failure(error)}"
        )
    data: dict[str, CheckValue] = {"collection": store.collection_name, "chunks": chunks}
    if chunks == 0:
        return Check(
            name="index", status="failed", detail=f"{store.collection_name} is empty: run `talks index`", data=data
        )
    return Check(name="index", status="ok", detail=f"{store.collection_name}, {chunks} chunks", data=data)


# --- the embedding model -------------------------------------------------------------------


def describe_model(embeddings: SentenceTransformerEmbeddings, verb: str) -> Check:
    data: dict[str, CheckValue] = {"model": embeddings.name, "dimension": embeddings.dimension}
    return Check(name="model", status="ok", detail=f"{embeddings.name} {verb} ({embeddings.dimension} dims)", data=data)


def load_model(settings: Settings) -> tuple[Check, SentenceTransformerEmbeddings | None]:
    from retrieval.embeddings import SentenceTransformerEmbeddings

    try:
        embeddings = SentenceTransformerEmbeddings(settings.embedding_model)
    except Exception as error:  # noqa: BLE001
        return Check(name="model", status="failed", detail=f"cannot load: {_failure(error)}"), None
    return describe_model(embeddings, "loadable"), embeddings


# --- the bot's state database -----------------------------------------------------------------


def check_state(settings: Settings) -> Check:
    """The state database answers and has the bot's tables. Opening it never creates it."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    from bot.state import database_url

    url = make_url(database_url(settings.state_url))
    shown = url.render_as_string(hide_password=True)
    data: dict[str, CheckValue] = {"backend": url.get_backend_name()}
    if url.get_backend_name() == "sqlite" and url.database and not settings.state_db_path.exists():
        detail = f"no database at {url.database} yet: the bot creates it when it starts"
        return Check(name="state", status="warning", detail=detail, data=data)
    connect_args = {"connect_timeout": STATE_CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's errors carry the driver's (never the password)
        return Check(
            name="state",
            status="failed",
            detail=f"{shown} unreachable: {_failure(getattr(error, 'orig', None) or error)}",
            data=data,
        )
    finally:
        engine.dispose()
    data["tables"] = len(tables)
    if not tables:
        return Check(
            name="state",
            status="warning",
            detail=f"{shown} is empty: the bot creates its tables when it starts",
            data=data,
        )
    return Check(name="state", status="ok", detail=f"{shown} reachable, {len(tables)} tables", data=data)


# --- the sources' last fetch ----------------------------------------------------------------------


def summarize_sources(sources: Sequence[Source]) -> Check:
    """The last fetch of every source: when, and which ones are failing (a warning: the bot
    still answers from what it has)."""
    if not sources:
        return Check(name="sources", status="ok", detail="no sources to fetch", data={"sources": 0})
    fetched = [source.state.last_fetch for source in sources if source.state.last_fetch is not None]
    last = max(fetched, default=None)
    failing = [source for source in sources if source.state.last_status == "failed"]
    data: dict[str, CheckValue] = {
        "sources": len(sources),
        "last_fetch": last.isoformat() if last else None,
        "failing": [source.label for source in failing],
        "never_fetched": len(sources) - len(fetched),
    }
    when = f"last fetch {last:%Y-%m-%d %H:%M} UTC" if last else "never fetched"
    if failing:
        reasons = "; ".join(f"{s.label} ({s.state.failures}×: {s.state.last_error})" for s in failing)
        detail = f"{len(failing)} of {len(sources)} failing: {reasons}; {when}"
        return Check(name="sources", status="warning", detail=detail, data=data)
    return Check(name="sources", status="ok", detail=f"{len(sources)} sources, {when}, none failing", data=data)


def check_sources(settings: Settings) -> Check:
    from corpus.sources import SourcesFile, SourcesFileError

    try:
        sources = SourcesFile(settings.sources_path).load()
    except SourcesFileError as error:
        return Check(name="sources", status="failed", detail=str(error))
    return summarize_sources(sources)


# --- the reports -----------------------------------------------------------------------------------


def _report(checks: Sequence[Check]) -> HealthReport:
    return HealthReport(checked_at=datetime.now(UTC), checks=list(checks))


def standalone_health(settings: Settings) -> HealthReport:
    """`talks health`: everything the bot would need, loading the model to see that it loads."""
    from retrieval.store import chroma_client

    chroma, client = check_chroma(settings, lambda: chroma_client(settings))
    model, embeddings = load_model(settings)
    index = check_index(client, settings, embeddings)
    return _report([index, model, chroma, check_state(settings), check_sources(settings)])


def service_health(settings: Settings, service: TalksService) -> HealthReport:
    """A running bot's health: its loaded model, over the Chroma database and index it uses."""
    chroma, client = check_chroma(settings, lambda: service.store.client)
    index = check_index(client, settings, service.embeddings)
    model = describe_model(service.embeddings, "loaded")
    return _report([index, model, chroma, check_state(settings), check_sources(settings)])
