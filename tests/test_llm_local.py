"""TALKS_LLM=local: a GGUF model run in-process by llama-cpp-python (the `local` extra).

The configuration errors run everywhere. The real path runs where llama-cpp-python is
installed (`pip install -e '.[local,test]'`): on TALKS_TEST_GGUF if set, else on a tiny GGUF
written here with the `gguf` package — a one-layer llama whose attention and feed-forward
weights are zero, so each next token depends on the current one only (a bigram table). It
answers every question with the same English sentence, citing passage 1 and passage 9 (which
does not exist), so the checks the answerer applies to a real model's reply can be asserted.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import make_settings

from retrieval.answerers import AnswererConfigError, astream_answer, build_answerer
from retrieval.answering import Answer, citation_problems
from retrieval.llm import LLMAnswerer
from retrieval.prompts import load_prompt

EN_QUESTION = "What did Ryabkov say about Ukraine?"
AR_QUESTION = "ماذا قال ريابكوف عن أوكرانيا؟"
# What the tiny model writes, token by token ("▁" is SentencePiece's space).
TINY_REPLY = ["▁Russia", "▁has", "▁no", "▁plans", "▁to", "▁attack", "▁Ukraine", "▁[1]", "▁[9]", "."]
LLAMA_CPP_INSTALLED = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(
    not LLAMA_CPP_INSTALLED, reason="llama-cpp-python (the `local` extra) is not installed"
)


def local_settings(service, **overrides: object):
    return make_settings(service.settings.data_dir, service.settings.corpus_dirs, llm="local", **overrides)


# --- configuration errors --------------------------------------------------------------


def test_local_needs_a_model_path(service) -> None:
    with pytest.raises(AnswererConfigError, match="TALKS_LLM=local needs TALKS_LLM_MODEL_PATH"):
        build_answerer(local_settings(service), service.embeddings)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_local_model_path_must_be_a_file(service, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.gguf"
    if kind == "folder":
        path.mkdir()
    with pytest.raises(AnswererConfigError, match=f"TALKS_LLM_MODEL_PATH={path} is not a file"):
        build_answerer(local_settings(service, llm_model_path=path), service.embeddings)


@pytest.mark.skipif(LLAMA_CPP_INSTALLED, reason="llama-cpp-python is installed here")
def test_local_without_the_extra_says_how_to_install_it(service, tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(AnswererConfigError, match=r"needs the `local` extra: pip install -e '\.\[local\]'"):
        build_answerer(local_settings(service, llm_model_path=path), service.embeddings)


@needs_llama_cpp
def test_local_rejects_a_file_that_is_not_gguf(service, tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("not a model", encoding="utf-8")
    with pytest.raises(AnswererConfigError, match="could not be loaded as a GGUF model"):
        build_answerer(local_settings(service, llm_model_path=path), service.embeddings)


# --- a real GGUF model -----------------------------------------------------------------


def write_bigram_gguf(path: Path, reply: list[str]) -> None:
    """A llama GGUF that writes `reply` after any prompt, then stops.

    Embeddings are one-hot and every block adds zero, so the final hidden state is the current
    token's one-hot vector (scaled by the RMS norm) and `output.weight` is a next-token table:
    each reply token leads to the next, the last to end-of-text, every other token to the first.
    """
    import numpy as np
    from gguf import GGUFWriter, TokenType

    specials = [("<unk>", TokenType.UNKNOWN), ("<s>", TokenType.CONTROL), ("</s>", TokenType.CONTROL)]
    specials += [("<|im_start|>", TokenType.CONTROL), ("<|im_end|>", TokenType.CONTROL)]
    tokens = specials + [(f"<0x{b:02X}>", TokenType.BYTE) for b in range(256)] + [(t, TokenType.NORMAL) for t in reply]
    vocab, eos, first_reply = len(tokens), 2, len(tokens) - len(reply)
    width, heads, ff = 64 * -(-vocab // 64), 4, 64  # one-hot needs width >= vocabulary

    next_token = np.full(vocab, first_reply)
    next_token[first_reply:] = [*range(first_reply + 1, vocab), eos]
    output = np.zeros((vocab, width), np.float32)
    output[next_token, np.arange(vocab)] = 1.0

    writer = GGUFWriter(path, "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(width)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(width // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([text for text, _ in tokens])
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_types([int(kind) for _, kind in tokens])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(eos)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    )
    writer.add_tensor("token_embd.weight", np.eye(vocab, width, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(width, np.float32))
    writer.add_tensor("output.weight", output)
    for name in ("attn_norm", "ffn_norm"):
        writer.add_tensor(f"blk.0.{name}.weight", np.ones(width, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", np.zeros((width, width), np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", np.zeros((ff, width), np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((ff, width), np.float32))
    writer.add_tensor("blk.0.ffn_down.weight", np.zeros((width, ff), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """The GGUF to run, and whether it is the tiny one (whose reply is known)."""
    if not LLAMA_CPP_INSTALLED:
        pytest.skip("llama-cpp-python (the `local` extra) is not installed")
    if given := os.environ.get("TALKS_TEST_GGUF"):
        return Path(given), False
    pytest.importorskip("gguf", reason="writing the tiny GGUF needs the `gguf` package (or set TALKS_TEST_GGUF)")
    path = tmp_path_factory.mktemp("gguf") / "bigram.gguf"
    write_bigram_gguf(path, TINY_REPLY)
    return path, True


@pytest.fixture(scope="module")
def local_answerer(service, gguf_model: tuple[Path, bool]) -> LLMAnswerer:
    # 8192: the tiny model's vocabulary has no words, so the prompt is one token per byte.
    answerer = build_answerer(
        local_settings(service, llm_model_path=gguf_model[0], llm_context_tokens=8192), service.embeddings
    )
    assert isinstance(answerer, LLMAnswerer)
    return answerer


@pytest.fixture(scope="module")
def article_texts(service) -> dict[str, str]:
    from corpus.loaders import load_corpus

    return {article.id: article.text for article in load_corpus(service.settings.corpus_dirs).articles}


def test_local_answer_is_checked_like_any_model(service, local_answerer, gguf_model, article_texts) -> None:
    passages = service.retriever.passages(EN_QUESTION, k=3)
    answer = local_answerer.answer(EN_QUESTION, "en", passages)
    assert answer.backend == f"local:{gguf_model[0].name}"
    assert local_answerer.structured is False  # ChatLlamaCpp: plain text with [n] markers
    assert citation_problems(answer, article_texts) == []
    if gguf_model[1]:
        # [9] names no passage (three were given) and is dropped; [1] is kept, with a verbatim quote.
        assert answer.answer == "Russia has no plans to attack Ukraine [1]."
        assert answer.note is None
        assert [c.chunk_id for c in answer.citations] == [passages[0].chunk.id]


async def test_local_answer_streams(service, local_answerer, gguf_model, article_texts) -> None:
    passages = service.retriever.passages(EN_QUESTION, k=3)
    updates = [update async for update in astream_answer(local_answerer, EN_QUESTION, "en", passages)]
    drafts, final = updates[:-1], updates[-1]
    assert isinstance(final, Answer) and all(isinstance(d, str) for d in drafts)
    assert citation_problems(final, article_texts) == []
    if gguf_model[1]:
        assert drafts[-1].strip() == "Russia has no plans to attack Ukraine [1] [9]."
        assert final.answer == "Russia has no plans to attack Ukraine [1]."


def test_local_reply_in_the_wrong_language_falls_back(service, local_answerer, gguf_model) -> None:
    if not gguf_model[1]:
        pytest.skip("needs the tiny model, which answers in English whatever it is asked")
    passages = service.retriever.passages(AR_QUESTION, k=3)
    answer = local_answerer.answer(AR_QUESTION, "ar", passages)
    assert answer.note == load_prompt("llm_notes")["wrong_language"]["ar"]
    assert answer.backend == "extractive"
    assert answer.citations
