"""The answer chain in LCEL: question -> language -> passages -> cited answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from corpus.text import detect_language
from retrieval.answering import Answer, Answerer, RetrievedRef
from retrieval.retriever import HybridRetriever, Passage


def _timed(step: str, function: Callable[[dict[str, Any]], Any]) -> Runnable:
    """Run `function` on the chain state; record its duration under timings[step]."""

    def run(state: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        value = function(state)
        timings = {**state.get("timings", {}), step: round((time.perf_counter() - started) * 1000, 1)}
        return {**state, step: value, "timings": timings}

    return RunnableLambda(run, name=step)


def complete_answer(
    answer: Answer, *, question: str, passages: Sequence[Passage], timings: dict[str, float]
) -> Answer:
    """The answer to the question as asked (not the rewritten query), with what was retrieved
    and the steps' timings (used by the chain and by `TalksService.astream`)."""
    return answer.model_copy(
        update={
            "question": question,
            "timings_ms": {**timings, "total": round(sum(timings.values()), 1)},
            "retrieved": [
                RetrievedRef(
                    rank=p.rank,
                    chunk_id=p.chunk.id,
                    article_id=p.chunk.article_id,
                    source_name=p.chunk.source_name,
                    score=p.score,
                )
                for p in passages
            ],
        }
    )


def _finish(state: dict[str, Any]) -> Answer:
    return complete_answer(
        state["answer"], question=state["question"], passages=state["passages"], timings=state["timings"]
    )


def build_answer_chain(retriever: HybridRetriever, answerer: Answerer) -> Runnable[dict[str, Any], Answer]:
    """Input: {"question": str, "query": str (retrieval query; defaults to the question), "k": int | None}."""
    return (
        RunnablePassthrough()
        | _timed("language", lambda s: detect_language(s["question"]))
        | _timed("passages", lambda s: retriever.passages(s.get("query") or s["question"], s.get("k")))
        | _timed("answer", lambda s: answerer.answer(s.get("query") or s["question"], s["language"], s["passages"]))
        | RunnableLambda(_finish, name="finish")
    ).with_config(run_name="talks_answer")
