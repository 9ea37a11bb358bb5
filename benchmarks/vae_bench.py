"""Video autoencoder benchmark: encode/decode speed and peak memory, and reconstruction quality.

Measures, on the machine it runs on:

1. speed: frames per second of `encode` and `decode` (whole clip and chunked) and their peak
   memory, for the demo geometry (32 frames of 64x64) on the CPU; on a GPU also for a 5-second
   256p clip (120 frames of 256x256 at 24 fps) with the given autoencoder and the `tae_16ch`
   preset in bf16;
2. quality (with `--vae`): on held-out synthetic clips, the fraction of frames whose object
   centroid stays within 2 px, PSNR, SSIM (`av_model.vae.quality`), and how far chunked
   encoding/decoding lands from whole-clip results compared with the reconstruction error.

Prints a table and writes benchmarks/results/vae_bench.json.

    python benchmarks/vae_bench.py --vae runs/demo/vae/vae.pt            # 64 held-out clips
    python benchmarks/vae_bench.py --vae runs/demo/vae/vae.pt --quick    # 16 clips, fewer repeats
    python benchmarks/vae_bench.py --quick                               # speed only, untrained `small`
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from av_model.vae import ChunkConfig, VideoAutoencoder, get_preset, load_video_autoencoder  # noqa: E402
from benchmarks._host import cpu_model, write_json  # noqa: E402


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median seconds of `fn()` over `repeats` runs (after one warm-up) and its peak memory in MB.

    CPU memory is the process's peak resident set during the runs minus the resident set before
    (Linux VmHWM, reset first); CUDA memory is `torch.cuda.max_memory_allocated` minus the
    memory allocated before.
    """
    fn()  # warm-up: first-call allocations and kernel selection are not what a long job sees
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        can_reset = _reset_peak_rss()
        base_kb = _rss_kb("VmRSS")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        hwm = _rss_kb("VmHWM")
        peak = (hwm - base_kb) / 1024 if can_reset and hwm is not None and base_kb is not None else None
    times.sort()
    return times[len(times) // 2], peak


@torch.inference_mode()
def bench_speed(
    name: str, vae: VideoAutoencoder, frames: int, size: int, device: torch.device, repeats: int,
    chunks: ChunkConfig, dtype: torch.dtype = torch.float32,
) -> list[dict[str, Any]]:
    vae = vae.to(device=device, dtype=dtype).eval()
    x = (torch.rand(1, 3, frames, size, size, device=device) * 2 - 1).to(dtype)
    z = vae.encode(x)
    rows = []
    for op, fn in [
        ("encode", lambda: vae.encode(x)),
        ("decode", lambda: vae.decode(z)),
        ("encode_chunked", lambda: vae.encode_chunked(x, chunks)),
        ("decode_chunked", lambda: vae.decode_chunked(z, chunks)),
    ]:
        seconds, peak = measure(fn, device, repeats)
        rows.append({
            "model": name, "op": op, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "clip": f"{frames}x{size}x{size}", "seconds": seconds, "fps": frames / seconds, "peak_mb": peak,
        })
    return rows


@torch.inference_mode()
def bench_chunk_agreement(vae: VideoAutoencoder, n_clips: int, chunks: ChunkConfig) -> dict[str, float]:
    """Mean |chunked - whole| against the mean reconstruction error |whole - input| on held-out clips."""
    import numpy as np

    from av_model.data.synthetic import SynthConfig, clip_seed, generate_clip

    cfg = SynthConfig()
    clips = [generate_clip(clip_seed(0, "heldout", i), cfg, split="heldout").frames for i in range(n_clips)]
    x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (B, 3, T, H, W)
    vae = vae.float().cpu().eval()
    z = vae.encode(x)
    whole = vae.decode(z)
    return {
        "recon_error": float((whole - x).abs().mean()),
        "encode_chunked_vs_whole": float((vae.decode(vae.encode_chunked(x, chunks)) - whole).abs().mean()),
        "decode_chunked_vs_whole": float((vae.decode_chunked(z, chunks) - whole).abs().mean()),
        "chunks": str(chunks),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", default=None, help="trained vae.pt; without it only speed is measured, on the untrained `small` preset")
    p.add_argument("--quick", action="store_true", help="fewer clips and repeats (a CPU smoke run)")
    p.add_argument("--clips", type=int, default=None, help="held-out clips for the quality check (default 64, 16 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default="benchmarks/results/vae_bench.json", help="JSON results file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 10
    n_clips = args.clips or (16 if args.quick else 64)
    vae = load_video_autoencoder(args.vae) if args.vae else VideoAutoencoder(get_preset("small"))
    label = Path(args.vae).name if args.vae else "small (untrained)"

    # 1. Speed on the CPU: the demo geometry
    small_chunks = ChunkConfig(chunk_frames=16, overlap_frames=8, tile_size=32, tile_overlap=16)
    rows = bench_speed(label, vae, 32, 64, torch.device("cpu"), repeats, small_chunks)
    # 2. Speed on the GPU: a 5-second 256p clip
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        long_chunks = ChunkConfig(chunk_frames=32, overlap_frames=8, tile_size=None)
        rows += bench_speed(label, vae, 120, 256, gpu, repeats, long_chunks)
        rows += bench_speed("tae_16ch (bf16)", VideoAutoencoder(get_preset("tae_16ch")), 120, 256, gpu, repeats,
                            long_chunks, dtype=torch.bfloat16)
    # 3. Quality on held-out synthetic clips
    quality: dict[str, Any] | None = None
    agreement: dict[str, float] | None = None
    if args.vae:
        from av_model.vae.quality import evaluate_synthetic

        quality = evaluate_synthetic(vae.float().cpu(), n_clips=n_clips, split="heldout").to_dict()
        agreement = bench_chunk_agreement(vae, min(n_clips, 8), small_chunks)

    # 4. Report
    print(f"\nVideo autoencoder benchmark ({cpu_model()}, {torch.get_num_threads()} CPU threads"
          f"{', ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''})\n")
    print(f"{'model':<22} {'op':<15} {'device':<6} {'clip':<12} {'frames/s':>10} {'peak MB':>9}")
    for r in rows:
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "n/a"
        print(f"{r['model']:<22} {r['op']:<15} {r['device']:<6} {r['clip']:<12} {r['fps']:>10.1f} {peak:>9}")
    if quality is not None and agreement is not None:
        print(f"\nheld-out synthetic clips: {quality['clips']} ({quality['frames']} frames with objects)")
        print(f"  centroid within 2 px: {100 * quality['centroid_within_2px']:.1f}% of frames "
              f"(mean {quality['centroid_mean_px']:.2f} px, p95 {quality['centroid_p95_px']:.2f} px)")
        print(f"  PSNR {quality['psnr_db']:.2f} dB, SSIM {quality['ssim']:.4f}, L1 {quality['l1']:.4f}")
        print("  per family (within 2 px): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in quality["per_family"].items()))
        print(f"  chunked vs whole: encode {agreement['encode_chunked_vs_whole']:.4f}, decode "
              f"{agreement['decode_chunked_vs_whole']:.4f} (reconstruction error {agreement['recon_error']:.4f})")
    result = {
        "benchmark": "vae_bench",
        "command": "python benchmarks/vae_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "torch": torch.__version__,
        "vae": args.vae,
        "vae_fingerprint": vae.fingerprint,
        "speed": rows,
        "quality_heldout": quality,
        "chunked_vs_whole": agreement,
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
