"""Fixtures of the text-encoder tests: the packaged MiniLM and tiny random encoders saved to disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from av_model.text import TextEncoder, load_text_encoder, resolve_encoder_path

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    return load_text_encoder("minilm")


def _save_tiny(folder: Path, model: torch.nn.Module) -> Path:
    """Save `model` with the packaged MiniLM's tokenizer files (its vocabulary fits the tiny models)."""
    model.save_pretrained(folder)
    source = resolve_encoder_path("minilm")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny_bert"), BertModel(cfg))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import T5Config, T5Model

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2)
    # A full encoder-decoder on disk: the loader must keep only the encoder.
    return _save_tiny(tmp_path_factory.mktemp("tiny_t5"), T5Model(cfg))
