"""A debug model, dense and mixture-of-experts, memorizes a handful of text-latent pairs.

Stated thresholds: after 300 AdamW steps the flow loss (mean of the last 25 steps) is below 0.6
(it starts near 4: two modalities of unit-variance latents), and sampling each training caption
reproduces its own latents (mean squared error below 0.5, against ~2 for another pair's latents).
"""

from __future__ import annotations

import pytest
import torch

from av_model.dit import AVDiT
from av_model.flow.matching import FlowConfig, FlowMatching
from av_model.flow.sampling import SamplerConfig, sample
from av_model.text import TextBatch

STEPS = 300
LOSS_THRESHOLD = 0.6
SAMPLE_MSE_THRESHOLD = 0.5


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["moe", "dense"])
def test_debug_model_overfits_a_handful_of_pairs(variant: str, config_factory) -> None:
    torch.manual_seed(0)
    dense = dict(num_experts=1, top_k=1, num_shared_experts=0, expert_hidden=384)  # same active FFN width
    model = AVDiT(config_factory(**(dense if variant == "dense" else {})))
    g = torch.Generator().manual_seed(0)
    n, reps = 4, 4
    video = torch.randn(n, 4, 4, 4, 4, generator=g)
    audio = torch.randn(n, 8, 24, generator=g)
    text = TextBatch((torch.randn(n, 3, 16, generator=g),), (torch.ones(n, 3, dtype=torch.bool),))
    # Every step sees every pair a few times; no clean modalities or text dropout: pure memorization.
    flow = FlowMatching(FlowConfig(p_clean_video=0, p_clean_audio=0, p_prefix=0, p_drop_text=0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    batch_text = TextBatch.cat([text] * reps)
    losses = []
    for _ in range(STEPS):
        out = flow.loss(model, video.repeat(reps, 1, 1, 1, 1), audio.repeat(reps, 1, 1), batch_text, 4.0, 12.0,
                        generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.update_router_bias()
        losses.append(float(out.flow_loss.detach()))
    final = sum(losses[-25:]) / 25
    assert losses[0] > 3.0 and final < LOSS_THRESHOLD, (losses[0], final)

    gen_v, gen_a = sample(model, text, video_shape=video.shape, audio_shape=audio.shape, video_rate=4.0,
                          audio_rate=12.0, config=SamplerConfig(steps=20, guidance_video=1, guidance_audio=1))
    mse_v = (gen_v - video).square().mean(dim=(1, 2, 3, 4))  # (n,) against its own pair
    mse_a = (gen_a - audio).square().mean(dim=(1, 2))
    assert mse_v.mean() < SAMPLE_MSE_THRESHOLD and mse_a.mean() < SAMPLE_MSE_THRESHOLD, (mse_v, mse_a)
    # Each caption gives its own pair, not one of the others.
    dist = (gen_v[:, None] - video[None]).square().flatten(2).mean(-1)  # (n generated, n training)
    assert torch.equal(dist.argmin(1), torch.arange(n))
