"""Prompt and answer texts, kept as versioned files in `prompts/`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from talks.settings import PROMPTS_DIR


@lru_cache(maxsize=None)
def load_prompt(name: str) -> dict[str, Any]:
    """Load `prompts/<name>.yaml` once; it carries its own `name` and `version`."""
    return yaml.safe_load((PROMPTS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
