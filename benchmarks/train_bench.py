"""Training-step throughput of the diffusion transformer: tokens/s, TFLOP/s and MFU per preset.

One step is what `AVDiffusion.training_step` runs plus the optimizer: the flow-matching loss
(forward), backward, gradient clipping and a fused AdamW step, on random latents of each preset's
geometry. FLOPs come from `count_params` at the batch's token counts (active weights plus
attention), the same figure the ThroughputMFU callback logs during training.

    python benchmarks/train_bench.py --quick [--threads 1]        # CPU: debug, tiny, tiny_dense
    python benchmarks/train_bench.py                              # CUDA: tiny .. h100_1b in bf16
    python benchmarks/train_bench.py --presets h100_1b --compile --ac full
    python benchmarks/train_bench.py --make-cache /tmp/cache --geometry h100_1b --clips 64
        # a latent cache of random latents with that geometry, to time `avgen fit` end to end

Prints a table and writes benchmarks/results/train_bench.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from av_model.dit import AVDiT, count_params, get_preset
from av_model.flow.matching import FlowConfig, FlowMatching
from av_model.text.batch import TextBatch
from av_model.train.parallel import ParallelConfig, apply_parallelism

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Geometry:
    """Latent shapes of one clip and the latent rates (frames per second)."""

    video: tuple[int, int, int, int]  # (C_v, T_v, H_v, W_v)
    audio: tuple[int, int]  # (C_a, T_a)
    video_rate: float
    audio_rate: float
    text_tokens: int
    text_dim: int = 384


# Embedded default: 2 s of 64x64 at 16 fps through the small VAE (8 ch) and small codec (16 ch).
_SMALL = Geometry((8, 8, 8, 8), (16, 150), 4.0, 75.0, 24)
GEOMETRIES: dict[str, Geometry] = {
    "debug": _SMALL,
    "tiny": _SMALL,
    "tiny_dense": _SMALL,
    # 4 s of 256x256 at 16 fps (4x8x8, 16 ch) with EnCodec 24 kHz latents (128 ch, 75 Hz).
    "small": Geometry((16, 16, 32, 32), (128, 300), 4.0, 75.0, 64),
    "h100_1b": Geometry((16, 16, 32, 32), (128, 300), 4.0, 75.0, 64),
    "cluster_8b": Geometry((16, 32, 48, 48), (128, 600), 4.0, 75.0, 128),
}


def _model(preset: str, geo: Geometry, device: torch.device, ac: str, compile_blocks: bool,
           overrides: dict | None = None) -> AVDiT:
    cfg = get_preset(preset, **{**(overrides or {}), "video_channels": geo.video[0], "audio_channels": geo.audio[0],
                                "text_dims": (geo.text_dim,)})
    with device:  # initialize on the device: a 1B model initializes in seconds on a GPU, minutes on a CPU
        model = AVDiT(cfg)
    if ac != "none" or compile_blocks:
        apply_parallelism(model, ParallelConfig(activation_checkpointing=ac, compile=compile_blocks))
    return model


def _batch(geo: Geometry, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, TextBatch]:
    g = torch.Generator(device="cpu").manual_seed(0)
    video = torch.randn(b, *geo.video, generator=g).to(device)
    audio = torch.randn(b, *geo.audio, generator=g).to(device)
    text = TextBatch((torch.randn(b, geo.text_tokens, geo.text_dim, generator=g).to(device),),
                     (torch.ones(b, geo.text_tokens, dtype=torch.bool, device=device),))
    return video, audio, text


def bench(preset: str, batch: int, steps: int, device: torch.device, *, ac: str = "none", compile_blocks: bool = False,
          peak_tflops: float | None = None, overrides: dict | None = None, geometry: str | None = None) -> dict:
    """Median step time of `steps` timed steps (after warm-up) and the numbers derived from it.

    `overrides` are DiTConfig fields over the preset (a config's `model.overrides`, e.g. a dense
    twin); `geometry` names the clip geometry when it is not the preset's own.
    """
    geo = GEOMETRIES[geometry or preset]
    torch.manual_seed(0)
    model = _model(preset, geo, device, ac, compile_blocks, overrides)
    flow = FlowMatching(FlowConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    video, audio, text = _batch(geo, batch, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    lay = model.layout((batch, *geo.video), (batch, *geo.audio), geo.video_rate, geo.audio_rate)
    flops_per_token = count_params(model.cfg, seq_len=lay.num_tokens, text_len=geo.text_tokens).flops_per_token
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 3):  # three warm-up steps (compilation, allocator, cuDNN autotuning)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast:
            out = flow.loss(model, video, audio, text, geo.video_rate, geo.audio_rate)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_router_bias()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    step = sorted(times)[len(times) // 2]
    tokens = batch * lay.num_tokens
    tflops = tokens * flops_per_token / step / 1e12
    params = count_params(model.cfg)
    row = {
        "preset": preset, "device": _device_name(device), "batch": batch, "tokens_per_step": tokens,
        "params_total_M": params.total / 1e6, "params_active_M": params.active / 1e6, "step_ms": 1e3 * step,
        "tokens_per_s": tokens / step, "tflops_per_s": tflops, "ac": ac, "compile": compile_blocks,
        "dtype": "bf16-mixed" if device.type == "cuda" else "fp32",
    }
    if peak_tflops:
        row["mfu"] = tflops / peak_tflops
    if device.type == "cuda":
        row["peak_mem_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def make_cache(out: Path, preset: str, clips: int, val_clips: int = 8) -> Path:
    """A latent cache of random latents with `preset`'s geometry (for timing `avgen fit`)."""
    from av_model.cache.format import (
        SHARD_DIR,
        CacheEntry,
        CacheMeta,
        shard_name,
        write_index,
        write_meta,
        write_shard,
    )

    geo = GEOMETRIES[preset]
    g = torch.Generator().manual_seed(0)
    meta = CacheMeta(
        fingerprints={"codec": "random", "vae": "random", "text": "random"},
        encoders={"codec": None, "vae": None, "text": ["minilm"]},
        video={"fps": 16.0, "height": geo.video[2] * 8, "width": geo.video[3] * 8, "latent_dim": geo.video[0],
               "latent_rate": geo.video_rate, "temporal_compression": 4, "spatial_compression": 8},
        audio={"sample_rate": 24000, "channels": 1, "latent_dim": geo.audio[0], "latent_rate": geo.audio_rate,
               "hop_length": 320},
        text={"dims": [geo.text_dim], "specs": ["minilm"]},
        build={"manifest_sha256": "random", "split": None, "shard_size": 64},
    )
    rows_all = []
    names = [("train", clips), ("val", val_clips)]
    ids = [(split, i) for split, n in names for i in range(n)]
    for s in range(0, len(ids), 64):
        tensors, rows = {}, []
        for split, i in ids[s: s + 64]:
            cid = f"{split}-{i:05d}"
            tensors[f"{cid}/video"] = torch.randn(*geo.video, generator=g)
            tensors[f"{cid}/audio"] = torch.randn(*geo.audio, generator=g)
            tensors[f"{cid}/text_0"] = torch.randn(geo.text_tokens, geo.text_dim, generator=g)
            tensors[f"{cid}/text_mask_0"] = torch.ones(geo.text_tokens, dtype=torch.bool)
            rows.append(CacheEntry(cid, "random latents", split, geo.video[1] / geo.video_rate, 16.0,
                                   geo.video[2] * 8, geo.video[3] * 8, shard_name(s // 64), geo.video, geo.audio,
                                   (geo.text_tokens,)))
        write_shard(out / SHARD_DIR / shard_name(s // 64), tensors, rows)
        meta.shards.append({"name": shard_name(s // 64), "clips": len(rows), "skipped": []})
        rows_all += rows
    meta.num_shards, meta.complete = len(meta.shards), True
    write_index(out, rows_all)
    write_meta(out, meta)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU: the embedded default's presets, a few steps")
    p.add_argument("--presets", nargs="+", help="presets to time (default: by device)")
    p.add_argument("--batch", type=int, nargs="+", help="batch size per preset (default: by preset)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 20 CUDA)")
    p.add_argument("--ac", choices=("none", "full", "selective"), default="none", help="activation checkpointing")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--peak-tflops", type=float, help="peak for MFU (default 989.4 on H100 SXM, none on CPU)")
    p.add_argument("--make-cache", type=Path, help="write a random-latent cache here and exit")
    p.add_argument("--geometry", default="h100_1b", help="geometry of --make-cache (a preset name)")
    p.add_argument("--clips", type=int, default=64, help="training clips of --make-cache")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's default)")
    p.add_argument("--out", type=Path, default=RESULTS / "train_bench.json", help="JSON results file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.make_cache:
        print(f"wrote {make_cache(args.make_cache, args.geometry, args.clips)}")
        return
    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if cuda else "cpu")
    presets = args.presets or (["tiny", "tiny_dense", "small", "h100_1b"] if cuda else ["debug", "tiny", "tiny_dense"])
    default_batch = {"debug": 8, "tiny": 8, "tiny_dense": 8, "small": 8, "h100_1b": 4, "cluster_8b": 1}
    batches = args.batch or [default_batch[name] for name in presets]
    if len(batches) == 1:
        batches = batches * len(presets)
    steps = args.steps or (20 if cuda else 5)
    peak = args.peak_tflops
    if peak is None and cuda and "H100" in torch.cuda.get_device_name(device):
        peak = 989.4  # dense bf16 of the H100 SXM, the figure Lightning's table and MFU papers use
    rows = []
    for name, b in zip(presets, batches):
        try:
            rows.append(bench(name, b, steps, device, ac=args.ac, compile_blocks=args.compile, peak_tflops=peak))
        except torch.OutOfMemoryError:
            print(f"{name} at batch {b}: out of memory (try --ac selective|full or a smaller --batch)")
            rows.append({"preset": name, "batch": b, "device": _device_name(device), "error": "out of memory",
                         "ac": args.ac, "compile": args.compile})
        if cuda:
            torch.cuda.empty_cache()
    cols = ["preset", "batch", "tokens_per_step", "params_active_M", "step_ms", "tokens_per_s", "tflops_per_s"]
    cols += ["mfu"] if peak else []
    cols += ["peak_mem_GiB"] if cuda else []
    print(f"device: {rows[0]['device']}, {'bf16-mixed' if cuda else 'fp32'}, ac={args.ac}, compile={args.compile}, "
          f"{steps} timed steps")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        if "error" not in r:
            print(" | ".join(f"{r[c]:>14.4g}" if isinstance(r[c], float) else f"{r[c]!s:>14}" for c in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "command": " ".join(["python benchmarks/train_bench.py", *sys.argv[1:]]),
            "peak_tflops": peak}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
