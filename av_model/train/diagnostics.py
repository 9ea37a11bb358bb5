"""Conditioning-sensitivity diagnostics: does the generator use its conditions?

For each clip and each noise level t of a fixed grid, the flow-matching loss is measured twice with
the same noise: once given the clip's own condition and once given another clip's (a derangement
of the batch). A model that uses a condition predicts worse with the wrong one, so the gap
loss(wrong) - loss(own) is positive; a model that ignores it shows a gap of 0 up to noise.

Tasks (task/modality, the loss measured):
    v2a/audio: audio noised at t, video clean (t_v = 0), own vs another clip's video.
    a2v/video: video noised at t, audio clean (t_a = 0), own vs another clip's audio.
    text/audio, text/video: both noised at t, own vs another clip's caption.

The noise path and the error are `av_model.flow.matching.noisy_latents` and `velocity_error`, the functions
`FlowMatching.loss` trains with; times follow its convention (t = 0 data, t = 1 noise, one time per
modality, every frame of a noisy modality at t). Noise is drawn per clip from `(seed, clip id)`, so
numbers do not depend on batching or device.

Shapes (legend): B clips, K noise levels, N clips in all, C channels, T frames, H/W latent size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from av_model.flow.matching import noisy_latents, velocity_error
from av_model.text.batch import TextBatch

__all__ = ["DEFAULT_T", "TASKS", "ConditioningLosses", "DiagnosticsConfig", "GapRow", "batches_from_clips",
           "derangement", "log_metrics", "measure", "measure_batch", "parse_t_grid", "summarize"]

TASKS: tuple[tuple[str, str], ...] = (("v2a", "audio"), ("a2v", "video"), ("text", "audio"), ("text", "video"))
DEFAULT_T: tuple[float, ...] = (0.1, 0.3, 0.6, 0.9)
ContextFactory = Callable[[], AbstractContextManager[Any]]


def parse_t_grid(values: str | Sequence[float]) -> tuple[float, ...]:
    """Noise levels from "0.1,0.3" or a sequence: each in (0, 1], no repeats; returned sorted.

    Raises:
        ValueError: an empty grid, a value that is not a number, outside (0, 1], or repeated.
    """
    if isinstance(values, str):
        try:
            grid = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as err:
            raise ValueError(f"noise levels must be comma-separated numbers such as 0.1,0.3,0.6,0.9; got {values!r}."
                             ) from err
    else:
        grid = [float(v) for v in values]
    if not grid:
        raise ValueError("the noise-level grid is empty; give numbers in (0, 1] such as 0.1,0.3,0.6,0.9.")
    bad = [t for t in grid if not (0.0 < t <= 1.0) or math.isnan(t)]
    if bad:
        raise ValueError(f"noise levels must lie in (0, 1] (t = 0 is clean data, which carries no loss); got {bad}.")
    if len(set(grid)) != len(grid):
        raise ValueError(f"noise levels repeat in {grid}; give each once.")
    return tuple(sorted(grid))


@dataclass
class DiagnosticsConfig:
    """Conditioning diagnostics run at the end of validation (`model.diagnostics` in the YAML).

    Attributes:
        enabled: run them.
        max_clips: validation clips measured (the first ones, fixed across validations); each costs
            3 forward passes of two samples per noise level.
        t: noise levels of the grid, each in (0, 1].
        every_n_validations: run at every n-th validation.
        seed: seed of the noise and of the bootstrap.
        n_boot: bootstrap resamples of the confidence intervals.
    """

    enabled: bool = True
    max_clips: int = 8
    t: list[float] = field(default_factory=lambda: list(DEFAULT_T))
    every_n_validations: int = 1
    seed: int = 0
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.max_clips, bool) or self.max_clips < 2:
            raise ValueError(f"diagnostics.max_clips must be an integer >= 2 (a clip's wrong condition comes from "
                             f"another clip); got {self.max_clips!r}.")
        if self.every_n_validations < 1:
            raise ValueError(f"diagnostics.every_n_validations must be >= 1; got {self.every_n_validations}.")
        if self.n_boot < 1:
            raise ValueError(f"diagnostics.n_boot must be >= 1; got {self.n_boot}.")
        try:
            self.t = list(parse_t_grid(self.t))
        except ValueError as err:
            raise ValueError(f"diagnostics.t: {err}") from err


# ------------------------------------------------------------------------------------ measuring
@dataclass
class ConditioningLosses:
    """Per-clip losses with the own and with a wrong condition.

    Attributes:
        clip_ids: (N) clip ids.
        wrong_ids: (N) the clip whose condition served as the wrong one.
        t_grid: (K) noise levels.
        own, wrong: "task/modality" -> (N, K) float64 per-clip mean squared velocity error.
    """

    clip_ids: list[str]
    wrong_ids: list[str]
    t_grid: tuple[float, ...]
    own: dict[str, np.ndarray]
    wrong: dict[str, np.ndarray]

    @staticmethod
    def concat(parts: Sequence[ConditioningLosses]) -> ConditioningLosses:
        if not parts:
            raise ValueError("no clips were measured; the diagnostics need batches of at least 2 clips.")
        grids = {p.t_grid for p in parts}
        if len(grids) != 1:
            raise ValueError(f"cannot join measurements of different noise grids {sorted(grids)}.")
        keys = [f"{task}/{mod}" for task, mod in TASKS]
        return ConditioningLosses(
            clip_ids=[c for p in parts for c in p.clip_ids], wrong_ids=[c for p in parts for c in p.wrong_ids],
            t_grid=parts[0].t_grid, own={k: np.concatenate([p.own[k] for p in parts]) for k in keys},
            wrong={k: np.concatenate([p.wrong[k] for p in parts]) for k in keys},
        )


def derangement(captions: Sequence[str] | None, b: int) -> Tensor:
    """(B,) long: index of the clip whose condition each clip gets as the wrong one.

    A roll of the batch by k (no clip keeps its own), k chosen to pair as few identical captions as
    possible (generated captions repeat; an identical caption would be no wrong condition).

    Raises:
        ValueError: fewer than 2 clips.
    """
    if b < 2:
        raise ValueError(f"a batch of {b} clip(s) has no other clip to take a wrong condition from; need >= 2.")
    if captions is None:
        shift = 1
    else:  # min keeps the first (smallest) shift among equals
        shift = min(range(1, b), key=lambda k: sum(captions[i] == captions[(i - k) % b] for i in range(b)))
    return torch.roll(torch.arange(b), shift)


def clip_noise(clip_id: str, seed: int, video_shape: Sequence[int], audio_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Noise of one clip, `(C_v, T_v, H, W)` and `(C_a, T_a)` float32 on the CPU, a function of (seed, id)."""
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randn(tuple(video_shape), generator=g), torch.randn(tuple(audio_shape), generator=g)


def _twice(x: Tensor) -> Tensor:
    return torch.cat([x, x])


@torch.no_grad()
def measure_batch(
    model: nn.Module, batch: dict[str, Any], video_rate: float, audio_rate: float,
    t_grid: Sequence[float] = DEFAULT_T, *, seed: int = 0, autocast: ContextFactory | None = None,
) -> ConditioningLosses:
    """Losses with own and wrong conditions for one batch of clips of equal shapes.

    Own and wrong conditions run in one forward pass of 2B samples (samples do not interact: the
    mixture of experts is dropless and attention stays within a sample).

    Args:
        model: an `AVDiT` (or wrapper with its call signature), in eval mode.
        batch: a latent-cache batch: "id" (B), "video" (B, C_v, T_v, H, W), "audio" (B, C_a, T_a),
            "text" `TextBatch`, optional "caption" (B).
        video_rate, audio_rate: latent frames per second.
        t_grid: noise levels (K).
        seed: noise seed.
        autocast: context factory wrapped around each forward (e.g. bf16 autocast); None: none.
    """
    # 1. Inputs on the model's device; noise per clip; the wrong partner of every clip.
    dev = next(model.parameters()).device
    video, audio = batch["video"].to(dev, torch.float32), batch["audio"].to(dev, torch.float32)
    text: TextBatch = batch["text"].to(dev)
    ids = list(batch["id"])
    b, tv_n, ta_n = video.shape[0], video.shape[2], audio.shape[2]
    perm = derangement(batch.get("caption"), b).to(dev)
    noise = [clip_noise(cid, seed, video.shape[1:], audio.shape[1:]) for cid in ids]
    eps_v = torch.stack([n[0] for n in noise]).to(dev)  # (B, C_v, T_v, H, W)
    eps_a = torch.stack([n[1] for n in noise]).to(dev)  # (B, C_a, T_a)
    own_text = TextBatch.cat([text, text])
    mixed_text = TextBatch.cat([text, text.index(perm)])
    context = autocast or nullcontext
    own = {f"{task}/{mod}": np.zeros((b, len(t_grid))) for task, mod in TASKS}
    wrong = {k: np.zeros((b, len(t_grid))) for k in own}

    def record(key: str, err: Tensor, k: int) -> None:
        values = err.double().cpu().numpy()  # (2B,): own then wrong
        own[key][:, k], wrong[key][:, k] = values[:b], values[b:]

    zeros = torch.zeros(2 * b, device=dev)
    for k, t in enumerate(t_grid):
        # 2. Noisy latents on the straight path (every frame at t), the same noise for own and wrong.
        tv_f = torch.full((b, tv_n), float(t), device=dev)  # (B, T_v)
        ta_f = torch.full((b, ta_n), float(t), device=dev)  # (B, T_a)
        xt_v = noisy_latents(video, eps_v, tv_f)  # (B, C_v, T_v, H, W)
        xt_a = noisy_latents(audio, eps_a, ta_f)  # (B, C_a, T_a)
        t_2b = torch.full((2 * b,), float(t), device=dev)
        with context():
            # 3. v2a: clean video (own, then another clip's), noisy audio.
            out = model(torch.cat([video, video[perm]]), _twice(xt_a), zeros, t_2b, own_text, video_rate, audio_rate)
            record("v2a/audio", velocity_error(out.audio, _twice(audio), _twice(eps_a), _twice(ta_f))[0], k)
            # 4. a2v: clean audio (own, then another clip's), noisy video.
            out = model(_twice(xt_v), torch.cat([audio, audio[perm]]), t_2b, zeros, own_text, video_rate, audio_rate)
            record("a2v/video", velocity_error(out.video, _twice(video), _twice(eps_v), _twice(tv_f))[0], k)
            # 5. text: both noisy, own caption, then another clip's.
            out = model(_twice(xt_v), _twice(xt_a), t_2b, t_2b, mixed_text, video_rate, audio_rate)
            record("text/audio", velocity_error(out.audio, _twice(audio), _twice(eps_a), _twice(ta_f))[0], k)
            record("text/video", velocity_error(out.video, _twice(video), _twice(eps_v), _twice(tv_f))[0], k)
    return ConditioningLosses(clip_ids=ids, wrong_ids=[ids[int(i)] for i in perm.tolist()],
                              t_grid=tuple(float(t) for t in t_grid), own=own, wrong=wrong)


def measure(
    model: nn.Module, batches: Iterable[dict[str, Any]], video_rate: float, audio_rate: float,
    t_grid: Sequence[float] = DEFAULT_T, *, seed: int = 0, autocast: ContextFactory | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ConditioningLosses:
    """`measure_batch` over batches (eval mode and no grad while it runs; the mode is restored).

    Args:
        on_batch: called with the clip count of each measured batch (progress bars).
    """
    was_training = model.training
    model.eval()
    try:
        parts = []
        for batch in batches:
            parts.append(measure_batch(model, batch, video_rate, audio_rate, t_grid, seed=seed, autocast=autocast))
            if on_batch is not None:
                on_batch(len(batch["id"]))
    finally:
        model.train(was_training)
    return ConditioningLosses.concat(parts)


def batches_from_clips(clips: Sequence[dict[str, Any]], batch_size: int = 8) -> tuple[list[dict[str, Any]], list[str]]:
    """Group single-clip batches into batches of equal latent shapes, in order.

    Args:
        clips: batches of one clip each (`collate_latents([item])`).
        batch_size: most clips per batch; a last batch of one clip joins the one before.

    Returns:
        The batches, and the ids of clips left out because no other clip shares their shapes.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for c in clips:
        groups.setdefault((tuple(c["video"].shape[1:]), tuple(c["audio"].shape[1:])), []).append(c)
    out: list[dict[str, Any]] = []
    left_out: list[str] = []
    for members in groups.values():
        if len(members) < 2:
            left_out += [cid for m in members for cid in m["id"]]
            continue
        chunks = [members[i: i + batch_size] for i in range(0, len(members), batch_size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            last = chunks.pop()
            chunks[-1] = chunks[-1] + last
        for chunk in chunks:
            out.append({
                "id": [cid for m in chunk for cid in m["id"]],
                "caption": [cap for m in chunk for cap in m.get("caption", [""] * len(m["id"]))],
                "video": torch.cat([m["video"] for m in chunk]),
                "audio": torch.cat([m["audio"] for m in chunk]),
                "text": TextBatch.cat([m["text"] for m in chunk]),
            })
    return out, left_out


# ----------------------------------------------------------------------------------- summaries
@dataclass
class GapRow:
    """Mean losses and gap of one task, modality and noise level (t None: averaged over the grid).

    Attributes:
        n: clips.
        own, wrong, gap: means over clips (gap = wrong - own), each with a percentile bootstrap
            interval over clips (`*_ci_low`, `*_ci_high`).
    """

    task: str
    modality: str
    t: float | None
    n: int
    own: float
    own_ci_low: float
    own_ci_high: float
    wrong: float
    wrong_ci_low: float
    wrong_ci_high: float
    gap: float
    gap_ci_low: float
    gap_ci_high: float

    @property
    def name(self) -> str:
        """Metric name: v2a_gap@t0.9, a2v_gap, text_gap_audio@t0.6, ..."""
        from eval.conditioning import gap_name

        return gap_name(self.task, self.modality, self.t)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["t"] = "all" if self.t is None else self.t
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _mean_ci(values: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float, float]:
    from eval.frechet import bootstrap_ci

    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    return (mean, *bootstrap_ci(values, n_boot=n_boot, level=level, seed=seed))


def summarize(losses: ConditioningLosses, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[GapRow]:
    """Rows per task and modality: one per noise level, then one over the grid (per-clip mean over t).

    The bootstrap resamples clips; own, wrong and gap of a row use the same resamples.
    """
    rows = []
    for task, mod in TASKS:
        own, wrong = losses.own[f"{task}/{mod}"], losses.wrong[f"{task}/{mod}"]  # (N, K)
        columns: list[tuple[float | None, np.ndarray, np.ndarray]] = [
            (t, own[:, k], wrong[:, k]) for k, t in enumerate(losses.t_grid)]
        columns.append((None, own.mean(1), wrong.mean(1)))
        for t, o, w in columns:
            stats = [_mean_ci(v, n_boot, seed, level) for v in (o, w, w - o)]
            rows.append(GapRow(task, mod, t, int(np.isfinite(w - o).sum()), *stats[0], *stats[1], *stats[2]))
    return rows


def log_metrics(rows: Sequence[GapRow], prefix: str = "diag/") -> dict[str, float]:
    """Gaps as flat metrics for loggers: `diag/v2a_gap@t0.9`, ..., and the grid means `diag/v2a_gap`."""
    return {f"{prefix}{r.name}": r.gap for r in rows if math.isfinite(r.gap)}
