"""Shapes, the image path and input checks of the video autoencoder."""

from __future__ import annotations

import pytest
import torch

from av_model.vae import PRESETS, VAEConfig, VideoAutoencoder, get_preset
from av_model.vae.layers import scale_chroma


@pytest.mark.parametrize(
    ("tc", "sc", "patch", "channels"),
    [(1, 8, 2, (8, 8, 8)), (2, 8, 2, (8, 8, 8)), (4, 8, 1, (8, 8, 8, 8)), (8, 8, 1, (8, 8, 8, 8)),
     (4, 16, 2, (8, 8, 8, 8)), (8, 16, 2, (8, 8, 8, 8))],
)
def test_shapes_for_each_compression(tc: int, sc: int, patch: int, channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    vae = VideoAutoencoder(VAEConfig(tc, sc, latent_channels=4, patch_size=patch, channels=channels)).eval()
    x = torch.rand(2, 3, 2 * tc, 2 * sc, 3 * sc) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (2, 4, 2, 2, 3) == (2, *vae.latent_shape(2 * tc, 2 * sc, 3 * sc))
        y = vae.decode(z)
    assert y.shape == x.shape
    assert vae.latent_frame_rate(16.0) == 16.0 / tc


def test_image_is_a_still_clip(tiny_vae: VideoAutoencoder) -> None:
    image = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z_image = tiny_vae.encode(image)
        z_still = tiny_vae.encode(image.expand(-1, -1, 4, -1, -1))
        out = tiny_vae.decode(z_image, num_frames=1)
        still = tiny_vae.decode(z_image)
    assert z_image.shape == (2, 4, 1, 4, 4)
    torch.testing.assert_close(z_image, z_still)
    assert out.shape == image.shape
    torch.testing.assert_close(out, still.mean(dim=2, keepdim=True))


def test_training_forward_samples_and_keeps_image_shape(tiny_vae: VideoAutoencoder) -> None:
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = tiny_vae(x, generator=g1), tiny_vae(x, generator=g2)
    torch.testing.assert_close(a.z, b.z)  # the same generator gives the same posterior sample
    assert not torch.allclose(a.z, a.mean)
    assert a.recon.shape == x.shape and a.mean.shape == a.logvar.shape == (1, 4, 2, 4, 4)
    assert tiny_vae(x[:, :, :1]).recon.shape == (1, 3, 1, 32, 32)


@pytest.mark.parametrize("frames", [2, 3, 5, 6, 7, 9, 30])
def test_frame_counts_the_compression_cannot_take(tiny_vae: VideoAutoencoder, frames: int) -> None:
    with pytest.raises(ValueError, match=rf"cannot encode {frames} frames.*multiple of 4"):
        tiny_vae.encode(torch.zeros(1, 3, frames, 32, 32))


@pytest.mark.parametrize("frames", [1, 4, 12])
def test_frame_counts_it_takes(tiny_vae: VideoAutoencoder, frames: int) -> None:
    with torch.no_grad():
        z = tiny_vae.encode(torch.zeros(1, 3, frames, 16, 24))
    assert z.shape == (1, 4, max(1, frames // 4), 2, 3)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(3, 8, 32, 32), r"\(B, 3, T, H, W\)"),
        (torch.zeros(1, 3, 32, 32), r"images \(B, 3, H, W\) use x\[:, :, None\]"),
        (torch.zeros(1, 8, 32, 32, 3), "channels-last"),
        (torch.zeros(1, 3, 8, 30, 32), "multiples of the spatial compression 8"),
        (torch.zeros(1, 3, 8, 32, 32, dtype=torch.uint8), r"float pixels in \[-1, 1\].*127.5"),
    ],
)
def test_bad_inputs_are_refused_clearly(tiny_vae: VideoAutoencoder, x: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_vae.encode(x)


def test_bad_latents_are_refused_clearly(tiny_vae: VideoAutoencoder) -> None:
    with pytest.raises(ValueError, match=r"\(B, 4, T', H', W'\).*4 latent channels"):
        tiny_vae.decode(torch.zeros(1, 8, 2, 4, 4))
    with pytest.raises(ValueError, match="num_frames=1 decodes image latents"):
        tiny_vae.decode(torch.zeros(1, 4, 2, 4, 4), num_frames=1)
    with pytest.raises(ValueError, match="num_frames must be None, 1"):
        tiny_vae.decode(torch.zeros(1, 4, 2, 4, 4), num_frames=5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiny_vae.encode([[0.0]])  # type: ignore[arg-type]


def test_normalize_round_trip_and_stats_checks(tiny_vae: VideoAutoencoder) -> None:
    z = torch.randn(2, 4, 2, 3, 3) * 3 + 1
    assert not tiny_vae.has_latent_stats
    tiny_vae.set_latent_stats(torch.full((4,), 1.0), torch.full((4,), 3.0))
    assert tiny_vae.has_latent_stats
    n = tiny_vae.normalize(z)
    torch.testing.assert_close(tiny_vae.denormalize(n), z)
    assert abs(float(n.mean())) < 0.3
    with pytest.raises(ValueError, match="positive"):
        tiny_vae.set_latent_stats(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        tiny_vae.set_latent_stats(torch.zeros(3), torch.ones(3))


def test_presets_and_config_validation() -> None:
    for name, cfg in PRESETS.items():
        assert get_preset(name) == cfg
    assert get_preset("small", latent_channels=16).latent_channels == 16
    assert (get_preset("small").temporal_compression, get_preset("small").spatial_compression) == (4, 8)
    assert get_preset("small").latent_channels == 8
    assert get_preset("tae_16ch_t8").temporal_compression == 8
    with pytest.raises(KeyError, match="unknown video autoencoder preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match="temporal_compression must be 1, 2, 4 or 8"):
        VAEConfig(temporal_compression=3)
    with pytest.raises(ValueError, match="channels has 2 levels"):
        VAEConfig(channels=(8, 8))
    with pytest.raises(ValueError, match="divide one another"):
        VAEConfig(channels=(12, 20, 20))
    with pytest.raises(ValueError, match="needs at least 3"):
        VAEConfig(temporal_compression=8, spatial_compression=8, patch_size=2, channels=(8, 8, 8))


def test_a_fresh_posterior_is_nearly_deterministic(tiny_vae: VideoAutoencoder) -> None:
    # unit-variance posterior noise at the start would drown the latents (see Encoder.__init__)
    out = tiny_vae(torch.rand(1, 3, 4, 16, 16) * 2 - 1)
    assert float(out.logvar.mean()) < -6.0
    assert float((out.z - out.mean).abs().max()) < 0.2


def test_input_chroma_gain_weighs_hue_up_at_the_encoder_input() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    grey = x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(scale_chroma(x, 1.0), x)
    torch.testing.assert_close(scale_chroma(x, 3.0).mean(dim=1, keepdim=True), grey)  # brightness kept
    torch.testing.assert_close(scale_chroma(x, 3.0) - grey, 3.0 * (x - grey))  # colour 3x further from grey
    # two floors of the same brightness, dark green and navy, are 3x further apart at the gain of 3;
    # a pure brightness change (a grey shift) is not amplified
    green = torch.tensor([-0.84, -0.62, -0.75]).view(1, 3, 1, 1, 1).expand(1, 3, 4, 8, 8)
    navy = green[:, [0, 2, 1]]
    assert abs(float((scale_chroma(green, 3.0) - scale_chroma(navy, 3.0)).abs().max())
               - 3 * float((green - navy).abs().max())) < 1e-5
    torch.testing.assert_close(scale_chroma(green + 0.2, 3.0) - scale_chroma(green, 3.0), torch.full_like(green, 0.2))

    # the encoder with the gain is the plain encoder on the re-coloured clip; the decoder is untouched
    cfg = VAEConfig(4, 8, latent_channels=4, patch_size=2, channels=(8, 8, 8))
    plain = VideoAutoencoder(cfg).eval()
    gained = VideoAutoencoder(VAEConfig(**{**cfg.to_dict(), "input_chroma_gain": 3.0})).eval()
    gained.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(gained.encode(x), plain.encode(scale_chroma(x, 3.0)))
        z = plain.encode(x)
        torch.testing.assert_close(gained.decode(z), plain.decode(z))


def test_input_chroma_gain_is_saved_only_where_set_and_checked() -> None:
    cfg = VAEConfig()
    assert cfg.input_chroma_gain == 1.0 and "input_chroma_gain" not in cfg.to_dict()  # older files unchanged
    gained = VAEConfig(input_chroma_gain=3.0)
    assert gained.to_dict()["input_chroma_gain"] == 3.0 and VAEConfig.from_dict(gained.to_dict()) == gained
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="input_chroma_gain must be > 0"):
        VAEConfig(input_chroma_gain=0.0)
