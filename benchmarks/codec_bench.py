"""Audio codec benchmark: do reconstructions keep the events, how good are they, how fast is it.

On held-out clips of a dataset manifest (the synthetic dataset's `heldout` split by default), the
figures of `avgen codec-check` (`eval.codec_check`) and the codec's speed:

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio_codec import AudioCodec, load_codec  # noqa: E402
from benchmarks._host import cpu_model, write_json  # noqa: E402
from eval.codec_check import codec_events  # noqa: E402


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
    result["quality"] = codec_events(codec.to(device), Path(args.manifest), args.split, args.max_clips,
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
