"""All settings, read once from the environment or `.env` (see `.env.example`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

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
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- corpus and storage -------------------------------------------------
    corpus_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [BUNDLED_CORPUS_DIR],
        validation_alias=AliasChoices("TALKS_CORPUS_DIR", "corpus_dirs"),
    )
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("TALKS_DATA_DIR", "data_dir"))
    collection_name: str = Field(
        "talks", validation_alias=AliasChoices("TALKS_COLLECTION", "collection_name")
    )
    chroma_host: str | None = Field(None, validation_alias=AliasChoices("CHROMA_HOST", "chroma_host"))
    chroma_port: int = Field(8000, validation_alias=AliasChoices("CHROMA_PORT", "chroma_port"))

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
    max_question_chars: int = Field(
        1000, validation_alias=AliasChoices("TALKS_MAX_QUESTION_CHARS", "max_question_chars")
    )

    # --- logging ------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=AliasChoices("TALKS_LOG_LEVEL", "log_level"))

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

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def state_db_path(self) -> Path:
        return self.data_dir / "state.sqlite3"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
