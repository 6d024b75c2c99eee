"""The article: what every loader produces and everything downstream consumes."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

Language = Literal["ar", "en"]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Article(BaseModel):
    """One clean article. `text` is normalised; citations quote it verbatim."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id: derived from the url when there is one, else from the source name.")
    source_name: str = Field(description="The file name or URL the article came from.")
    title: str
    url: str | None = None
    published: date | None = None
    lang: Language
    source: str | None = Field(None, description="Publisher or site name.")
    text: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def content_hash(self) -> str:
        return content_hash(f"{self.title}\n{self.text}")


class LoadError(BaseModel):
    """A file that could not be read or parsed; reported, then skipped."""

    path: str
    reason: str


class CorpusLoad(BaseModel):
    articles: list[Article]
    errors: list[LoadError]
