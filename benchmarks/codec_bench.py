"""Audio codec benchmark: do reconstructions keep the events, how good are they, how fast is it.

On held-out clips of a dataset manifest (the synthetic dataset's `heldout` split by default):

- onsets: `eval.onsets.detect_onsets` on the original and on the reconstruction (continuous
  latents, the generator's path); the share of the original's onsets found again within the
  tolerance (10 ms) is the pass criterion (>= 95%). The same is reported against the manifest's
  ground-truth event times for the reconstruction and, as the ceiling, for the original audio.
- quality: SI-SNR (dB) and mel distance (mean |log mel| difference), mean over clips.
- spectral balance: power per octave band of the reconstructions against the originals (dB,
  summed over the clips), printed as a table and drawn next to the JSON (`codec_bench_bands.png`):
  a band far below the original is a hole that drops the events living in it.
- speed: encode and decode of a long signal, in times real time (audio seconds per wall second),
  on the CPU with `--threads` threads, and on the GPU when there is one.

    python benchmarks/codec_bench.py --codec runs/demo/codec/codec.pt \
        --manifest runs/demo/data/manifest.jsonl --quick

Prints a table and writes benchmarks/results/codec_bench.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio_codec import AudioCodec, load_codec  # noqa: E402
from audio_codec.data import load_audio_entries  # noqa: E402
from audio_codec.metrics import MelDistance, OctavePower, si_snr  # noqa: E402
from avio import load_manifest, read_audio  # noqa: E402
from benchmarks._host import cpu_model, write_json  # noqa: E402
from eval.onsets import detect_onsets, match_events  # noqa: E402


def _events(manifest: Path, ids: set[str]) -> dict[str, list[float]]:
    """Ground-truth event times per clip id, when the manifest has them (the synthetic dataset)."""
    return {e.id: sorted(float(ev["time"]) for ev in e.extra["events"])
            for e in load_manifest(manifest) if e.id in ids and isinstance(e.extra.get("events"), list)}


def quality(codec: AudioCodec, manifest: Path, split: str, max_clips: int, tolerance: float) -> dict[str, Any]:
    """Onset preservation, SI-SNR and mel distance over up to `max_clips` clips of `split`."""
    entries = load_audio_entries(manifest, split)[:max_clips]
    truth = _events(manifest, {e.id for e in entries})
    mel = MelDistance(codec.sample_rate).to(codec.device)
    octaves = OctavePower(codec.sample_rate).to(codec.device)
    band_power = {"original": 0.0, "recon": 0.0}
    sr = codec.sample_rate
    pairs = {"recon_vs_original": [0, 0], "recon_vs_events": [0, 0], "original_vs_events": [0, 0]}
    offsets: list[float] = []
    snrs, mels = [], []
    for entry in tqdm(entries, desc="held-out clips"):
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
        m = match_events(recon, original, tolerance)
        pairs["recon_vs_original"][0] += m.n_matched
        pairs["recon_vs_original"][1] += m.n_ref
        offsets += [abs(o) for o in m.offsets_ms]
        if entry.id in truth:
            for key, pred in (("recon_vs_events", recon), ("original_vs_events", original)):
                mt = match_events(pred, truth[entry.id], tolerance)
                pairs[key][0] += mt.n_matched
                pairs[key][1] += mt.n_ref
    recall = {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in pairs.items()}
    db = {k: (10 * torch.log10(torch.as_tensor(v) / max(len(entries), 1) + 1e-12)).tolist()
          for k, v in band_power.items()}
    bands = [{"band_hz": [round(lo), round(hi)], "original_db": o, "recon_db": r, "recon_minus_original_db": r - o}
             for lo, hi, o, r in zip(octaves.edges_hz[:-1], octaves.edges_hz[1:], db["original"], db["recon"])]
    return {
        "clips": len(entries),
        "split": split,
        "tolerance_ms": 1000 * tolerance,
        "onsets_original": pairs["recon_vs_original"][1],
        "onset_recall": recall["recon_vs_original"],
        "onset_mean_abs_offset_ms": float(np.mean(offsets)) if offsets else float("nan"),
        "events": pairs["recon_vs_events"][1],
        "event_recall_recon": recall["recon_vs_events"],
        "event_recall_original": recall["original_vs_events"],
        "si_snr_db": float(np.mean(snrs)),
        "mel_distance": float(np.mean(mels)),
        "passes_onset_criterion": bool(recall["recon_vs_original"] >= 0.95),
        "octave_bands": bands,
        "worst_band_deficit_db": min(b["recon_minus_original_db"] for b in bands),
    }


def speed(codec: AudioCodec, device: torch.device, seconds: float, reps: int) -> dict[str, float]:
    """Encode / decode speed in times real time on `device` (median of `reps` after a warm-up)."""
    codec = codec.to(device)
    x = 0.1 * torch.randn(1, codec.channels, int(seconds * codec.sample_rate), device=device)

    def timed(fn: Any) -> float:
        times = []
        for i in range(reps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up kernels and caches
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.inference_mode():
        z = codec.encode(x)
        t_enc = timed(lambda: codec.encode(x))
        t_dec = timed(lambda: codec.decode(z))
    return {"seconds": seconds, "encode_x_realtime": seconds / t_enc, "decode_x_realtime": seconds / t_dec}


def _plot_bands(bands: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bars of original and reconstructed power per octave band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{b['band_hz'][0]}-{b['band_hz'][1]}" for b in bands]
    pos = np.arange(len(bands))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(pos - 0.2, [b["original_db"] for b in bands], width=0.4, label="original")
    ax.bar(pos + 0.2, [b["recon_db"] for b in bands], width=0.4, label="reconstruction")
    ax.set_xticks(pos, labels, rotation=30, ha="right")
    ax.set_xlabel("octave band (Hz)")
    ax.set_ylabel("mean power (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", default="runs/demo/codec/codec.pt", help="codec file (or encodec_24khz)")
    parser.add_argument("--manifest", default="runs/demo/data/manifest.jsonl", help="dataset manifest")
    parser.add_argument("--split", default="heldout", help="split to evaluate (default: heldout)")
    parser.add_argument("--max-clips", type=int, default=64, help="clips to evaluate (default 64)")
    parser.add_argument("--tolerance-ms", type=float, default=10.0, help="onset tolerance (default 10 ms)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the CPU measurements (default 2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="signal length of the speed test (default 30)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument("--quick", action="store_true", help="CPU-friendly: 16 clips, 10 s signal, 2 repetitions")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_bench.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.max_clips, args.seconds, args.reps = min(args.max_clips, 16), min(args.seconds, 10.0), 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    codec = load_codec(args.codec).eval()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    result: dict[str, Any] = {
        "benchmark": "codec_bench",
        "command": " ".join(["python", "benchmarks/codec_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "codec": args.codec,
        "fingerprint": codec.fingerprint,
        "codec_config": codec.config_dict(),
        "hardware": {"cpu": cpu_model(), "threads": args.threads,
                     "gpu": torch.cuda.get_device_name(0) if gpu else None, "torch": torch.__version__},
    }
    result["quality"] = quality(codec.to(device), Path(args.manifest), args.split, args.max_clips,
                                args.tolerance_ms / 1000)
    result["speed"] = {"cpu": speed(codec, torch.device("cpu"), args.seconds, args.reps)}
    if gpu:
        result["speed"]["cuda"] = speed(codec, device, args.seconds, args.reps)

    q = result["quality"]
    rows = [
        ("held-out clips", f"{q['clips']} ({q['split']})"),
        (f"onsets kept within {q['tolerance_ms']:g} ms", f"{100 * q['onset_recall']:.1f}% of {q['onsets_original']}"
         f" ({'pass' if q['passes_onset_criterion'] else 'FAIL'}: >= 95%)"),
        ("mean |onset offset|", f"{q['onset_mean_abs_offset_ms']:.2f} ms"),
        ("events found: recon / original", f"{100 * q['event_recall_recon']:.1f}% / "
                                           f"{100 * q['event_recall_original']:.1f}% of {q['events']}"),
        ("SI-SNR", f"{q['si_snr_db']:.2f} dB"),
        ("mel distance", f"{q['mel_distance']:.3f}"),
        ("worst octave band, recon - original", f"{q['worst_band_deficit_db']:+.1f} dB"),
    ]
    for name, s in result["speed"].items():
        label = f"{name} ({args.threads} threads)" if name == "cpu" else f"{name} ({result['hardware']['gpu']})"
        rows.append((f"encode, {label}", f"{s['encode_x_realtime']:.1f}x real time"))
        rows.append((f"decode, {label}", f"{s['decode_x_realtime']:.1f}x real time"))
    width = max(len(r[0]) for r in rows)
    print(f"\ncodec {args.codec} ({result['fingerprint']}), CPU {result['hardware']['cpu']}")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    print("\n  octave band (Hz)   original dB   recon dB   difference")
    for b in q["octave_bands"]:
        lo, hi = b["band_hz"]
        print(f"  {lo:>6d}-{hi:<6d}     {b['original_db']:9.1f}   {b['recon_db']:8.1f}   {b['recon_minus_original_db']:+9.1f}")
    out = write_json(args.out, result)
    plot = out.with_name(out.stem + "_bands.png")
    _plot_bands(q["octave_bands"], plot, title=f"{args.codec}: power per octave band, {q['clips']} {q['split']} clips")
    print(f"wrote {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
