"""Settings: read from the environment, and every one documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from talks.settings import PROJECT_ROOT, Settings


def env_names() -> list[str]:
    return [field.validation_alias.choices[0] for field in Settings.model_fields.values()]  # type: ignore[union-attr]


def test_env_example_lists_every_setting() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    assert set(env_names()) == documented


def test_env_example_parses_to_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    example = tmp_path / ".env"
    example.write_text((PROJECT_ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    from_example = Settings(_env_file=example)
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()  # the example shows the defaults


def test_lists_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKS_CORPUS_DIR", "a, b")
    monkeypatch.setenv("TALKS_ADMIN_IDS", "1, 22")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:s3cr3t-token")
    settings = Settings(_env_file=None)
    assert settings.corpus_dirs == [Path("a"), Path("b")]
    assert settings.admin_ids == [1, 22]
    assert "s3cr3t" not in repr(settings)
