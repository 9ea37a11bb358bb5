"""Conditioning diagnostics: shapes, determinism, gaps that answer to the condition, the callback, `avgen diagnose`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from av_model.text.batch import TextBatch
from av_model.train.diagnostics import (
    DiagnosticsConfig,
    batches_from_clips,
    derangement,
    log_metrics,
    measure,
    parse_t_grid,
    summarize,
)

T_GRID = (0.1, 0.3, 0.6, 0.9)


# ------------------------------------------------------------------------------- crafted models
class Oracle(nn.Module):
    """Predicts the exact velocity from whichever condition determines the clean latents.

    The data (`oracle_batch`) make the clean audio equal to the video's spatial mean and to the
    caption embedding, so a clean video, a clean audio or the caption each give the clean target
    of the other modality; `uses` says which ones the model looks at, and `shuffle_video` feeds it
    another clip's video inside the model (a bug that disconnects the condition).
    """

    def __init__(self, uses: tuple[str, ...] = ("video", "audio", "text"), shuffle_video: bool = False) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.uses, self.shuffle_video = uses, shuffle_video

    def forward(self, video: Tensor, audio: Tensor, t_video: Tensor, t_audio: Tensor, text: TextBatch,
                video_rate: float, audio_rate: float) -> SimpleNamespace:
        if self.shuffle_video:
            video = video.roll(1, 0)
        from_text = text.embeddings[0][:, 0].reshape(audio.shape) * ("text" in self.uses)  # (B, C, T)
        clean_v = (t_video == 0)[:, None, None] & ("video" in self.uses)
        clean_a = (t_audio == 0)[:, None, None] & ("audio" in self.uses)
        x0_a = torch.where(clean_v, video.mean((3, 4)), from_text)  # (B, C, T)
        x0_v = torch.where(clean_a, audio, from_text)[..., None, None].expand_as(video)  # (B, C, T, H, W)
        # x_t = x_0 + t (eps - x_0), so the velocity eps - x_0 = (x_t - x_0) / t.
        v_a = (audio - x0_a) / t_audio.clamp_min(1e-6)[:, None, None]
        v_v = (video - x0_v) / t_video.clamp_min(1e-6)[:, None, None, None, None]
        return SimpleNamespace(video=v_v, audio=v_a)


def oracle_batch(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, 2, 4, generator=g)  # (B, C, T)
    video = audio[..., None, None].expand(n, 2, 4, 2, 2).contiguous()  # (B, C, T, H, W), spatially constant
    text = TextBatch((audio.reshape(n, 1, 8).clone(),), (torch.ones(n, 1, dtype=torch.bool),))
    return {"id": [f"clip{i:03d}" for i in range(n)], "caption": [f"caption {i}" for i in range(n)],
            "video": video, "audio": audio, "text": text}


def _rows(losses) -> dict:
    return {(r.task, r.modality, r.t): r for r in summarize(losses, n_boot=500)}


def test_gaps_are_positive_when_the_condition_determines_the_target() -> None:
    rows = _rows(measure(Oracle(), [oracle_batch(12)], 4.0, 4.0, T_GRID))
    for key, r in rows.items():
        assert r.own == pytest.approx(0.0, abs=1e-6), key  # the oracle is exact with the right condition
        assert r.wrong > 0.1 and r.gap_ci_low > 0, key  # ... and wrong with another clip's


def test_gaps_include_zero_when_the_model_ignores_or_loses_the_condition() -> None:
    ignores = _rows(measure(Oracle(uses=("audio",)), [oracle_batch(12)], 4.0, 4.0, T_GRID))
    for t in (*T_GRID, None):
        r = ignores[("v2a", "audio", t)]
        assert r.gap == 0.0 and r.gap_ci_low <= 0.0 <= r.gap_ci_high and r.own > 0.1
        assert ignores[("a2v", "video", t)].gap_ci_low > 0  # the audio is still used
    shuffled = _rows(measure(Oracle(uses=("video", "audio"), shuffle_video=True), [oracle_batch(12)], 4.0, 4.0,
                             T_GRID))
    for t in (*T_GRID, None):
        r = shuffled[("v2a", "audio", t)]
        assert r.own > 0.1 and r.gap_ci_low < 0.0 < r.gap_ci_high, (t, r)  # both conditions are wrong inside


def test_no_text_use_gives_no_text_gap() -> None:
    rows = _rows(measure(Oracle(uses=("video", "audio")), [oracle_batch(8)], 4.0, 4.0, T_GRID))
    assert all(rows[("text", m, t)].gap == 0.0 for m in ("audio", "video") for t in T_GRID)


# ------------------------------------------------------------------------------- real generator
def _debug_model(seed: int = 0) -> nn.Module:
    from av_model.dit.config import get_preset
    from av_model.dit.model import AVDiT

    torch.manual_seed(seed)
    model = AVDiT(get_preset("debug", video_channels=4, audio_channels=8, text_dims=(16,))).eval()
    with torch.no_grad():  # the zero-initialized gates and heads would make every output 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _random_batch(n: int, seed: int = 0, prefix: str = "c") -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"id": [f"{prefix}{i}" for i in range(n)], "caption": [f"cap {i % 3}" for i in range(n)],
            "video": torch.randn(n, 4, 4, 4, 4, generator=g), "audio": torch.randn(n, 8, 25, generator=g),
            "text": TextBatch((torch.randn(n, 5, 16, generator=g),), (torch.ones(n, 5, dtype=torch.bool),))}


def test_shapes_determinism_and_batching_independence() -> None:
    model, batch = _debug_model(), _random_batch(4)
    a = measure(model, [batch], 4.0, 25.0, T_GRID, seed=3)
    b = measure(model, [batch], 4.0, 25.0, T_GRID, seed=3)
    assert a.clip_ids == batch["id"] and len(a.wrong_ids) == 4 and all(w != c for w, c in zip(a.wrong_ids, a.clip_ids))
    for key in a.own:
        assert a.own[key].shape == (4, len(T_GRID)) and np.isfinite(a.own[key]).all()
        np.testing.assert_array_equal(a.own[key], b.own[key])
        np.testing.assert_array_equal(a.wrong[key], b.wrong[key])
        assert not np.array_equal(a.own[key], a.wrong[key])  # a random model answers to every condition
    # Noise is per clip: the own-condition loss does not depend on which clips share the batch.
    halves = [{k: (v[:2] if not isinstance(v, TextBatch) else v.index(slice(0, 2))) for k, v in batch.items()},
              {k: (v[2:] if not isinstance(v, TextBatch) else v.index(slice(2, 4))) for k, v in batch.items()}]
    c = measure(model, halves, 4.0, 25.0, T_GRID, seed=3)
    for key in a.own:
        np.testing.assert_allclose(c.own[key], a.own[key], rtol=1e-4, atol=1e-6)
    other_seed = measure(model, [batch], 4.0, 25.0, T_GRID, seed=4)
    assert not np.array_equal(other_seed.own["v2a/audio"], a.own["v2a/audio"])
    assert model.training is False


def test_measure_restores_training_mode() -> None:
    model = _debug_model().train()
    measure(model, [_random_batch(2)], 4.0, 25.0, (0.5,))
    assert model.training


def test_summary_rows_and_metric_names() -> None:
    losses = measure(_debug_model(), [_random_batch(5)], 4.0, 25.0, T_GRID)
    rows = summarize(losses, n_boot=200, seed=1)
    assert len(rows) == 4 * (len(T_GRID) + 1)
    r = next(r for r in rows if r.task == "v2a" and r.t == 0.6)
    own, wrong = losses.own["v2a/audio"][:, 2], losses.wrong["v2a/audio"][:, 2]
    assert r.n == 5 and r.own == pytest.approx(own.mean()) and r.gap == pytest.approx((wrong - own).mean())
    assert r.gap_ci_low <= r.gap <= r.gap_ci_high
    overall = next(x for x in rows if x.task == "v2a" and x.t is None)
    assert overall.gap == pytest.approx((losses.wrong["v2a/audio"] - losses.own["v2a/audio"]).mean())
    names = log_metrics(rows)
    assert {"diag/v2a_gap@t0.9", "diag/a2v_gap@t0.6", "diag/text_gap_audio@t0.6", "diag/text_gap_video@t0.1",
            "diag/v2a_gap"} <= set(names)
    assert summarize(losses, n_boot=200, seed=1) == rows  # the bootstrap is seeded


def test_derangement_avoids_fixed_points_and_equal_captions() -> None:
    assert derangement(None, 3).tolist() == [2, 0, 1]
    perm = derangement(["a", "a", "b", "b"], 4).tolist()
    assert all(p != i for i, p in enumerate(perm))
    assert all(["a", "a", "b", "b"][p] != ["a", "a", "b", "b"][i] for i, p in enumerate(perm))
    with pytest.raises(ValueError, match="need >= 2"):
        derangement(["a"], 1)


def test_batches_from_clips_group_by_shape() -> None:
    one = _random_batch(5)
    singles = [{k: ([v[i]] if isinstance(v, list) else v.index(i) if isinstance(v, TextBatch) else v[i: i + 1])
                for k, v in one.items()} for i in range(5)]
    odd = _random_batch(1, prefix="odd")
    odd["audio"] = odd["audio"][..., :20]
    batches, left_out = batches_from_clips([*singles, odd], batch_size=2)
    assert left_out == ["odd0"]
    assert [b["id"] for b in batches] == [["c0", "c1"], ["c2", "c3", "c4"]]  # no batch of one clip


@pytest.mark.parametrize("bad, match", [("0,0.5", r"\(0, 1\]"), ("1.5", r"\(0, 1\]"), ("a,b", "comma-separated"),
                                        ("", "empty"), ("0.5,0.5", "repeat")])
def test_bad_noise_grids_are_refused(bad: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_t_grid(bad)


def test_config_validation() -> None:
    assert DiagnosticsConfig(t=[0.9, 0.1]).t == [0.1, 0.9]
    with pytest.raises(ValueError, match="diagnostics.t"):
        DiagnosticsConfig(t=[0.0])
    with pytest.raises(ValueError, match="max_clips"):
        DiagnosticsConfig(max_clips=1)
    with pytest.raises(ValueError, match="every_n_validations"):
        DiagnosticsConfig(every_n_validations=0)


# ---------------------------------------------------------------------- callback and command line
def test_validation_logs_the_gaps(trained: Path) -> None:
    frame = pd.read_csv(next(trained.glob("logs/version_*/metrics.csv")))
    for name in ("diag/v2a_gap@t0.9", "diag/a2v_gap@t0.6", "diag/text_gap_audio@t0.6", "diag/text_gap_video",
                 "diag/v2a_gap"):
        assert name in frame.columns, name
        values = frame[name].dropna()
        assert len(values) == 1 and np.isfinite(values).all()  # one validation in the fixture's run


def test_diagnose_end_to_end(trained: Path, fake_cache: Path, tmp_path: Path) -> None:
    from av_model.train.diagnose import main
    from eval.conditioning import read_conditioning

    ckpt = trained / "final.ckpt"
    rc = main(["--ckpt", f"a={ckpt}", "--ckpt", f"b={ckpt}", "--cache", str(fake_cache), "--t", "0.3,0.9",
               "--bootstrap", "100", "--no-progress", "--out", str(tmp_path / "out")])
    assert rc == 0
    data = read_conditioning(tmp_path / "out" / "conditioning.json")
    assert [s.name for s in data.systems] == ["a", "b"] and data.t_grid == [0.3, 0.9]
    assert data.systems[0].clips == 4  # the fake cache's 4 validation clips, in two buckets of 2
    assert data.systems[0].rows == data.systems[1].rows  # the same checkpoint measures the same
    csv = pd.read_csv(tmp_path / "out" / "conditioning.csv")
    assert len(csv) == 2 * 4 * 3 and set(csv["t"].astype(str)) == {"0.3", "0.9", "all"}
    assert (tmp_path / "out" / "conditioning.png").stat().st_size > 1000


def test_diagnose_bad_inputs(trained: Path, fake_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from av_model.train.diagnose import main

    ckpt = trained / "final.ckpt"
    base = ["--cache", str(fake_cache), "--out", str(tmp_path / "o"), "--no-progress"]
    cases = [
        (["--ckpt", str(tmp_path / "missing.ckpt"), *base], "does not exist"),
        (["--ckpt", str(ckpt), *base, "--t", "0,0.5"], "--t"),
        (["--ckpt", str(ckpt), *base, "--split", "nope"], "no clips in split"),
        (["--ckpt", str(ckpt), "--cache", str(tmp_path), "--out", str(tmp_path / "o")], "not a latent cache"),
        (["--ckpt", f"x={ckpt}", "--ckpt", f"x={ckpt}", *base], "several checkpoints are named"),
    ]
    other = tmp_path / "other_cache"
    shutil.copytree(fake_cache, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["fingerprints"]["vae"] = "another-vae"
    (other / "meta.json").write_text(json.dumps(meta))
    cases.append((["--ckpt", str(ckpt), "--cache", str(other), "--out", str(tmp_path / "o")], "another vae encoder"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
