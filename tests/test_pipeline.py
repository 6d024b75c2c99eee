"""End to end with the real e5 model and real Chroma: index, retrieve, answer, cite, decline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_settings
from corpus.loaders import load_corpus
from retrieval.answering import citation_problems
from retrieval.embeddings import SentenceTransformerEmbeddings
from retrieval.retriever import HybridRetriever
from retrieval.service import Exchange, QuestionError, TalksService, standalone_query
from retrieval.store import ModelMismatchError, NoIndexError, PassageStore, chroma_client
from talks.settings import BUNDLED_CORPUS_DIR

SEED = "000_a126dbe46f937833.txt"


def source_file(service: TalksService, article_id: str) -> str:
    return next(a.source_name for a in service.articles() if a.id == article_id)


def assert_citations_check_out(service: TalksService, answer) -> None:
    texts = {a.id: a.text for a in load_corpus(service.settings.corpus_dirs).articles}
    assert citation_problems(answer, texts) == []
    assert answer.cited_numbers(), "an answer cites its passages"


def test_the_built_model_embeds_like_e5(service: TalksService) -> None:
    embeddings = service.embeddings
    assert embeddings.name == "intfloat/multilingual-e5-small"
    assert embeddings.dimension == 384
    query = np.asarray(embeddings.embed_query("How long did the Geneva talks last?"))
    passages = embeddings.encode_passages(
        ["The talks in Geneva lasted almost eight hours.", "استمرت المحادثات في جنيف نحو ثماني ساعات.", "Add two eggs to the flour."]
    )
    english, arabic, recipe = passages @ query
    assert english > recipe + 0.05 and arabic > recipe + 0.05
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-4)


def test_a_model_built_by_root_is_readable_by_the_bots_user(tmp_path: Path) -> None:
    """Docker and systemd build the model as root and run the bot as another user."""
    from retrieval.model_build import build_e5_small

    built = build_e5_small(tmp_path / "e5")
    assert {path.name: path.stat().st_mode & 0o444 for path in built.iterdir() if path.is_file()} == {
        path.name: 0o444 for path in built.iterdir() if path.is_file()
    }


def test_arabic_question_gets_a_cited_arabic_answer(service: TalksService) -> None:
    answer = service.ask("ماذا قال ريابكوف عن أوكرانيا؟")
    assert answer.answered and answer.language == "ar"
    assert "خطط لمهاجمة أوكرانيا" in answer.answer
    assert_citations_check_out(service, answer)


def test_english_question_on_english_articles(service: TalksService) -> None:
    answer = service.ask("Who was Russia's envoy at the OSCE Permanent Council?")
    assert answer.answered and answer.language == "en"
    assert "Lukashevich" in answer.answer
    assert source_file(service, answer.citations[0].article_id) == "osce_vienna_2022-01-13.md"
    assert_citations_check_out(service, answer)


def test_cross_language_question_retrieves_the_arabic_passage(service: TalksService) -> None:
    answer = service.ask("How long did the Sherman-Ryabkov talks in Geneva last?")
    assert answer.answered
    retrieved_files = [source_file(service, ref.article_id) for ref in answer.retrieved]
    assert SEED in retrieved_files[:3]
    assert_citations_check_out(service, answer)


@pytest.mark.parametrize("question", ["Who won the 2022 World Cup final?", "كيف أحضّر الكبسة بالدجاج؟"])
def test_off_topic_questions_are_declined_in_their_language(service: TalksService, question: str) -> None:
    answer = service.ask(question)
    assert not answer.answered and answer.citations == []
    assert ("don't say" in answer.answer) == (answer.language == "en")


def test_follow_up_uses_the_last_question(service: TalksService) -> None:
    history = [Exchange(question="What did Stoltenberg say after the NATO-Russia Council?")]
    assert standalone_query("and what about Grushko?", history).startswith("What did Stoltenberg")
    assert standalone_query("Who chaired the OSCE in January 2022?", history) == "Who chaired the OSCE in January 2022?"
    answer = service.ask("and what did Grushko say?", history=history)
    assert answer.answered and answer.question == "and what did Grushko say?"


@pytest.mark.parametrize("question", ["", "   ", "x" * 5000])
def test_bad_questions_are_refused(service: TalksService, question: str) -> None:
    with pytest.raises(QuestionError):
        service.ask(question)


def test_json_shape_timings_and_retrieved(service: TalksService) -> None:
    answer = service.ask("When did Russia publish its draft treaties?", k=3)
    assert len(answer.retrieved) == 3
    assert {"language", "passages", "answer", "total"} <= set(answer.timings_ms)
    assert answer.prompts == {"extractive": 1}


def test_incremental_index_and_model_stamp(model_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS_DIR, corpus)
    settings = make_settings(tmp_path / "data", [corpus])
    talks = TalksService(settings)
    with pytest.raises(NoIndexError):
        talks.ask("ماذا قال ريابكوف؟")

    first = talks.index()
    assert (first.articles_added, first.chunks_removed) == (1, 0) and first.chunks_added > 0
    again = talks.index()
    assert (again.chunks_added, again.chunks_removed, again.chunks_unchanged) == (0, 0, first.chunks_added)

    note = corpus / "note.md"
    note.write_text("---\ntitle: Short note\nlang: en\ndate: 2022-01-14\n---\nThe OSCE meeting in Vienna ended on 13 January without agreement.\n")
    added = talks.index()
    assert added.articles_added == 1 and added.new_article_ids and added.chunks_unchanged == first.chunks_added
    assert talks.ask("Did the OSCE meeting in Vienna end with an agreement?").answered

    note.write_text(note.read_text().replace("without agreement", "with no agreement at all"))
    updated = talks.index()
    assert (updated.articles_updated, updated.chunks_added, updated.chunks_removed) == (1, 1, 1)

    note.unlink()
    removed = talks.index()
    assert removed.articles_removed == 1 and removed.chunks_removed == 1
    assert talks.stats().articles == 1

    full = talks.index(full=True)
    assert full.chunks_added == first.chunks_added and full.chunks_unchanged == 0

    # The index remembers its model: opening it with another model is a clear error.
    other = SentenceTransformerEmbeddings(str(model_dir))
    other.name = "some-other-model"
    with pytest.raises(ModelMismatchError, match="talks index --full"):
        PassageStore(chroma_client(settings), settings.collection_name, other).vectorstore()


def test_a_bad_file_is_reported_and_the_rest_index(model_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS_DIR, corpus)
    (corpus / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody")
    report = TalksService(make_settings(tmp_path / "data", [corpus])).index()
    assert report.articles == 1
    assert [Path(e.path).name for e in report.errors] == ["broken.md"]


def test_hybrid_retrieval_fuses_bm25_over_normalised_arabic(service: TalksService) -> None:
    hybrid = HybridRetriever(store=service.store, k=5, hybrid=True)
    assert "Lukashevich" in hybrid.passages("Lukashevich")[0].chunk.text
    # Spelled without hamza: BM25 folds the forms, so the passage is still found.
    assert any("الإستراتيجي" in p.chunk.text for p in hybrid.passages("الحوار الاستراتيجي"))


def test_the_retriever_is_a_langchain_retriever(service: TalksService) -> None:
    documents = service.retriever.invoke("Who chaired the OSCE in January 2022?")
    assert [d.metadata["rank"] for d in documents] == list(range(1, len(documents) + 1))
    assert all(d.page_content and 0 < d.metadata["score"] <= 1 for d in documents)
