"""Speed and memory of indexing, retrieval and answering, against plain LangChain Chroma.

    python benchmarks/bench_retrieval.py                 # 1k, 10k, 100k chunks
    python benchmarks/bench_retrieval.py --sizes 1000    # quicker

Real model, real Chroma. The test corpus is indexed for real (index throughput, answer
latency); for scale, the collection is filled with synthetic chunks: real chunk texts with
their real vectors jittered, so search does the same work as over real data.
Prints a Markdown report for the README.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from langchain_chroma import Chroma  # noqa: E402

from retrieval.service import TalksService  # noqa: E402
from talks.settings import BUNDLED_CORPUS_DIR, BUNDLED_MODEL_DIR, Settings  # noqa: E402

QA_FILE = ROOT / "tests" / "data" / "qa.jsonl"
TEST_ARTICLES = ROOT / "tests" / "data" / "articles"


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed_ms(function: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def questions() -> list[str]:
    import json

    return [json.loads(line)["question"] for line in QA_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def fill_synthetic(service: TalksService, size: int, rng: np.random.Generator) -> None:
    """Grow the collection to `size` chunks: copies of real chunks with jittered vectors."""
    collection = service.store.current().collection()
    real = collection.get(include=["embeddings", "documents", "metadatas"])
    vectors = np.asarray(real["embeddings"], dtype=np.float32)
    have = collection.count()
    batch = min(service.store.client.get_max_batch_size(), 5000)
    while have < size:
        n = min(batch, size - have)
        picks = rng.integers(0, len(vectors), n)
        jittered = vectors[picks] + rng.normal(0, 0.02, (n, vectors.shape[1])).astype(np.float32)
        jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
        collection.add(
            ids=[f"synthetic-{have + i}" for i in range(n)],
            embeddings=jittered.tolist(),
            documents=[real["documents"][p] for p in picks],
            metadatas=[real["metadatas"][p] | {"article_id": f"synthetic-{(have + i) // 8}"} for i, p in enumerate(picks)],
        )
        have += n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=30, help="queries per measurement")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    work = Path(tempfile.mkdtemp(prefix="talks-bench-"))
    lines: list[str] = []
    try:
        settings = Settings(
            _env_file=None,
            data_dir=work / "data",
            corpus_dirs=[BUNDLED_CORPUS_DIR, TEST_ARTICLES],
            embedding_model=str(BUNDLED_MODEL_DIR),
        )
        started = time.perf_counter()
        service = TalksService(settings)
        load_s = time.perf_counter() - started
        report = service.index(full=True)
        chunks = report.chunks_added
        lines += [
            f"- model load: {load_s:.1f} s",
            f"- index of the test corpus: {report.articles} articles, {chunks} chunks in {report.seconds:.1f} s "
            f"= {chunks / report.seconds:.1f} chunks/s (chunking + embedding + Chroma writes)",
        ]
        qs = questions()
        retrieval_ms = [t for q in qs for t in timed_ms(lambda: service.retriever.passages(q), 1)]
        answer_ms = [t for q in qs for t in timed_ms(lambda: service.ask(q), 1)]
        lines += [
            "- over the {} QA questions (test corpus): retrieval p50 {:.0f} ms / p95 {:.0f} ms; "
            "full answer p50 {:.0f} ms / p95 {:.0f} ms".format(len(qs), *percentiles(retrieval_ms), *percentiles(answer_ms)),
            "",
            "| chunks | refresh after index (s) | our retrieval p50 / p95 (ms) | full answer p50 / p95 (ms) "
            "| LangChain `Chroma.similarity_search` p50 / p95 (ms) |",
            "|---:|---:|---:|---:|---:|",
        ]
        plain = Chroma(
            client=service.store.client,
            collection_name=service.store.current().collection_name,
            embedding_function=service.embeddings,
        )
        for size in sorted(args.sizes):
            fill_synthetic(service, size, rng)
            started = time.perf_counter()
            service.retriever.refresh()
            refresh_s = time.perf_counter() - started
            sample = [qs[i % len(qs)] for i in range(args.repeat)]
            # Questions never asked before: the query-vector cache would hide the embedding cost.
            ours = [timed_ms(lambda q=q: service.retriever.passages(f"{q} ({size}a)"), 1)[0] for q in sample]
            full = [timed_ms(lambda q=q: service.ask(f"{q} ({size}b)"), 1)[0] for q in sample]
            langchain = [timed_ms(lambda q=q: plain.similarity_search(f"{q} ({size}c)", k=5), 1)[0] for q in sample]
            lines.append(
                "| {:,} | {:.1f} | {:.0f} / {:.0f} | {:.0f} / {:.0f} | {:.0f} / {:.0f} |".format(
                    service.store.current().count(), refresh_s, *percentiles(ours), *percentiles(full), *percentiles(langchain)
                )
            )
        lines += ["", f"- peak memory (RSS) of the whole run: {peak_rss_mb():.0f} MB"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
