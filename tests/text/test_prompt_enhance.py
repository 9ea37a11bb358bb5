"""Prompt enhancers: the caption grammar's parser and template, a tiny local language model, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from av_model.data.synth_scenes import FAMILIES, build_scene, sample_params
from av_model.data.synthetic import SynthConfig
from av_model.text.enhance import (
    CausalLMEnhancer,
    TemplateEnhancer,
    caption_attributes,
    load_enhancer,
    render_caption,
)


def _truth(family: str, params: dict) -> list[dict[str, str]]:
    key = "pitch" if family == "flash" else "material"
    return [{"colour": o["colour"], "shape": o["shape"], "size": o["size"], key: o[key]} for o in params["objects"]]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_parser_reads_every_template_of_the_grammar(family: str) -> None:
    cfg = SynthConfig()
    for seed in range(25):
        rng = np.random.default_rng(seed)
        params = sample_params(family, rng, cfg, "train")
        caption = build_scene(family, params, cfg, rng).caption
        attrs = caption_attributes(caption)
        assert attrs.family == family, caption
        assert attrs.objects == _truth(family, params), caption
        assert attrs.speed == params.get("speed") and attrs.timbre == params.get("timbre"), caption
        if params["template"] == 0:  # the template the enhancer writes, word for word
            assert render_caption(attrs) == caption


@pytest.mark.parametrize("prompt, want", [
    ("red ball bouncing", {"family": "bounce", "colour": ["red"], "shape": ["ball"]}),
    ("a blue square sliding between the walls, fast", {"family": "wall", "colour": ["blue"], "shape": ["square"],
                                                       "speed": "quickly"}),
    ("a large metal diamond on a pendulum", {"family": "pendulum", "shape": ["diamond"], "size": ["large"],
                                             "material": ["metal"]}),
    ("green triangle flashing with a chime", {"family": "flash", "colour": ["green"], "shape": ["triangle"],
                                              "timbre": "chime"}),
    ("two balls bouncing", {"family": "multi", "shape": ["ball", "ball"]}),
    ("red and blue balls bouncing", {"family": "multi", "colour": ["red", "blue"], "shape": ["ball", "ball"]}),
])
def test_the_template_fills_the_missing_attributes_and_keeps_the_given_ones(prompt: str, want: dict) -> None:
    enhancer = TemplateEnhancer()
    (caption,) = enhancer.rewrite([prompt])
    attrs = caption_attributes(caption)
    assert attrs.missing() == []  # complete: every attribute the grammar says is there
    assert render_caption(attrs) == caption  # a sentence of the grammar, parsed back to the same attributes
    assert attrs.family == want["family"]
    for key, value in want.items():
        if key in ("family", "speed", "timbre"):
            assert getattr(attrs, key) == value, caption
        else:
            assert [o[key] for o in attrs.objects] == value, caption
    assert enhancer.rewrite([prompt]) == [caption]  # deterministic
    assert enhancer.rewrite([caption]) == [caption]  # a full caption is kept


def test_different_prompts_get_different_fillings_and_empty_prompts_stay_empty() -> None:
    captions = TemplateEnhancer().rewrite(["ball", "a ball", "ball bouncing", "a bouncing ball", ""])
    assert len(set(captions[:4])) > 1 and captions[4] == ""


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer GPT-2 with a byte-level tokenizer trained here: nothing downloaded."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TemplateEnhancer().rewrite(["red ball bouncing", "pendulum", "two shapes flashing"]),
                            vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=16, n_layer=2, n_head=2))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_tiny_local_language_model_rewrites_prompts(tiny_lm: Path) -> None:
    enhancer = load_enhancer(str(tiny_lm), max_new_tokens=12)
    assert isinstance(enhancer, CausalLMEnhancer) and enhancer.name == str(tiny_lm)
    out = enhancer.rewrite(["red ball bouncing", ""])
    assert isinstance(out[0], str) and out[0] and "\n" not in out[0] and out[1] == ""
    assert enhancer.rewrite(["red ball bouncing"]) == out[:1]  # greedy: the same rewrite every time


def test_a_missing_or_wrong_model_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder; give 'template'"):
        load_enhancer(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no config.json"):
        load_enhancer(str(tmp_path))
