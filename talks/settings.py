"""All settings, read once from the environment or `.env` (see `.env.example`)."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROMPTS_DIR = PROJECT_ROOT / "prompts"
BUNDLED_CORPUS_DIR = PROJECT_ROOT / "corpus" / "articles"
BUNDLED_MODEL_DIR = PROJECT_ROOT / "models" / "multilingual-e5-small"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `NAME=` in .env means "use the default"
        extra="ignore",
        populate_by_name=True,
    )

    # --- corpus and storage -------------------------------------------------
    corpus_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [BUNDLED_CORPUS_DIR],
        validation_alias=AliasChoices("TALKS_CORPUS_DIR", "corpus_dirs"),
    )
    data_dir: Path = Field(PROJECT_ROOT / "data", validation_alias=AliasChoices("TALKS_DATA_DIR", "data_dir"))
    collection_name: str = Field(
        "talks", validation_alias=AliasChoices("TALKS_COLLECTION", "collection_name")
    )
    chroma_host: str | None = Field(None, validation_alias=AliasChoices("CHROMA_HOST", "chroma_host"))
    chroma_port: int = Field(8000, validation_alias=AliasChoices("CHROMA_PORT", "chroma_port"))
    chroma_ssl: bool = Field(False, validation_alias=AliasChoices("CHROMA_SSL", "chroma_ssl"))  # https to the server
    chroma_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CHROMA_AUTH_TOKEN", "chroma_auth_token")
    )  # sent with every request to the Chroma server (or the proxy in front of it)
    chroma_auth_header: Literal["Authorization", "X-Chroma-Token"] = Field(
        "Authorization", validation_alias=AliasChoices("CHROMA_AUTH_HEADER", "chroma_auth_header")
    )  # Authorization: "Bearer <token>"; X-Chroma-Token: the token as is
    database_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )  # the bot's state (SQLAlchemy URL, e.g. postgresql://user:pass@host/db); default: SQLite in data_dir

    # --- embeddings ---------------------------------------------------------
    embedding_model: str = Field(
        str(BUNDLED_MODEL_DIR), validation_alias=AliasChoices("TALKS_EMBEDDING_MODEL", "embedding_model")
    )
    query_prompt: str = Field("query: ", validation_alias=AliasChoices("TALKS_QUERY_PROMPT", "query_prompt"))
    passage_prompt: str = Field(
        "passage: ", validation_alias=AliasChoices("TALKS_PASSAGE_PROMPT", "passage_prompt")
    )
    embed_batch_size: int = Field(16, validation_alias=AliasChoices("TALKS_EMBED_BATCH_SIZE", "embed_batch_size"))

    # --- chunking -----------------------------------------------------------
    chunk_max_tokens: int = Field(
        200, validation_alias=AliasChoices("TALKS_CHUNK_MAX_TOKENS", "chunk_max_tokens")
    )
    chunk_overlap_tokens: int = Field(
        40, validation_alias=AliasChoices("TALKS_CHUNK_OVERLAP_TOKENS", "chunk_overlap_tokens")
    )

    # --- retrieval and answering --------------------------------------------
    top_k: int = Field(5, validation_alias=AliasChoices("TALKS_TOP_K", "top_k"))
    # Dense + BM25 fusion: off, as it lowered cross-language hits on our QA set (see README).
    hybrid: bool = Field(False, validation_alias=AliasChoices("TALKS_HYBRID", "hybrid"))
    language_centering: float = Field(
        0.75, validation_alias=AliasChoices("TALKS_LANGUAGE_CENTERING", "language_centering")
    )
    decline_threshold: float = Field(
        0.82, validation_alias=AliasChoices("TALKS_DECLINE_THRESHOLD", "decline_threshold")
    )
    cross_language_offset: float = Field(
        0.04, validation_alias=AliasChoices("TALKS_CROSS_LANGUAGE_OFFSET", "cross_language_offset")
    )
    answer_max_sentences: int = Field(
        3, validation_alias=AliasChoices("TALKS_ANSWER_MAX_SENTENCES", "answer_max_sentences")
    )

    # --- LLM answers (optional) ---------------------------------------------
    llm: str = Field("extractive", validation_alias=AliasChoices("TALKS_LLM", "llm"))
    llm_base_url: str | None = Field(None, validation_alias=AliasChoices("TALKS_LLM_BASE_URL", "llm_base_url"))
    llm_model: str | None = Field(None, validation_alias=AliasChoices("TALKS_LLM_MODEL", "llm_model"))
    llm_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("TALKS_LLM_API_KEY", "llm_api_key"))
    llm_timeout_s: float = Field(30.0, validation_alias=AliasChoices("TALKS_LLM_TIMEOUT", "llm_timeout_s"))
    llm_max_retries: int = Field(1, validation_alias=AliasChoices("TALKS_LLM_MAX_RETRIES", "llm_max_retries"))
    llm_max_tokens: int = Field(512, validation_alias=AliasChoices("TALKS_LLM_MAX_TOKENS", "llm_max_tokens"))
    # Ask for JSON (answer + cited passages) where the server supports it; false: plain text with [n].
    llm_structured: bool = Field(True, validation_alias=AliasChoices("TALKS_LLM_STRUCTURED", "llm_structured"))
    llm_model_path: Path | None = Field(
        None, validation_alias=AliasChoices("TALKS_LLM_MODEL_PATH", "llm_model_path")
    )  # TALKS_LLM=local: the GGUF file llama-cpp-python loads in-process
    llm_context_tokens: int = Field(
        4096, gt=0, validation_alias=AliasChoices("TALKS_LLM_CONTEXT_TOKENS", "llm_context_tokens")
    )  # TALKS_LLM=local: the context window llama.cpp allocates

    # --- Telegram -----------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "telegram_bot_token")
    )
    telegram_api_base_url: str = Field(
        "https://api.telegram.org/bot",
        validation_alias=AliasChoices("TELEGRAM_API_BASE_URL", "telegram_api_base_url"),
    )
    telegram_file_base_url: str = Field(
        "https://api.telegram.org/file/bot",
        validation_alias=AliasChoices("TELEGRAM_FILE_BASE_URL", "telegram_file_base_url"),
    )
    admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("TALKS_ADMIN_IDS", "admin_ids")
    )
    webhook_listen: str = Field("0.0.0.0", validation_alias=AliasChoices("TALKS_WEBHOOK_LISTEN", "webhook_listen"))
    webhook_port: int = Field(8443, validation_alias=AliasChoices("TALKS_WEBHOOK_PORT", "webhook_port"))
    webhook_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TALKS_WEBHOOK_SECRET", "webhook_secret")
    )
    rate_limit_per_minute: int = Field(
        10, validation_alias=AliasChoices("TALKS_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute")
    )
    max_concurrent_answers: int = Field(
        2, gt=0, validation_alias=AliasChoices("TALKS_MAX_CONCURRENT_ANSWERS", "max_concurrent_answers")
    )  # answers computed at once; the rest wait their turn, in order (embedding is CPU-bound: ~ the cores)
    max_question_chars: int = Field(
        1000, validation_alias=AliasChoices("TALKS_MAX_QUESTION_CHARS", "max_question_chars")
    )
    telegram_max_retries: int = Field(
        3, ge=0, validation_alias=AliasChoices("TALKS_TELEGRAM_MAX_RETRIES", "telegram_max_retries")
    )  # retries of a request Telegram refused with 429 (flood control), after its retry_after
    digest_daily_time: time = Field(
        time(9, 0), validation_alias=AliasChoices("TALKS_DIGEST_DAILY_TIME", "digest_daily_time")
    )  # when "/subscribe daily" without a time sends its digest
    digest_timezone: str = Field(
        "UTC", validation_alias=AliasChoices("TALKS_DIGEST_TIMEZONE", "digest_timezone")
    )  # the time zone of daily digest times (an IANA name)
    digest_check_seconds: float = Field(
        60.0, gt=0, validation_alias=AliasChoices("TALKS_DIGEST_CHECK_SECONDS", "digest_check_seconds")
    )  # how often instant digests queued by other processes (the fetcher) are looked for
    digest_lease_seconds: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("TALKS_DIGEST_LEASE_SECONDS", "digest_lease_seconds")
    )  # a claimed digest not marked sent within this time (its worker died) is claimed again;
    # longer than the slowest send (flood-control waits included), or a slow worker's digest is sent twice

    # --- sources: fetching articles over HTTP --------------------------------
    sources_file: Path | None = Field(
        None, validation_alias=AliasChoices("TALKS_SOURCES_FILE", "sources_file")
    )  # default: <data_dir>/sources.yaml
    poll_interval_minutes: float = Field(
        60, gt=0, validation_alias=AliasChoices("TALKS_POLL_INTERVAL_MINUTES", "poll_interval_minutes")
    )
    poll_check_minutes: float = Field(
        5, gt=0, validation_alias=AliasChoices("TALKS_POLL_CHECK_MINUTES", "poll_check_minutes")
    )  # how often the bot polls the sources that are due (fractions allowed, e.g. 0.5)
    source_backoff_max_hours: float = Field(
        24.0, gt=0, validation_alias=AliasChoices("TALKS_SOURCE_BACKOFF_MAX_HOURS", "source_backoff_max_hours")
    )
    fetch_timeout_s: float = Field(20.0, gt=0, validation_alias=AliasChoices("TALKS_FETCH_TIMEOUT", "fetch_timeout_s"))
    fetch_max_bytes: int = Field(
        5_000_000, gt=0, validation_alias=AliasChoices("TALKS_FETCH_MAX_BYTES", "fetch_max_bytes")
    )
    fetch_user_agent: str = Field(
        "talks-bot/0.1 (news monitor for the US-Russia security talks corpus; polite, conditional GET)",
        validation_alias=AliasChoices("TALKS_FETCH_USER_AGENT", "fetch_user_agent"),
    )
    fetch_max_redirects: int = Field(
        5, ge=0, validation_alias=AliasChoices("TALKS_FETCH_MAX_REDIRECTS", "fetch_max_redirects")
    )
    fetch_retries: int = Field(3, ge=0, validation_alias=AliasChoices("TALKS_FETCH_RETRIES", "fetch_retries"))
    fetch_retry_wait_s: float = Field(
        1.0, ge=0, validation_alias=AliasChoices("TALKS_FETCH_RETRY_WAIT", "fetch_retry_wait_s")
    )
    fetch_retry_max_wait_s: float = Field(
        30.0, ge=0, validation_alias=AliasChoices("TALKS_FETCH_RETRY_MAX_WAIT", "fetch_retry_max_wait_s")
    )
    fetch_connections_per_host: int = Field(
        2, gt=0, validation_alias=AliasChoices("TALKS_FETCH_CONNECTIONS_PER_HOST", "fetch_connections_per_host")
    )
    fetch_max_items_per_poll: int = Field(
        50, gt=0, validation_alias=AliasChoices("TALKS_FETCH_MAX_ITEMS_PER_POLL", "fetch_max_items_per_poll")
    )
    near_duplicate_threshold: float = Field(
        0.8, gt=0, le=1, validation_alias=AliasChoices("TALKS_NEAR_DUPLICATE_THRESHOLD", "near_duplicate_threshold")
    )

    # --- logging ------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=AliasChoices("TALKS_LOG_LEVEL", "log_level"))
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=AliasChoices("TALKS_LOG_FORMAT", "log_format")
    )  # json: one JSON object per line, for log collectors

    # --- operations -----------------------------------------------------------
    metrics_port: int | None = Field(
        None, validation_alias=AliasChoices("TALKS_METRICS_PORT", "metrics_port")
    )  # serve /metrics (Prometheus) and /health on this port; unset: no endpoint
    metrics_listen: str = Field(
        "127.0.0.1", validation_alias=AliasChoices("TALKS_METRICS_LISTEN", "metrics_listen")
    )

    @field_validator("corpus_dirs", mode="before")
    @classmethod
    def _corpus_dirs(cls, value: object) -> object:
        # Several folders: comma-separated, or the OS path separator.
        if isinstance(value, str):
            value = value.replace(":", ",")
        return _split_csv(value)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _admin_ids(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("digest_timezone")
    @classmethod
    def _digest_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (e.g. UTC, Europe/Moscow)") from None
        return value

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def state_db_path(self) -> Path:
        return self.data_dir / "state.sqlite3"

    @property
    def state_url(self) -> str:
        """Where the bot's state lives: DATABASE_URL, or SQLite in the data folder."""
        if self.database_url:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.state_db_path}"

    @property
    def sources_path(self) -> Path:
        return self.sources_file or self.data_dir / "sources.yaml"

    @property
    def fetched_dir(self) -> Path:
        """The corpus store: one JSON record per fetched article, indexed with the corpus folders."""
        return self.data_dir / "fetched"

    @property
    def index_dirs(self) -> list[Path]:
        """What `talks index` indexes: the corpus folders, plus the fetched articles once there are any."""
        extra = [self.fetched_dir] if self.fetched_dir.is_dir() and self.fetched_dir not in self.corpus_dirs else []
        return [*self.corpus_dirs, *extra]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
