"""Answer quality on a QA file: retrieval hits, fact recall, citation validity, declines."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from corpus.models import Article
from retrieval.answering import Answer, adjusted_evidence, citation_problems
from retrieval.lexical import normalize_arabic


class QAItem(BaseModel):
    id: str
    question: str
    lang: str
    answer_facts: list[str] = []
    source_files: list[str] = []
    article_ids: list[str] = []
    unanswerable: bool = False


class QARecord(BaseModel):
    """One question's outcome, as written by `talks eval --json`."""

    id: str
    question: str
    lang: str
    split: str  # same-language | cross-language | unanswerable
    retrieved_article_ids: list[str]
    retrieved_source_files: list[str]
    hit_rank: int | None
    answered: bool
    answer: str
    citations: list[dict]
    fact_recall: float | None
    citation_problems: list[str]
    evidence: float
    evidence_by_language: dict[str, float]


class Metrics(BaseModel):
    questions: int
    hit_at_1: float | None = Field(None, alias="hit@1")
    hit_at_5: float | None = Field(None, alias="hit@5")
    mrr: float | None = None
    fact_recall: float | None = None
    citation_validity: float | None = None
    decline_accuracy: float | None = None

    model_config = {"populate_by_name": True}


class QAFileError(ValueError):
    """The QA file is missing or has a malformed line."""


def load_qa(path: Path) -> list[QAItem]:
    if not path.is_file():
        raise QAFileError(f"QA file not found: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(QAItem.model_validate_json(line))
        except ValidationError as exc:
            raise QAFileError(f"{path} line {number}: {exc.errors()[0]['msg']}") from exc
    return items


def _folded(text: str) -> str:
    return " ".join(normalize_arabic(text.lower()).split())


def fact_recall(answer: str, facts: Sequence[str]) -> float:
    """Share of facts found in the answer; a fact may list variants as `a | b`."""
    if not facts:
        return 1.0
    folded = _folded(answer)
    found = sum(any(_folded(v) in folded for v in fact.split("|") if v.strip()) for fact in facts)
    return found / len(facts)


def evaluate_item(item: QAItem, answer: Answer, articles: dict[str, Article]) -> QARecord:
    ranked_ids: list[str] = []
    ranked_files: list[str] = []
    for ref in answer.retrieved:
        if ref.article_id not in ranked_ids:
            ranked_ids.append(ref.article_id)
            ranked_files.append(Path(ref.source_name.split("#")[0]).name)
    hit_rank = next(
        (rank for rank, article_id in enumerate(ranked_ids, start=1) if _is_expected(item, articles.get(article_id))),
        None,
    )
    source_langs = {a.lang for a in articles.values() if _is_expected(item, a)}
    if item.unanswerable:
        split = "unanswerable"
    else:
        split = "same-language" if item.lang in source_langs else "cross-language"
    return QARecord(
        id=item.id,
        question=item.question,
        lang=item.lang,
        split=split,
        retrieved_article_ids=ranked_ids,
        retrieved_source_files=ranked_files,
        hit_rank=None if item.unanswerable else hit_rank,
        answered=answer.answered,
        answer=answer.answer,
        citations=[c.model_dump(exclude={"passage"}) for c in answer.citations],
        fact_recall=None if item.unanswerable else fact_recall(answer.answer if answer.answered else "", item.answer_facts),
        citation_problems=citation_problems(answer, {a: art.text for a, art in articles.items()}),
        evidence=answer.evidence,
        evidence_by_language=answer.evidence_by_language,
    )


def _is_expected(item: QAItem, article: Article | None) -> bool:
    if article is None:
        return False
    file_name = Path(article.source_name.split("#")[0]).name
    return article.id in item.article_ids or file_name in item.source_files


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def summarize(records: Sequence[QARecord]) -> Metrics:
    answerable = [r for r in records if r.split != "unanswerable"]
    with_answer = [r for r in records if r.answered]
    return Metrics(
        questions=len(records),
        hit_at_1=_mean([float(r.hit_rank == 1) for r in answerable]),
        hit_at_5=_mean([float(r.hit_rank is not None and r.hit_rank <= 5) for r in answerable]),
        mrr=_mean([1 / r.hit_rank if r.hit_rank else 0.0 for r in answerable]),
        fact_recall=_mean([r.fact_recall for r in answerable if r.fact_recall is not None]),
        citation_validity=_mean([float(not r.citation_problems) for r in with_answer]),
        decline_accuracy=_mean([float(r.answered == (r.split != "unanswerable")) for r in records]),
    )


def summarize_by_split(records: Sequence[QARecord]) -> dict[str, Metrics]:
    splits = {"overall": list(records)}
    for record in records:
        splits.setdefault(record.split, []).append(record)
    return {name: summarize(group) for name, group in splits.items()}


def run_eval(
    items: Sequence[QAItem], ask: Callable[[str], Answer], articles: Sequence[Article]
) -> list[QARecord]:
    by_id = {article.id: article for article in articles}
    return [evaluate_item(item, ask(item.question), by_id) for item in items]


def write_records(records: Sequence[QARecord], path: Path) -> None:
    path.write_text("".join(json.dumps(r.model_dump(), ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


class Calibration(BaseModel):
    threshold: float
    cross_language_offset: float
    decline_accuracy: float


CROSS_LANGUAGE_OFFSETS = [round(0.005 * i, 3) for i in range(17)]  # 0 .. 0.08


def _best_threshold(answerable: list[float], unanswerable: list[float]) -> tuple[float, float]:
    """(accuracy, threshold); among equally good thresholds, the middle one."""
    values = sorted(set(answerable + unanswerable))
    candidates = [(a + b) / 2 for a, b in zip(values, values[1:])] or values
    total = max(1, len(answerable) + len(unanswerable))

    def accuracy(threshold: float) -> float:
        return (sum(e >= threshold for e in answerable) + sum(e < threshold for e in unanswerable)) / total

    best = max(accuracy(t) for t in candidates)
    tied = [t for t in candidates if accuracy(t) == best]
    return best, tied[len(tied) // 2]


def calibrate_threshold(records: Sequence[QARecord]) -> Calibration:
    """The decline threshold and cross-language offset that best separate answerable from
    unanswerable questions (the smallest offset among equals).

    The records must come from a run that answered everything, so each has its evidence.
    """
    best: Calibration | None = None
    for offset in CROSS_LANGUAGE_OFFSETS:
        evidence = {r.id: adjusted_evidence(r.evidence_by_language, r.lang, offset) for r in records}
        accuracy, threshold = _best_threshold(
            [evidence[r.id] for r in records if r.split != "unanswerable"],
            [evidence[r.id] for r in records if r.split == "unanswerable"],
        )
        if best is None or accuracy > best.decline_accuracy:
            best = Calibration(threshold=round(threshold, 4), cross_language_offset=offset, decline_accuracy=round(accuracy, 3))
    assert best is not None
    return best
