"""Weight loading of every feature extractor, exercised with tiny random models saved to a temp dir,
and the metrics built on them (FVD, FAD, CLIP and CLAP scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eval.features.base import extract_features
from eval.features.weights import WeightPaths, WeightsMissing, resolve_weights, weights_hash
from eval.metrics.base import MetricOptions
from eval.reader import EvalInputError
from eval.sets import load_set
from eval.testing import save_clap_folder, save_clip_folder


class _TinyI3D(nn.Module):
    """Same call signature as StyleGAN-V's TorchScript I3D detector."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (3, 5, 5), stride=(2, 4, 4))
        self.fc = nn.Linear(8, 12)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        f = self.fc(self.conv(x).mean(dim=(2, 3, 4)))
        return f if return_features else f.softmax(-1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("weights")
    out: dict[str, Path] = {}
    torch.jit.script(_TinyI3D()).save(str(d / "i3d_torchscript.pt"))
    out["i3d"] = d / "i3d_torchscript.pt"

    from eval.features.vggish import VGGish
    torch.save(VGGish(widths=(4, 4, 8, 8), hidden=16, dim=8).state_dict(), d / "vggish.pth")
    out["vggish"] = d / "vggish.pth"

    from eval.features.panns import Cnn14
    state = Cnn14(64, (4, 4, 8, 8, 8, 16), classes=5).state_dict()
    state["logmel_extractor.melW"] = torch.rand(513, 64)
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, 1024)  # ignored, as in the real file
    torch.save({"model": state, "iteration": 0}, d / "panns.pth")
    out["panns"] = d / "panns.pth"

    out["clap"] = save_clap_folder(d / "clap", tiny=True)
    out["clip"] = save_clip_folder(d / "clip", tiny=True)
    try:
        from audio_codec import EncodecCodec, get_preset
        EncodecCodec(get_preset("debug")).save(d / "codec.pt")
        out["codec"] = d / "codec.pt"
    except ImportError:
        pass
    return out


def _opts(w: dict[str, Path], **kw) -> MetricOptions:
    paths = WeightPaths(**{k: str(v) for k, v in w.items()})
    return MetricOptions(weights=paths, fvd_size=32, n_boot=50, n_boot_fd=5, fd_inf_min_n=2, fd_inf_steps=3, **kw)


def test_official_key_names_load_strictly(tiny_weights: dict[str, Path]) -> None:
    from eval.features.vggish import VGGish, VGGishExtractor

    keys = list(VGGish().state_dict())
    # torchvggish's state dict names (vggish-10086976.pth)
    assert keys[:2] == ["features.0.weight", "features.0.bias"] and "features.13.weight" in keys
    assert keys[-2:] == ["embeddings.4.weight", "embeddings.4.bias"]
    ext = VGGishExtractor(tiny_weights["vggish"])
    assert ext.weight_hash.startswith("sha256:") and ext.weight_hash == weights_hash(tiny_weights["vggish"])
    x = ext.preprocessor.examples(torch.randn(16000 * 2))
    assert x.shape == (2, 1, 96, 64) and ext.embed(x).shape == (2, 8)


@pytest.mark.parametrize("metric", ["fvd", "fad_vggish", "fad_panns", "fad_clap", "fad_codec"])
def test_frechet_metrics_with_tiny_weights(metric: str, tiny_weights: dict[str, Path], small_sets: dict[str, Path]) -> None:
    from eval.metrics import METRICS

    if metric == "fad_codec" and "codec" not in tiny_weights:
        pytest.skip("audio_codec is not installed")
    opts = _opts(tiny_weights)
    cache: dict = {"progress": False}
    ref = load_set(small_sets["manifest"])
    same = METRICS[metric]().evaluate(ref, ref, opts, cache)
    other = METRICS[metric]().evaluate(load_set(small_sets["late"]), ref, opts, cache)
    assert same.value == pytest.approx(0.0, abs=1e-6)
    assert other.value >= 0 and other.n_generated == 4 and other.n_reference == 4
    assert list(other.weights.values())[0].startswith(("sha256:", "fingerprint:"))
    assert other.preprocessing and "kid" in other.extra and "fd_inf" in other.extra


def test_text_scores_with_tiny_weights(tiny_weights: dict[str, Path], small_sets: dict[str, Path]) -> None:
    from eval.metrics import METRICS

    opts = _opts(tiny_weights, clip_frames=3)
    cache: dict = {"progress": False}
    gen = load_set(small_sets["sync"])
    for name in ("clip_score", "clap_score"):
        res = METRICS[name]().evaluate(gen, None, opts, cache)
        assert -100 <= res.value <= 100 and len(res.per_clip) == 4 and res.ci_low <= res.value <= res.ci_high


def test_feature_rows_and_groups(tiny_weights: dict[str, Path], small_sets: dict[str, Path]) -> None:
    from eval.features.panns import PANNsExtractor

    ext = PANNsExtractor(tiny_weights["panns"], window_seconds=0.5)
    feats = extract_features(ext, load_set(small_sets["sync"]).records, batch_size=3, progress=False)
    assert feats.values.shape == (16, 16)  # 4 clips x 4 half-second windows, 16-d
    assert np.array_equal(np.bincount(feats.groups), [4, 4, 4, 4])
    assert feats.per_clip_mean().shape == (4, 16)


def test_missing_and_bad_weights(tiny_weights: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 small_sets: dict[str, Path]) -> None:
    from eval.features.i3d import I3DExtractor
    from eval.features.vggish import VGGishExtractor
    from eval.metrics import METRICS

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AVGEN_WEIGHTS", raising=False)
    monkeypatch.delenv("AVGEN_I3D", raising=False)
    with pytest.raises(WeightsMissing, match="--i3d PATH.*AVGEN_I3D.*i3d_torchscript.pt"):
        resolve_weights("i3d")
    with pytest.raises(WeightsMissing, match="does not exist"):
        resolve_weights("i3d", WeightPaths(i3d=str(tmp_path / "nope.pt")))
    monkeypatch.setenv("AVGEN_WEIGHTS", str(tiny_weights["i3d"].parent))
    assert resolve_weights("i3d") == tiny_weights["i3d"]
    monkeypatch.setenv("AVGEN_VGGISH", str(tiny_weights["i3d"]))
    assert resolve_weights("vggish") == tiny_weights["i3d"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(EvalInputError, match="TorchScript"):
        I3DExtractor(junk)
    with pytest.raises(EvalInputError, match="VGGish"):
        VGGishExtractor(junk)
    torch.save({"something": torch.zeros(1)}, junk)
    with pytest.raises(EvalInputError, match="torchvggish"):
        VGGishExtractor(junk)
    # FVD needs 16 frames: a 4-frame clip is refused with the reason
    from avio import write_clip
    short = tmp_path / "short"
    write_clip(short / "a.mp4", np.zeros((4, 32, 32, 3), np.uint8), 8.0)
    with pytest.raises(EvalInputError, match="16 consecutive"):
        METRICS["fvd"]().evaluate(load_set(short), load_set(small_sets["sync"]), _opts(tiny_weights), {"progress": False})
