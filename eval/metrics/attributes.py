"""Prompt following against the scene's ground truth on the synthetic benchmark.

Each clip of the synthetic dataset has a manifest row whose `params` hold every choice its caption
describes. This metric recognises those attributes in a generated clip and scores them against
the paired reference row (pairing as `--pair-by`):

| attribute | unit | ground truth (`params`) | recognised from |
|---|---|---|---|
| colour, shape | each object, left to right | `objects[j].colour/shape` | the objects' pixels |
| count | clip | `len(objects)` | number of objects in the frames |
| background | clip | `background` | the background colour |
| family | clip | the row's `family` | motion, floor and walls |
| sound | each object that sounds | `objects[j].material`, else `timbre` | audio after its events |
| pitch | each object that sounds | `objects[j].pitch` (tones), else its `size` (impacts) | audio after its events |

Pendulum ticks have no pitch attribute (their pitch follows the material only). A clip's score for
an attribute is the fraction of its units recognised as the caption says (a predicted object is
matched to the caption's object at the same relative rank; a missing object is wrong).

The recognisers are hand-made features (`attribute_features`) with a scikit-learn classifier per
attribute, fitted on reference clips whose params are known (by default the reference manifest's
train and val rows, never the clips evaluated), cached per manifest in memory. The vocabulary is
learnt from those rows, not taken from the generator's code. Every figure stands beside:

- the **shuffled-caption floor**: the same predictions scored against the other clips' captions
  (the average over all other clips, i.e. over every permutation), what a model ignoring its
  prompt gets;
- the **data ceiling**: the recognisers on the real reference clips being evaluated, what a
  perfect generator gets (the reference row of the report).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from eval.metrics.attribute_features import ClipVisualFeatures, sound_features, video_features
from eval.metrics.base import Metric, MetricOptions, MetricResult, NotApplicable
from eval.parallel import ClipTask
from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import ClipRecord, ClipSet, load_set, pair_sets

__all__ = ["ATTRIBUTES", "AttributeRecognisers", "Attributes", "clip_labels", "score_units"]

ATTRIBUTES = ("colour", "shape", "count", "background", "family", "sound", "pitch")
_VISUAL = ("colour", "shape", "count", "background", "family")
_AUDIO = ("sound", "pitch")
_NO_PITCH_KINDS = frozenset({"tick"})  # docs/data.md: ticks are pitched by the material alone
_FITTED: dict[tuple, AttributeRecognisers] = {}  # calibration key -> recognisers (a few per process)


def clip_labels(record: ClipRecord) -> dict[str, list[str]]:
    """Ground-truth attributes of a synthetic manifest row, each an ordered list of labels.

    Raises:
        ValueError: the row has no `family` or `params.objects` (not a synthetic benchmark row).
    """
    params, family = record.extra.get("params"), record.extra.get("family")
    if not isinstance(params, dict) or not isinstance(params.get("objects"), list) or not params["objects"] or not family:
        raise ValueError(f"clip {record.id!r} has no 'family' and 'params.objects' (the synthetic manifest's fields)")
    objs = params["objects"]
    out: dict[str, list[str]] = {
        "colour": [str(o.get("colour")) for o in objs], "shape": [str(o.get("shape")) for o in objs],
        "count": [str(len(objs))], "family": [str(family)],
    }
    if "background" in params:
        out["background"] = [str(params["background"])]
    sound, pitch = [], []
    events = record.events or ()
    for j, o in enumerate(objs):
        kinds = {e.kind for e in events if e.obj == j}
        if not kinds:
            continue  # an object that never sounds has no sound attributes
        sound.append(str(o.get("material") or params.get("timbre")))
        if "pitch" in o:
            pitch.append(str(o["pitch"]))
        elif not kinds & _NO_PITCH_KINDS and "size" in o:
            pitch.append(str(o["size"]))
    if sound:
        out["sound"] = sound
    if pitch and len(pitch) == len(sound):
        out["pitch"] = pitch
    return out


def score_units(predicted: list[str | None], truth: list[str]) -> float:
    """Fraction of the caption's units (objects, or one for a clip-level attribute) recognised.

    The caption's unit j of n is compared with the predicted unit at the same relative rank of m
    (the same index when m == n); with no predicted unit every one is wrong.
    """
    n, m = len(truth), len(predicted)
    if m == 0:
        return 0.0
    return float(np.mean([predicted[min(m - 1, int((j + 0.5) * m / n))] == truth[j] for j in range(n)]))


@dataclass
class ClipEvidence:
    """What the recognisers read of one clip: visual features and, per sounding object (in object
    order), the sound features of its event windows."""

    visual: ClipVisualFeatures
    sounds: list[np.ndarray]


def _evidence_key(clip: ClipRecord, events_from: ClipRecord, geometry: dict[str, Any]) -> str:
    return f"attributes:{clip.path}:{clip.start}:{clip.end}:{events_from.id}:{sorted(geometry.items())}"


def clip_evidence(clip: ClipRecord, events_from: ClipRecord, geometry: dict[str, Any]) -> ClipEvidence:
    """Features of `clip`, with sound windows at the events of `events_from` (its caption's row)."""
    frames, _ = read_video(clip.path, fps=geometry.get("fps"), size=geometry.get("size"), start=clip.start,
                           duration=clip.duration)
    events = sorted(events_from.events or (), key=lambda e: e.time)
    sounds: list[np.ndarray] = []
    if events:
        audio, sr = read_audio(clip.path, sample_rate=geometry.get("sample_rate"), channels=1, start=clip.start,
                               duration=clip.duration)
        feats = sound_features(audio[0], sr, np.array([e.time for e in events]))  # (E, F)
        for j in sorted({e.obj for e in events}):
            sounds.append(feats[[i for i, e in enumerate(events) if e.obj == j]])
    return ClipEvidence(video_features(frames), sounds)


def _evidence(clip: ClipRecord, events_from: ClipRecord, geometry: dict[str, Any], cache: dict[str, Any]) -> ClipEvidence:
    key = _evidence_key(clip, events_from, geometry)
    if key not in cache:
        cache[key] = clip_evidence(clip, events_from, geometry)
    return cache[key]


def _evidence_task(clip: ClipRecord, events_from: ClipRecord, geometry: dict[str, Any]) -> ClipTask:
    return ClipTask(_evidence_key(clip, events_from, geometry), clip_evidence, (clip, events_from, geometry))


class AttributeRecognisers:
    """One classifier per attribute, fitted on clips with known params.

    Visual attributes use logistic regression on standardized features (linear in them, so its
    mistakes are easy to reason about); sound class and pitch use a random forest, because pitch
    depends on the material (a small rubber thud is lower than a large glass clink), an
    interaction a linear model cannot draw.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.models: dict[str, Any] = {}
        self.n_fit: dict[str, int] = {}

    def fit(self, evidence: list[ClipEvidence], labels: list[dict[str, list[str]]]) -> AttributeRecognisers:
        xs: dict[str, list[np.ndarray]] = {a: [] for a in ATTRIBUTES}
        ys: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
        for ev, lab in zip(evidence, labels):
            v = ev.visual
            for a, x in (("count", v.count), ("background", v.background), ("family", v.family)):
                if a in lab:
                    xs[a].append(x)
                    ys[a].append(lab[a][0])
            if len(v.colours) == len(lab["colour"]):  # objects found as the caption says: rank = index
                for a, feats in (("colour", v.colours), ("shape", v.shapes)):
                    xs[a] += feats
                    ys[a] += lab[a]
            for a in _AUDIO:
                if a in lab and len(lab[a]) == len(ev.sounds):
                    for win, y in zip(ev.sounds, lab[a]):
                        xs[a] += list(win)
                        ys[a] += [y] * len(win)
        for a in ATTRIBUTES:
            if len(set(ys[a])) < 2:
                continue  # nothing to tell apart; the attribute is reported as not calibrated
            if a in _AUDIO:
                model = RandomForestClassifier(n_estimators=200, random_state=self.seed, n_jobs=1)
            else:
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
            self.models[a] = model.fit(np.asarray(xs[a]), np.asarray(ys[a]))
            self.n_fit[a] = len(ys[a])
        return self

    def predict(self, evidence: list[ClipEvidence]) -> list[dict[str, list[str | None]]]:
        """Predicted labels per clip and attribute (objects left to right; sounds per sounding object,
        by majority over its event windows).

        One classifier call per attribute for all clips: a random forest's `predict` costs a few ms
        of per-tree dispatch whatever the number of rows, which per clip and object was most of an
        evaluation's time (each row's prediction does not depend on the others in the batch).
        """
        out: list[dict[str, list[str | None]]] = [{} for _ in evidence]
        for a, model in self.models.items():
            rows: list[np.ndarray] = []  # feature rows of every unit, clip after clip
            spans: list[list[int]] = []  # per clip: the row count of each unit
            for ev in evidence:
                units = _units(ev, a)
                rows += units
                spans.append([len(u) for u in units])
            labels = [str(x) for x in model.predict(np.concatenate(rows))] if rows else []
            at = 0
            for clip, sizes in zip(out, spans):
                units_out: list[str | None] = []
                for size in sizes:
                    part, at = labels[at:at + size], at + size
                    units_out += part if a in ("colour", "shape") else [Counter(part).most_common(1)[0][0]]
                clip[a] = units_out
        return out


def _units(ev: ClipEvidence, attribute: str) -> list[np.ndarray]:
    """The feature rows a clip offers for one attribute, one (rows, F) array per unit: the clip for
    count, background and family; all its objects together for colour and shape (one row each, or no
    unit when none was found); each sounding object's event windows for sound and pitch."""
    v = ev.visual
    if attribute in ("count", "background", "family"):
        return [getattr(v, attribute)[None]]
    if attribute in ("colour", "shape"):
        feats = v.colours if attribute == "colour" else v.shapes
        return [np.asarray(feats)] if feats else []
    return [np.asarray(w) for w in ev.sounds]


def _manifest_rows(path: str | Path, cache: dict[str, Any]) -> list[ClipRecord]:
    """A manifest's rows, read once per run (every set's evaluation asks for them)."""
    key = f"attr_manifest:{path}"  # not a per-clip entry: not kept on disk (eval.clip_cache)
    if key not in cache:
        cache[key] = load_set(path).records
    return cache[key]


def _calibration(reference: ClipSet, opts: MetricOptions, exclude: set[str],
                 cache: dict[str, Any]) -> tuple[list[ClipRecord], str]:
    """The calibration rows: splits of the reference manifest, or another manifest; never `exclude`."""
    spec = opts.attr_calibration.strip()
    if os.path.isfile(os.path.expanduser(spec)):
        rows, where = _manifest_rows(spec, cache), f"manifest {spec}"
    else:
        if not reference.source.is_file():
            raise NotApplicable(f"the reference {reference.source} is a folder; the attribute recognisers are "
                                "calibrated on a manifest's other splits: pass the synthetic manifest as --reference "
                                "or a calibration manifest as --attr-calibration")
        splits = {s.strip() for s in spec.split(",") if s.strip()}
        rows = [r for r in _manifest_rows(reference.source, cache) if str(r.extra.get("split")) in splits]
        where = f"splits {sorted(splits)} of {reference.source}"
    rows = [r for r in rows if r.id not in exclude and r.extra.get("params")]
    if len(rows) < 10:
        raise NotApplicable(f"{len(rows)} calibration clips with params in {where} outside the evaluated clips; the "
                            "attribute recognisers need at least 10 (set --attr-calibration to other splits or a "
                            "manifest of synthetic clips)")
    return rows[: opts.attr_max_calibration], where


def _fit_key(rows: list[ClipRecord], geometry: dict[str, Any], opts: MetricOptions) -> tuple:
    digest = hashlib.sha1("\n".join(f"{r.id}:{r.path}" for r in rows).encode()).hexdigest()
    mtimes = tuple(sorted({os.stat(r.path).st_mtime_ns for r in rows}))[-1:]
    return digest, mtimes, tuple(sorted(geometry.items())), opts.seed


def _recognisers(rows: list[ClipRecord], geometry: dict[str, Any], opts: MetricOptions,
                 cache: dict[str, Any]) -> AttributeRecognisers:
    key = _fit_key(rows, geometry, opts)
    if key not in _FITTED:
        evidence = [_evidence(r, r, geometry, cache) for r in tqdm(rows, desc="attributes: calibration", leave=False,
                                                                    disable=not cache.get("progress", True))]
        if len(_FITTED) >= 4:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = AttributeRecognisers(opts.seed).fit(evidence, [clip_labels(r) for r in rows])
    return _FITTED[key]


def _geometry(rows: list[ClipRecord]) -> dict[str, Any]:
    """Frame rate, size and sample rate of the calibration clips: evaluated clips are read at them."""
    r = rows[0]
    frames, fps = read_video(r.path, start=r.start, duration=r.duration)
    _, sr = read_audio(r.path, channels=1, start=r.start, duration=min(r.duration or 0.1, 0.1))
    return {"fps": float(fps), "size": (int(frames.shape[1]), int(frames.shape[2])), "sample_rate": int(sr)}


def _bootstrap(per_clip: np.ndarray, opts: MetricOptions) -> tuple[float, float, float]:
    """Mean over attributes of per-attribute mean accuracies, and its percentile bootstrap
    interval over clips; per_clip (N, A) with NaN where a clip lacks an attribute."""
    def stat(m: np.ndarray) -> np.ndarray:  # (..., A, N) -> (...): mean of the attributes' clip means
        with warnings.catch_warnings():  # an attribute no resampled clip has is left out, not an error
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.nanmean(m, axis=-1), axis=-1)

    rng = np.random.default_rng(opts.seed)
    idx = np.stack([rng.integers(0, len(per_clip), len(per_clip)) for _ in range(opts.n_boot)])  # (B, N)
    step = max(1, 2**22 // per_clip.size)  # resamples at a time: at most 32 MiB of them in memory
    boots = np.concatenate([stat(np.ascontiguousarray(per_clip.T[:, idx[i:i + step]].transpose(1, 0, 2)))
                            for i in range(0, len(idx), step)])  # (b, A, N) -> (b,) per chunk
    alpha = (1 - opts.ci_level) / 2
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [alpha, 1 - alpha]) if boots.size else (np.nan, np.nan))
    return float(stat(np.ascontiguousarray(per_clip.T))), float(lo), float(hi)


def _accuracy_table(preds: list[dict[str, list[str | None]]], truths: list[dict[str, list[str]]],
                    attrs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(own, floor) per-clip scores (N, A): against the clip's own caption, and the average against
    every other clip's caption that has the attribute (the shuffled-caption floor)."""
    n = len(preds)
    own = np.full((n, len(attrs)), np.nan)
    floor = np.full((n, len(attrs)), np.nan)
    for k, a in enumerate(attrs):
        for i in range(n):
            if a not in preds[i]:
                continue
            if a in truths[i]:
                own[i, k] = score_units(preds[i][a], truths[i][a])
                others = [score_units(preds[i][a], truths[j][a]) for j in range(n) if j != i and a in truths[j]]
                floor[i, k] = np.mean(others) if others else np.nan
    return own, floor


class Attributes(Metric):
    """Per-attribute accuracy of recognised colour, shape, count, background, motion family, sound
    class and pitch against the caption's ground truth, with floor and ceiling (module docstring)."""

    name = "attributes"
    title = "Prompt attributes (accuracy)"
    higher_is_better = True
    needs_reference = False  # the runner then also scores the reference itself: the ceiling row

    def _plan(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions, cache: dict[str, Any]
              ) -> tuple[list[tuple[ClipRecord, ClipRecord]], list[dict[str, list[str]]], list[ClipRecord], str,
                         dict[str, Any]]:
        """Pairs (generated, reference row), their ground truth, the calibration rows, where they come
        from, and the geometry clips are read at; raises NotApplicable with the reason."""
        # 1. Check inputs: pairs with reference rows that carry params.
        if reference is None:
            raise NotApplicable("needs --reference: the synthetic manifest whose 'params' hold each caption's attributes")
        if system is reference:
            pairs = [(r, r) for r in reference]
        else:
            try:
                pairs = pair_sets(system, reference, by=opts.pair_by)
            except EvalInputError as err:
                raise NotApplicable(f"clips without a reference row: {err}") from err
        truths = []
        for _, r in pairs:
            try:
                truths.append(clip_labels(r))
            except ValueError as err:
                raise NotApplicable(f"{err} in {reference.source}; prompt following is measured on the synthetic "
                                    "benchmark, whose manifest rows list the scene's params") from err
        # 2. The calibration rows: other reference clips.
        rows, where = _calibration(reference, opts, {r.id for _, r in pairs}, cache)
        geometry = cache.setdefault(f"attributes:geometry:{rows[0].path}", _geometry(rows))
        return pairs, truths, rows, where, geometry

    def clip_tasks(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                   cache: dict[str, Any]) -> list[ClipTask]:
        pairs, _, rows, _, geometry = self._plan(system, reference, opts, cache)
        fitted = _fit_key(rows, geometry, opts) in _FITTED  # recognisers of this process need no calibration
        return ([] if fitted else [_evidence_task(r, r, geometry) for r in rows]) + [
            _evidence_task(clip, r, geometry) for g, r in pairs for clip in (g, r)]

    def evaluate(self, system: ClipSet, reference: ClipSet | None, opts: MetricOptions,
                 cache: dict[str, Any]) -> MetricResult:
        pairs, truths, rows, where, geometry = self._plan(system, reference, opts, cache)
        assert reference is not None  # _plan refuses None
        # 2. Recognisers fitted on the calibration rows (cached per manifest).
        recognisers = _recognisers(rows, geometry, opts, cache)
        attrs = tuple(a for a in ATTRIBUTES if a in recognisers.models)
        # 3. Recognise the generated clips (sound windows at the caption's events) and the references.
        quiet = not cache.get("progress", True)
        preds = recognisers.predict([_evidence(g, r, geometry, cache) for g, r in
                                     tqdm(pairs, desc=f"{system.name}: attributes", leave=False, disable=quiet)])
        ref_preds = recognisers.predict([_evidence(r, r, geometry, cache) for _, r in pairs])
        own, floor = _accuracy_table(preds, truths, attrs)
        ceil, _ = _accuracy_table(ref_preds, truths, attrs) if system is not reference else (own, floor)
        # 4. Per attribute: accuracy, floor and ceiling with intervals over clips.
        per_attribute: dict[str, dict[str, Any]] = {}
        flat: dict[str, Any] = {}
        for k, a in enumerate(attrs):
            ok = np.isfinite(own[:, k])
            if not ok.any():
                continue
            acc, lo, hi = _bootstrap(own[ok, k:k + 1], opts)
            fl, flo, fhi = _bootstrap(floor[ok, k:k + 1], opts)
            ce, clo, chi = _bootstrap(ceil[ok, k:k + 1], opts)
            per_attribute[a] = {"accuracy": acc, "ci_low": lo, "ci_high": hi, "floor": fl, "floor_ci_low": flo,
                                "floor_ci_high": fhi, "ceiling": ce, "ceiling_ci_low": clo, "ceiling_ci_high": chi,
                                "n": int(ok.sum()), "n_calibration": recognisers.n_fit[a]}
            flat.update({f"{a}_accuracy": acc, f"{a}_floor": fl, f"{a}_ceiling": ce})
        if not per_attribute:
            raise NotApplicable("no evaluated clip has an attribute the recognisers were calibrated for")
        value, lo, hi = _bootstrap(own, opts)
        floor_value, floor_lo, floor_hi = _bootstrap(floor, opts)
        panel = _panel_rows(pairs, preds, ref_preds, truths, reference, opts.attr_panel_rows)
        return MetricResult(
            metric=self.name, system=system.name, value=value, ci_low=lo, ci_high=hi, higher_is_better=True,
            n_generated=len(pairs), n_reference=len(pairs),
            preprocessing={"frames": f"{geometry['size'][0]}x{geometry['size'][1]} at {geometry['fps']:g} fps",
                           "audio": f"mono {geometry['sample_rate']} Hz, 0.12 s after each caption event",
                           "calibration": f"{len(rows)} clips: {where}", "pairing": opts.pair_by},
            extra={"floor": floor_value, "floor_ci_low": floor_lo, "floor_ci_high": floor_hi,
                   "ceiling": _bootstrap(ceil, opts)[0], **flat, "per_attribute": per_attribute, "panel": panel},
            per_clip={g.id: float(np.nanmean(row)) for (g, _), row in zip(pairs, own) if np.isfinite(row).any()},
        )


def _panel_rows(pairs: list[tuple[ClipRecord, ClipRecord]], preds: list[dict[str, list[str | None]]],
                ref_preds: list[dict[str, list[str | None]]], truths: list[dict[str, list[str]]],
                reference: ClipSet, n: int) -> list[dict[str, Any]]:
    """The first `n` prompts in reference order, with what was recognised (for the frame panel)."""
    order = {r.id: i for i, r in enumerate(reference)}
    picked = sorted(range(len(pairs)), key=lambda i: order.get(pairs[i][1].id, len(order)))[:n]

    def described(p: dict[str, list[str | None]], t: dict[str, list[str]]) -> dict[str, Any]:
        return {a: {"predicted": [str(x) for x in p[a]], "correct": score_units(p[a], t[a])}
                for a in ATTRIBUTES if a in p and a in t}

    return [{"reference_id": pairs[i][1].id, "id": pairs[i][0].id, "caption": pairs[i][1].caption or "",
             "path": str(Path(pairs[i][0].path).resolve()), "start": pairs[i][0].start, "end": pairs[i][0].end,
             "reference_path": str(Path(pairs[i][1].path).resolve()), "reference_start": pairs[i][1].start,
             "reference_end": pairs[i][1].end, "attributes": described(preds[i], truths[i]),
             "reference_attributes": described(ref_preds[i], truths[i])} for i in picked]
