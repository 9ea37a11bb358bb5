"""Distribution metrics on network features: FVD (I3D) and FAD (VGGish, PANNs, CLAP, codec latents),
and the text-alignment scores (CLIP score, CLAP score) that share those extractors.

Each Fréchet distance reports, besides the value on all clips: a bootstrap interval (clips of both
sets resampled), FD-infinity (the 1/n extrapolation of fadtk) with the R^2 of its fit, and KID.
Features of the reference set are extracted once per run and reused for every system.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eval.features.base import FeatureExtractor, Features, extract_features
from eval.features.weights import resolve_weights
from eval.frechet import bootstrap_fd, fd_infinity, frechet_from_features, kid
from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable, mean_with_ci
from eval.sets import ClipSet

__all__ = ["FVD", "FADVGGish", "FADPANNs", "FADCLAP", "FADCodec", "ClipScore", "ClapScore", "get_extractor"]


def _build(key: str, opts: MetricOptions) -> FeatureExtractor:
    path = resolve_weights(key, opts.weights)  # raises WeightsMissing with the options to fix it
    if key == "i3d":
        from eval.features.i3d import I3DExtractor
        return I3DExtractor(path, device=opts.torch_device(), num_frames=opts.fvd_frames, size=opts.fvd_size, fps=opts.fvd_fps)
    if key == "vggish":
        from eval.features.vggish import VGGishExtractor
        return VGGishExtractor(path, device=opts.torch_device())
    if key == "panns":
        from eval.features.panns import PANNsExtractor
        return PANNsExtractor(path, device=opts.torch_device(), window_seconds=opts.panns_window)
    if key == "clap":
        from eval.features.clap import ClapExtractor
        return ClapExtractor(path, device=opts.torch_device())
    if key == "clip":
        from eval.features.clip import ClipExtractor
        return ClipExtractor(path, device=opts.torch_device(), frames=opts.clip_frames)
    if key == "codec":
        from eval.features.codec import CodecExtractor
        return CodecExtractor(path, device=opts.torch_device())
    raise KeyError(f"no extractor for weights {key!r}")


def get_extractor(key: str, opts: MetricOptions, cache: dict[str, Any]) -> FeatureExtractor:
    """The run's extractor for weights `key` (loaded once)."""
    ck = f"extractor:{key}"
    if ck not in cache:
        cache[ck] = _build(key, opts)
    return cache[ck]


def _features(key: str, ext: FeatureExtractor, clips: ClipSet, opts: MetricOptions, cache: dict[str, Any]) -> Features:
    ck = f"features:{key}:{clips.source}:{clips.name}:{len(clips)}"
    if ck not in cache:
        cache[ck] = extract_features(ext, clips.records, batch_size=opts.batch_size, num_workers=opts.num_workers,
                                     desc=f"{clips.name}: {ext.name}", progress=cache.get("progress", True))
    return cache[ck]


class _Frechet(Metric):
    needs_reference = True
    higher_is_better = False

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        if reference is None:
            raise NotApplicable("needs a reference set; pass --reference DIR|manifest")
        ext = get_extractor(self.weight_key, opts, cache)
        ref = _features(self.weight_key, ext, reference, opts, cache)
        gen = _features(self.weight_key, ext, system, opts, cache)
        value = frechet_from_features(ref.values, gen.values)
        lo, hi = bootstrap_fd(ref.values, gen.values, groups1=ref.groups, groups2=gen.groups,
                              n_boot=opts.n_boot_fd, level=opts.ci_level, seed=opts.seed)
        extra: dict[str, Any] = {"feature_dim": int(gen.values.shape[1]), "rows_generated": int(len(gen.values)),
                                 "rows_reference": int(len(ref.values))}
        if min(len(gen.values), len(ref.values)) <= gen.values.shape[1]:
            extra["note"] = "fewer feature rows than dimensions: covariances are rank-deficient; use more clips"
        if gen.n_clips >= 4:
            inf = fd_infinity(ref.values, gen.values, groups=gen.groups, min_n=opts.fd_inf_min_n,
                              steps=opts.fd_inf_steps, seed=opts.seed)
            extra.update(fd_inf=inf.value, fd_inf_r2=inf.r2, fd_inf_ns=inf.ns, fd_inf_fds=inf.fds)
        k_mean, k_std = kid(ref.values, gen.values, subsets=20, subset_size=1000, seed=opts.seed)
        extra.update(kid=k_mean, kid_std=k_std)
        return MetricResult(
            metric=self.name, system=system.name, value=value, ci_low=lo, ci_high=hi, higher_is_better=False,
            n_generated=gen.n_clips, n_reference=ref.n_clips, preprocessing=ext.preprocessing(),
            weights={self.weight_key: ext.weight_hash}, extra=extra,
        )


class FVD(_Frechet):
    """Fréchet video distance on I3D features (StyleGAN-V protocol)."""

    name, title, weight_key = "fvd", "FVD (I3D)", "i3d"


class FADVGGish(_Frechet):
    """Fréchet audio distance on VGGish embeddings."""

    name, title, weight_key = "fad_vggish", "FAD (VGGish)", "vggish"


class FADPANNs(_Frechet):
    """Fréchet audio distance on PANNs CNN14 embeddings."""

    name, title, weight_key = "fad_panns", "FAD (PANNs CNN14)", "panns"


class FADCLAP(_Frechet):
    """Fréchet audio distance on CLAP audio embeddings."""

    name, title, weight_key = "fad_clap", "FAD (CLAP)", "clap"


class FADCodec(_Frechet):
    """Fréchet audio distance on the project's codec latents."""

    name, title, weight_key = "fad_codec", "FAD (codec latents)", "codec"


class _TextScore(Metric):
    higher_is_better = True

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        missing = [r.id for r in system if not r.caption]
        if missing:
            raise NotApplicable(
                f"{len(missing)} clips have no caption (e.g. {missing[0]!r}); add 'prompt' to the JSON sidecars "
                "or 'caption' to the manifest"
            )
        ext = get_extractor(self.weight_key, opts, cache)
        feats = _features(self.weight_key, ext, system, opts, cache)
        text = ext.embed_text([r.caption or "" for r in system]).float().cpu().numpy().astype(np.float64)  # type: ignore[attr-defined]
        cos = (feats.values * text[feats.groups]).sum(axis=1) * 100.0  # (rows,)
        per_clip = np.bincount(feats.groups, weights=cos, minlength=feats.n_clips) / np.maximum(
            np.bincount(feats.groups, minlength=feats.n_clips), 1)
        value, lo, hi = mean_with_ci(per_clip, opts)
        return MetricResult(
            metric=self.name, system=system.name, value=value, ci_low=lo, ci_high=hi, higher_is_better=True,
            n_generated=feats.n_clips, preprocessing={**ext.preprocessing(), "score": "100 * cosine(media, caption)"},
            weights={self.weight_key: ext.weight_hash},
            per_clip={cid: float(v) for cid, v in zip(feats.ids, per_clip)},
        )


class ClipScore(_TextScore):
    """Text-video alignment: 100 x cosine of CLIP frame and caption embeddings, averaged."""

    name, title, weight_key = "clip_score", "CLIP score", "clip"


class ClapScore(_TextScore):
    """Text-audio alignment: 100 x cosine of CLAP audio and caption embeddings, averaged."""

    name, title, weight_key = "clap_score", "CLAP score", "clap"
