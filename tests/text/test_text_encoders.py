"""Text encoders: the packaged MiniLM offline, local encoders, several at once, the cache, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from av_model.text import (
    CachedTextEncoder,
    HFTextEncoder,
    TextBatch,
    TextEncoder,
    TextEncoderError,
    load_text_encoder,
)
from av_model.text.cli import main as text_cli

PROMPTS = ["a red ball bounces off the left wall", "two squares collide and a bell rings", "silence"]


def test_minilm_loads_offline_and_encodes_per_token(minilm: TextEncoder) -> None:
    assert minilm.dims == (384,)
    batch = minilm.encode(PROMPTS)
    emb, mask = batch.embeddings[0], batch.masks[0]
    assert emb.shape[:2] == mask.shape and emb.shape[0] == 3 and emb.shape[2] == 384
    lengths = mask.sum(1)
    assert lengths[0] > lengths[2] > 0  # the long prompt has more tokens than "silence"
    assert torch.all(emb[2, lengths[2]:] == 0)  # padding rows are zero
    assert not emb.requires_grad


def test_minilm_is_frozen_and_deterministic(minilm: TextEncoder) -> None:
    inner = minilm.encoder if isinstance(minilm, CachedTextEncoder) else minilm
    assert isinstance(inner, HFTextEncoder)
    assert not inner.model.training
    assert all(not p.requires_grad for p in inner.model.parameters())
    fresh = inner.encode(PROMPTS[:1])  # bypasses the cache
    cached = minilm.encode(PROMPTS[:1])
    torch.testing.assert_close(fresh.embeddings[0], cached.embeddings[0], atol=1e-5, rtol=1e-5)


def test_similar_prompts_get_similar_embeddings(minilm: TextEncoder) -> None:
    b = minilm.encode(["a red ball bounces", "a red ball is bouncing", "quarterly tax report"])
    pooled = (b.embeddings[0].sum(1) / b.masks[0].sum(1, keepdim=True))
    sim = torch.nn.functional.cosine_similarity(pooled[:, None], pooled[None], dim=-1)
    assert sim[0, 1] > sim[0, 2] + 0.1


def test_memory_and_disk_cache(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = load_text_encoder(str(tiny_bert_dir), cache_dir=tmp_path)
    assert isinstance(enc, CachedTextEncoder)
    first = enc.encode(PROMPTS)
    assert enc.misses == 3
    again = enc.encode(PROMPTS[::-1])
    assert enc.misses == 3 and enc.hits == 3
    torch.testing.assert_close(again.embeddings[0][2], first.embeddings[0][0])
    files = list((tmp_path / enc.fingerprint).rglob("*.safetensors"))
    assert len(files) == 3
    # A fresh process (no memory cache) reads the disk cache instead of encoding.
    other = load_text_encoder(str(tiny_bert_dir), cache_dir=tmp_path, memory_items=0)
    torch.testing.assert_close(other.encode(PROMPTS).embeddings[0], first.embeddings[0])
    assert other.misses == 0
    # A prompt's embedding does not depend on the other prompts of its batch.
    alone = load_text_encoder(str(tiny_bert_dir)).encode(PROMPTS[2:])
    n = int(alone.masks[0].sum())
    torch.testing.assert_close(alone.embeddings[0][0, :n], first.embeddings[0][2, :n])


def test_fingerprint_follows_the_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import BertModel

    a = load_text_encoder(str(tiny_bert_dir)).fingerprint
    assert load_text_encoder(str(tiny_bert_dir)).fingerprint == a
    # the same files in another folder (another venv, cache or machine) are the same encoder
    moved = tmp_path / "elsewhere" / "minilm"
    moved.mkdir(parents=True)
    for f in tiny_bert_dir.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    assert load_text_encoder(str(moved)).fingerprint == a
    changed = tmp_path / "changed"
    model = BertModel.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[5] += 1.0
    model.save_pretrained(changed)
    for f in tiny_bert_dir.iterdir():
        if not (changed / f.name).exists():
            (changed / f.name).write_bytes(f.read_bytes())
    assert load_text_encoder(str(changed)).fingerprint != a
    assert load_text_encoder(str(tiny_bert_dir), max_length=16).fingerprint != a


def test_several_encoders_stay_separate(tiny_bert_dir: Path, tiny_t5_dir: Path) -> None:
    enc = load_text_encoder([str(tiny_bert_dir), str(tiny_t5_dir)])
    assert enc.dims == (32, 16)
    batch = enc.encode(PROMPTS[:2])
    assert len(batch.embeddings) == 2 and batch.dims == (32, 16)
    assert type(enc.encoder.encoders[1].model).__name__ == "T5EncoderModel"  # the decoder is not loaded


def test_unknown_encoder_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match="unknown text encoder 'no-such/encoder'.*local Hugging Face cache"):
        load_text_encoder("no-such/encoder")
    with pytest.raises(TextEncoderError, match="has no config.json"):
        load_text_encoder(str(tmp_path))


def test_bad_prompts(tiny_bert_dir: Path) -> None:
    enc = load_text_encoder(str(tiny_bert_dir))
    with pytest.raises(TypeError, match="list of prompts"):
        enc.encode("one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty list"):
        enc.encode([])
    batch = enc.encode([""])  # an empty caption still has its special tokens
    assert batch.masks[0].sum() >= 1


def test_text_batch_operations() -> None:
    a = TextBatch((torch.ones(2, 3, 4),), (torch.ones(2, 3, dtype=torch.bool),))
    b = TextBatch((torch.ones(1, 5, 4) * 2,), (torch.ones(1, 5, dtype=torch.bool),))
    c = TextBatch.cat([a, b])
    assert c.embeddings[0].shape == (3, 5, 4) and c.masks[0].sum() == 2 * 3 + 5
    assert torch.all(c.embeddings[0][0, 3:] == 0)
    assert c.index(2).embeddings[0].shape == (1, 5, 4) and c.index([0, 2]).batch_size == 2
    null = c.null_like()
    assert not null.masks[0].any() and null.embeddings[0].abs().sum() == 0
    dropped = c.drop(torch.tensor([True, False, False]))
    assert not dropped.masks[0][0].any() and dropped.masks[0][1].any()
    with pytest.raises(ValueError, match="masks"):
        TextBatch((torch.ones(2, 3, 4),), (torch.ones(2, 4, dtype=torch.bool),))
    with pytest.raises(ValueError, match="different encoders"):
        TextBatch.cat([a, TextBatch((torch.ones(1, 2, 8),), (torch.ones(1, 2, dtype=torch.bool),))])


def test_cli_encode_and_list(tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a ball\n\na bell rings\na ball\n")
    cache = tmp_path / "cache"
    args = ["encode", "--encoder", str(tiny_bert_dir), "--prompts-file", str(prompts), "--cache-dir", str(cache)]
    assert text_cli(args) == 0
    assert "2 unique prompts: 2 encoded, 0 already cached" in capsys.readouterr().out
    assert text_cli(args + ["--prompt", "new one"]) == 0
    assert "3 unique prompts: 1 encoded, 2 already cached" in capsys.readouterr().out
    assert text_cli(["encode", "--cache-dir", str(cache)]) == 2
    assert "no prompts" in capsys.readouterr().err
    assert text_cli(["encode", "--encoder", "nope/none", "--prompt", "x", "--cache-dir", str(cache)]) == 2
    assert "unknown text encoder" in capsys.readouterr().err
    assert text_cli(["list"]) == 0
    assert "minilm" in capsys.readouterr().out
