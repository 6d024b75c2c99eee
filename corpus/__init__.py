"""The article corpus: loading files into clean `Article`s (see `corpus.loaders`, `corpus.text`)."""

from corpus.loaders import (
    ArticleParseError,
    article_from_html,
    article_from_record,
    load_corpus,
    load_file,
    parse_article_text,
    parse_markdown,
)
from corpus.models import Article, CorpusLoad, LoadError
from corpus.text import detect_language, normalize_text, stable_article_id

__all__ = [
    "Article",
    "ArticleParseError",
    "CorpusLoad",
    "LoadError",
    "article_from_html",
    "article_from_record",
    "detect_language",
    "load_corpus",
    "load_file",
    "normalize_text",
    "parse_article_text",
    "parse_markdown",
    "stable_article_id",
]
