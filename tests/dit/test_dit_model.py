"""The transformer: shapes, identity at initialization, presets, counts and clear errors."""

from __future__ import annotations

import pytest
import torch

from av_model.dit import PRESETS, AVDiT, DiTConfig, count_params, get_preset
from av_model.dit.model import BlockContext
from av_model.text import TextBatch


def test_forward_shapes_and_aux_record(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory(batch=3)
    out = debug_model(**inputs)
    assert out.video.shape == inputs["video"].shape
    assert out.audio.shape == inputs["audio"].shape
    assert set(out.aux.losses) == {"moe_aux", "router_z"}
    cfg = debug_model.cfg
    assert out.aux.stats["moe/load"].shape == (cfg.depth, cfg.num_experts)
    assert out.aux.stats["moe/counts_modality"].shape == (cfg.depth, 2, cfg.num_experts)
    assert out.aux.stats["moe/counts_t"].shape == (cfg.depth, cfg.num_t_buckets, cfg.num_experts)
    for name in ("moe/load", "moe/load_video", "moe/load_audio", "moe/load_t0"):
        torch.testing.assert_close(out.aux.stats[name].sum(-1), torch.ones(cfg.depth))
    # 3 samples x (4*2*2 video + 8 audio tokens) x top-2, per layer
    assert torch.all(out.aux.stats["moe/counts"].sum(-1) == 3 * (16 + 8) * 2)


def test_fresh_model_is_identity_per_block_and_predicts_zero(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory()
    model = debug_model
    video, audio = inputs["video"], inputs["audio"]
    lay = model.layout(tuple(video.shape), tuple(audio.shape), inputs["video_rate"], inputs["audio_rate"])
    x = torch.randn(2, lay.num_tokens, model.cfg.width)
    cos, sin = model.rotary(lay.positions())
    text: TextBatch = inputs["text"]
    bc = BlockContext(
        layout=lay, cos_NR=cos, sin_NR=sin, ctx_BLD=model.text_proj[0](text.embeddings[0]),
        ctx_mask_BL=text.masks[0], modality_T=lay.modality_ids().repeat(2),
        t_bucket_T=torch.zeros(2 * lay.num_tokens, dtype=torch.long),
    )
    c = torch.randn(2, lay.num_slots, model.cfg.width)
    mod = model.adaln(c).unflatten(-1, (6, -1))
    for block in model.blocks:
        y, _ = block(x, mod, bc)
        torch.testing.assert_close(y, x, atol=0, rtol=0)
    out = model(**inputs)
    assert out.video.abs().max() == 0 and out.audio.abs().max() == 0
    # ... and training moves it away from the identity (the gates do receive gradient).
    (out.video.sum() + out.audio.sum() + sum(out.aux.losses.values())).backward()
    assert model.blocks[0].modulation.grad is None or model.video_out.linear.weight.grad.abs().sum() > 0


def test_gates_receive_gradient_at_initialization(debug_model: AVDiT, inputs_factory) -> None:
    out = debug_model(**inputs_factory())
    (out.video.square().sum() + out.audio.square().sum() + (out.video - 1).square().sum()).backward()
    assert debug_model.video_out.linear.weight.grad.abs().sum() > 0
    assert debug_model.adaln[-1].weight.grad is not None


def test_per_frame_times_and_unaligned_audio_length(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory(frames_a=23)  # not a multiple of audio_group=3: padded inside, cropped on output
    out = model(**inputs)
    assert out.audio.shape[-1] == 23
    # A per-frame time equal everywhere is the same as the per-sample time.
    per_frame = dict(inputs, t_video=inputs["t_video"][:, None].expand(2, 4).contiguous(),
                     t_audio=inputs["t_audio"][:, None].expand(2, 23).contiguous())
    out2 = model(**per_frame)
    torch.testing.assert_close(out2.video, out.video)
    torch.testing.assert_close(out2.audio, out.audio)


def test_text_changes_the_output(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    with torch.no_grad():
        cond = model(**inputs)
        null = model(**dict(inputs, text=inputs["text"].null_like()))
    assert torch.isfinite(null.video).all()
    assert (cond.video - null.video).abs().max() > 1e-4


def test_clear_errors_for_bad_inputs(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory()
    with pytest.raises(ValueError, match="video latents must be"):
        debug_model(**dict(inputs, video=torch.randn(2, 3, 4, 4, 4)))
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        debug_model(**dict(inputs, video=torch.randn(2, 4, 4, 5, 4)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        debug_model(**dict(inputs, audio=torch.randn(3, 8, 24)))
    with pytest.raises(ValueError, match="t_video must be"):
        debug_model(**dict(inputs, t_video=torch.rand(2, 3)))
    with pytest.raises(ValueError, match="text embeddings have widths"):
        debug_model(**dict(inputs, text=TextBatch((torch.randn(2, 3, 384),), (torch.ones(2, 3, dtype=torch.bool),))))
    with pytest.raises(ValueError, match="latent rates must be positive"):
        debug_model(**dict(inputs, video_rate=0.0))


def test_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="num_heads=5 does not divide width=64"):
        DiTConfig(width=64, num_heads=5)
    with pytest.raises(ValueError, match="top_k=3 is larger than num_experts=2"):
        DiTConfig(num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="balance must be"):
        DiTConfig(balance="magic")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown DiT preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown DiTConfig fields"):
        get_preset("tiny", widht=64)
    with pytest.raises(ValueError, match="unknown fields"):
        DiTConfig.from_dict({"width": 64, "depht": 2})


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_reports_counts(name: str) -> None:
    cfg = get_preset(name)
    counts = count_params(cfg)
    assert 0 < counts.active <= counts.total
    assert counts.flops_per_token > 6 * 0.5 * counts.active  # at least the dense-matmul share
    if cfg.is_dense:
        assert counts.active == counts.total
    else:
        assert counts.active < counts.total
    if counts.total < 20_000_000:  # the small presets are built for real and must agree
        model = AVDiT(cfg)
        assert sum(p.numel() for p in model.parameters()) == counts.total


def test_preset_sizes_match_their_names() -> None:
    tiny, dense = count_params(get_preset("tiny")), count_params(get_preset("tiny_dense"))
    cfg = get_preset("tiny")
    router = cfg.depth * (cfg.width + 2) * cfg.num_experts
    assert tiny.active - dense.active == router  # the same active size, the router aside
    assert 0.9e9 < count_params(get_preset("h100_1b")).active < 1.3e9
    big = count_params(get_preset("cluster_8b"))
    assert big.active > 4e9 and get_preset("cluster_8b").num_experts == 64
    # attention FLOPs grow with the sequence length
    assert count_params(get_preset("tiny"), seq_len=4096).flops_per_token > tiny.flops_per_token


def test_update_router_bias_moves_selection_bias(debug_model: AVDiT, inputs_factory) -> None:
    debug_model.train()
    debug_model(**inputs_factory())
    loads = debug_model.update_router_bias()
    assert loads.shape == (debug_model.cfg.depth, debug_model.cfg.num_experts)
    assert loads.sum() > 0
    assert debug_model.blocks[0].moe.expert_bias_E.abs().sum() > 0
    assert "blocks.0.moe.expert_bias_E" in debug_model.state_dict()  # resumes exactly from a checkpoint


def test_reference_and_grouped_models_agree(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    model.set_dispatch("reference")
    ref = model(**inputs)
    model.set_dispatch("grouped", "loop")
    out = model(**inputs)
    torch.testing.assert_close(out.video, ref.video, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.audio, ref.audio, atol=1e-5, rtol=1e-5)


def test_model_cli_prints_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    from av_model.dit.cli import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert "1.10B" in out  # h100_1b active parameters
    assert main(["presets", "--json", "--seq-len", "512"]) == 0
    assert '"seq_len": 512' in capsys.readouterr().out
    assert main(["show", "tiny"]) == 0
    assert "width: 128" in capsys.readouterr().out
    assert main(["show", "huge"]) == 2
    assert "unknown DiT preset" in capsys.readouterr().err


def test_bf16_autocast_forward_and_backward(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory()
    with torch.no_grad():
        ref = model(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert torch.isfinite(out.video).all() and torch.isfinite(out.audio).all()
    rel = (out.video.float() - ref.video).norm() / ref.video.norm()
    assert rel < 0.1, rel  # bf16 rounding only
    (out.video.float().square().mean() + out.audio.float().square().mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
