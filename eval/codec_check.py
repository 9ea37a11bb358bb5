"""Does an audio codec keep the events? `avgen codec-check`.

Held-out clips go through the codec's continuous latents (the generator's path) and back; the
onset detector (`eval.onsets`) runs on the original and on the reconstruction, and the share of
the original's onsets found again within the tolerance (10 ms) is the criterion (at least 95%).
Beside it: the same against the manifest's ground-truth event times (for the reconstruction and,
as the ceiling, the original), precision (onsets of the reconstruction that are real), SI-SNR,
mel distance and the power per octave band (a band far below the original is a hole that drops
the events living in it).

    avgen codec-check --codec runs/demo/codec/codec.pt --manifest runs/demo/data/manifest.jsonl \
        --split heldout --out runs/demo/eval/codec.json

It lives in `eval` rather than in `audio_codec` because it needs the onset detector, and the codec
package sits below the metrics. `benchmarks/codec_bench.py` adds speed to the same figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from audio_codec import AudioCodec, load_codec
from audio_codec.data import load_audio_entries
from audio_codec.metrics import MelDistance, OctavePower, si_snr
from avio import load_manifest, read_audio
from avio.files import atomic_path
from avtrain.commands import report_errors
from eval.onsets import detect_onsets, match_events

__all__ = ["CRITERION", "codec_events", "main"]

CRITERION = 0.95  # share of the original's onsets the reconstruction must keep within the tolerance


def _events(manifest: Path, ids: set[str]) -> dict[str, list[float]]:
    """Ground-truth event times per clip id, when the manifest has them (the synthetic dataset)."""
    return {e.id: sorted(float(ev["time"]) for ev in e.extra["events"])
            for e in load_manifest(manifest) if e.id in ids and isinstance(e.extra.get("events"), list)}


def codec_events(codec: AudioCodec, manifest: Path, split: str = "heldout", max_clips: int = 64,
                 tolerance: float = 0.010, progress: bool = True) -> dict[str, Any]:
    """Onset preservation, SI-SNR, mel distance and octave-band balance over up to `max_clips` clips.

    Args:
        codec: any `AudioCodec` (encode, decode, sample_rate, channels, device).
        manifest: dataset manifest; `split` chooses its clips.
        tolerance: seconds within which a reconstructed onset counts as the original's.
        progress: show a progress bar.
    """
    entries = load_audio_entries(manifest, split)[:max_clips]
    if not entries:
        raise ValueError(f"{manifest}: no clips in split {split!r}; choose a split the manifest has.")
    truth = _events(manifest, {e.id for e in entries})
    mel = MelDistance(codec.sample_rate).to(codec.device)
    octaves = OctavePower(codec.sample_rate).to(codec.device)
    band_power = {"original": 0.0, "recon": 0.0}
    sr = codec.sample_rate
    # matched, reference and predicted counts of each comparison
    pairs = {k: [0, 0, 0] for k in ("recon_vs_original", "recon_vs_events", "original_vs_events")}
    offsets: list[float] = []
    snrs, mels = [], []
    for entry in tqdm(entries, desc="codec check", disable=not progress):
        wav, _ = read_audio(entry.path, sample_rate=sr, channels=codec.channels, start=entry.start,
                            duration=entry.duration)  # (C, S)
        with torch.inference_mode():
            x = wav[None].to(codec.device)  # (1, C, S)
            y = codec.decode(codec.encode(x), length=x.shape[-1])  # (1, C, S)
            snrs.append(float(si_snr(y, x)[0]))
            mels.append(float(mel(y, x)[0]))
            band_power["original"] = band_power["original"] + octaves(x)[0].cpu()
            band_power["recon"] = band_power["recon"] + octaves(y)[0].cpu()
        original = detect_onsets(x[0].cpu().numpy(), sr)
        recon = detect_onsets(y[0].clamp(-1, 1).cpu().numpy(), sr)
        comparisons: list[tuple[str, Any, Any]] = [("recon_vs_original", recon, original)]
        if entry.id in truth:
            comparisons += [("recon_vs_events", recon, truth[entry.id]), ("original_vs_events", original, truth[entry.id])]
        for key, pred, ref in comparisons:
            m = match_events(pred, ref, tolerance)
            pairs[key] = [pairs[key][0] + m.n_matched, pairs[key][1] + m.n_ref, pairs[key][2] + m.n_pred]
            if key == "recon_vs_original":
                offsets += [abs(o) for o in m.offsets_ms]
    recall = {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in pairs.items()}
    db = {k: (10 * torch.log10(torch.as_tensor(v) / len(entries) + 1e-12)).tolist() for k, v in band_power.items()}
    bands = [{"band_hz": [round(lo), round(hi)], "original_db": o, "recon_db": r, "recon_minus_original_db": r - o}
             for lo, hi, o, r in zip(octaves.edges_hz[:-1], octaves.edges_hz[1:], db["original"], db["recon"])]
    kept = pairs["recon_vs_original"]
    return {
        "clips": len(entries),
        "split": split,
        "tolerance_ms": 1000 * tolerance,
        "onsets_original": kept[1],
        "onset_recall": recall["recon_vs_original"],
        "onset_precision": kept[0] / kept[2] if kept[2] else float("nan"),
        "onset_mean_abs_offset_ms": float(np.mean(offsets)) if offsets else float("nan"),
        "events": pairs["recon_vs_events"][1],
        "event_recall_recon": recall["recon_vs_events"],
        "event_recall_original": recall["original_vs_events"],
        "si_snr_db": float(np.mean(snrs)),
        "mel_distance": float(np.mean(mels)),
        "criterion": CRITERION,
        "passes_onset_criterion": bool(recall["recon_vs_original"] >= CRITERION),
        "octave_bands": bands,
        "worst_band_deficit_db": min(b["recon_minus_original_db"] for b in bands),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avgen codec-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", required=True, help="codec file (codec.pt) or an official name (encodec_24khz)")
    parser.add_argument("--manifest", required=True, type=Path, help="dataset manifest")
    parser.add_argument("--split", default="heldout", help="split to check (default: heldout)")
    parser.add_argument("--max-clips", type=int, default=64, help="clips to check (default 64)")
    parser.add_argument("--tolerance-ms", type=float, default=10.0, help="onset tolerance (default 10 ms)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_clips < 1 or not args.tolerance_ms > 0:
        parser.error("--max-clips must be >= 1 and --tolerance-ms > 0.")
    return report_errors(lambda: _check(args), "avgen codec-check", status=2)


def _check(args: argparse.Namespace) -> int:
    if not args.manifest.is_file():
        raise FileNotFoundError(f"no manifest at {args.manifest}; make one with `avgen data synth` or give its path.")
    codec = load_codec(args.codec).eval()
    q = codec_events(codec, args.manifest, args.split, args.max_clips, args.tolerance_ms / 1000,
                     progress=not args.no_progress)
    verdict = "pass" if q["passes_onset_criterion"] else "FAIL"
    print(f"codec {args.codec} ({codec.fingerprint}) on {q['clips']} {q['split']} clips:")
    print(f"  onsets kept within {q['tolerance_ms']:g} ms: {100 * q['onset_recall']:.1f}% of {q['onsets_original']} "
          f"({verdict}: >= {100 * CRITERION:.0f}%), precision {q['onset_precision']:.3f}, "
          f"mean offset {q['onset_mean_abs_offset_ms']:.2f} ms")
    if q["events"]:
        print(f"  true events found: {100 * q['event_recall_recon']:.1f}% (the original audio: "
              f"{100 * q['event_recall_original']:.1f}%) of {q['events']}")
    print(f"  mel distance {q['mel_distance']:.3f}, SI-SNR {q['si_snr_db']:.2f} dB, "
          f"worst octave band {q['worst_band_deficit_db']:+.1f} dB")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"codec": str(args.codec), "fingerprint": codec.fingerprint, "manifest": str(args.manifest), **q}
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0
