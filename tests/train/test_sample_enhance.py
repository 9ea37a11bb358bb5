"""`avgen sample --enhance-prompt`: the sidecar keeps the prompt as given and as rewritten; bad paths are explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from av_model.sample.cli import main
from av_model.text.enhance import TemplateEnhancer

from .conftest import Encoders


def _args(trained: Path, enc: Encoders, out: Path, *extra: str) -> list[str]:
    return ["--ckpt", str(trained / "final.ckpt"), "--codec", str(enc.codec_path), "--vae", str(enc.vae_path),
            "--out", str(out), "--duration", "1.0", "--steps", "2", "--device", "cpu", *extra]


def test_the_template_enhancer_is_recorded_with_both_prompts(trained: Path, encoders: Encoders, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clips"
    assert main(_args(trained, encoders, out, "--prompt", "red ball bouncing", "--enhance-prompt", "template")) == 0
    side = json.loads((out / "0000.json").read_text())
    assert side["prompt"] == "red ball bouncing"
    assert side["prompt_enhanced"] == TemplateEnhancer().rewrite(["red ball bouncing"])[0]
    assert side["prompt_enhancer"] == "template"
    # A rerun with the same enhancer keeps the clip; without it, the clip is made again.
    assert main(_args(trained, encoders, out, "--prompt", "red ball bouncing", "--enhance-prompt", "template")) == 0
    assert "1 of 1 clips already made" in capsys.readouterr().err
    assert main(_args(trained, encoders, out, "--prompt", "red ball bouncing")) == 0
    side = json.loads((out / "0000.json").read_text())
    assert "prompt_enhanced" not in side and side["prompt"] == "red ball bouncing"


def test_a_local_language_model_enhancer(trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path / "lm"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TemplateEnhancer().rewrite(["red ball bouncing", "pendulum"]), vocab_size=280,
                            min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=16, n_layer=1, n_head=2)).save_pretrained(
        folder)
    tok.save_pretrained(folder)
    out = tmp_path / "clips"
    assert main(_args(trained, encoders, out, "--prompt", "red ball", "--enhance-prompt", str(folder))) == 0
    side = json.loads((out / "0000.json").read_text())
    assert side["prompt"] == "red ball" and side["prompt_enhancer"] == str(folder)
    assert isinstance(side["prompt_enhanced"], str) and side["prompt_enhanced"]


def test_a_missing_language_model_is_explained_before_loading(trained: Path, encoders: Encoders, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(_args(trained, encoders, tmp_path / "clips", "--prompt", "a ball", "--enhance-prompt",
                    str(tmp_path / "no_lm")))
    err = capsys.readouterr().err
    assert rc == 1 and "no_lm: no such folder; give 'template'" in err
    assert not (tmp_path / "clips").exists()
