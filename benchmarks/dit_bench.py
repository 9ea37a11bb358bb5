"""Benchmark of the audio-video diffusion transformer: training step time, tokens/s, MoE dispatch.

Three tables:
  1. model: forward + backward of a preset (flow-matching loss) with grouped and reference MoE
     dispatch: ms per step, tokens/s, achieved TFLOP/s (from `count_params`) and MFU on CUDA;
  2. moe: one MoE layer alone, forward + backward, grouped vs reference, including skewed routing;
  3. correctness: largest difference between grouped and reference outputs and gradients.

    python benchmarks/dit_bench.py --quick                 # CPU, seconds
    python benchmarks/dit_bench.py                         # CUDA: small and h100_1b presets in bf16

Writes benchmarks/results/dit_bench.json.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from av_model.dit import AVDiT, count_params, get_preset  # noqa: E402
from av_model.dit.moe import MoEFeedForward  # noqa: E402
from av_model.flow.matching import FlowConfig, FlowMatching  # noqa: E402
from av_model.text import TextBatch  # noqa: E402
from benchmarks._host import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dit_bench.json"
H100_BF16_PEAK_TFLOPS = 989.0  # dense bf16 tensor-core peak of an H100 SXM

# preset -> (batch, video latent (T, H, W), audio latent frames, video rate, audio rate)
GEOMETRY = {
    "debug": (2, (8, 8, 8), 150, 4.0, 75.0),
    "tiny": (8, (8, 8, 8), 150, 4.0, 75.0),  # the embedded default: 2 s, 128 + 50 tokens
    "tiny_dense": (8, (8, 8, 8), 150, 4.0, 75.0),
    "small": (8, (16, 16, 16), 375, 3.2, 75.0),  # 5 s: 1024 + 125 tokens
    "h100_1b": (1, (16, 32, 64), 375, 3.2, 75.0),  # 5 s: 8192 + 125 tokens
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds per call of `fn`."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_model(preset: str, device: torch.device, dtype: torch.dtype, warmup: int, iters: int) -> list[dict]:
    batch, (tv, hv, wv), ta, video_rate, audio_rate = GEOMETRY[preset]
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = AVDiT(cfg).to(device)
    video = torch.randn(batch, cfg.video_channels, tv, hv, wv, device=device)
    audio = torch.randn(batch, cfg.audio_channels, ta, device=device)
    text = TextBatch(tuple(torch.randn(batch, 16, d, device=device) for d in cfg.text_dims),
                     tuple(torch.ones(batch, 16, dtype=torch.bool, device=device) for _ in cfg.text_dims))
    flow = FlowMatching(FlowConfig())
    n_tokens = model.layout(tuple(video.shape), tuple(audio.shape), video_rate, audio_rate).num_tokens
    flops = count_params(cfg, seq_len=n_tokens, text_len=16).flops_per_token * n_tokens * batch
    rows = []
    dispatches = ["grouped", "reference"] if not cfg.is_dense else ["dense"]
    for dispatch in dispatches:
        if dispatch != "dense":
            model.set_dispatch(dispatch)

        def step() -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = flow.loss(model, video, audio, text, video_rate, audio_rate).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

        sec = _time(step, device, warmup, iters)
        row = {
            "table": "model", "preset": preset, "dispatch": dispatch, "batch": batch, "tokens_per_sample": n_tokens,
            "ms_per_step": sec * 1e3, "tokens_per_s": batch * n_tokens / sec, "tflops": flops / sec / 1e12,
        }
        if device.type == "cuda":
            row["mfu"] = row["tflops"] / H100_BF16_PEAK_TFLOPS
            row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
        rows.append(row)
    return rows


def _moe_inputs(tokens: int, width: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, width, generator=g).to(device)
    modality = (torch.arange(tokens) % 5 == 0).long().to(device)
    bucket = torch.randint(0, 4, (tokens,), generator=g).to(device)
    return x, modality, bucket


def _moe_step(layer: MoEFeedForward, x: torch.Tensor, modality: torch.Tensor, bucket: torch.Tensor,
              dtype: torch.dtype) -> None:
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = layer(x, modality, bucket).out_TD
    out.float().square().mean().backward()


def bench_moe(device: torch.device, dtype: torch.dtype, quick: bool, warmup: int, iters: int) -> list[dict]:
    shapes = [(2048, 128, 256, 8, 2)] if quick else [(8192, 2048, 1024, 16, 2), (16384, 2048, 1024, 16, 2),
                                                      (16384, 4096, 1536, 64, 4)]
    rows = []
    for tokens, width, hidden, experts, k in shapes:
        for skew in (0.0, 2.0):
            torch.manual_seed(0)
            layer = MoEFeedForward(width, hidden, experts, k, num_shared=0, balance="none").to(device)
            with torch.no_grad():  # skew > 0 sends most tokens to the first experts
                layer.router_bias_ME += -skew * torch.arange(experts, device=device).float() / experts * 4
            x, modality, bucket = _moe_inputs(tokens, width, device)
            x.requires_grad_(True)
            counts = layer(x, modality, bucket).counts_E
            flops = 3 * 2 * 3 * width * hidden * tokens * k  # 3 matmuls, fwd + 2x bwd
            for dispatch in ("grouped", "reference"):
                layer.dispatch = dispatch
                step = functools.partial(_moe_step, layer, x, modality, bucket, dtype)
                sec = _time(step, device, warmup, iters)
                rows.append({
                    "table": "moe", "tokens": tokens, "width": width, "hidden": hidden, "experts": experts,
                    "top_k": k, "skew": skew, "max_load_ratio": float(counts.max() / counts.mean()),
                    "dispatch": dispatch, "ms": sec * 1e3, "tflops": flops / sec / 1e12,
                })
    return rows


def check_equivalence(device: torch.device, dtype: torch.dtype) -> dict:
    """Grouped vs reference on one layer, including an expert that gets no tokens."""
    torch.manual_seed(0)
    layer = MoEFeedForward(256, 512, 8, 2, num_shared=1, balance="none").to(device)
    with torch.no_grad():
        layer.router_bias_ME[:, 3] = -1e4
    x, modality, bucket = _moe_inputs(1024, 256, device)
    results = {}
    for dispatch in ("reference", "grouped"):
        layer.dispatch = dispatch
        layer.zero_grad()
        xx = x.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = layer(xx, modality, bucket).out_TD
        (out.float() * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
        results[dispatch] = (out.detach().float(), xx.grad.float(), layer.w13_ED2F.grad.float())
    ref, grp = results["reference"], results["grouped"]
    scale = [r.abs().max().item() for r in ref]
    return {
        "table": "correctness", "dtype": str(dtype).replace("torch.", ""),
        "out_max_rel_diff": (grp[0] - ref[0]).abs().max().item() / scale[0],
        "grad_x_max_rel_diff": (grp[1] - ref[1]).abs().max().item() / scale[1],
        "grad_w13_max_rel_diff": (grp[2] - ref[2]).abs().max().item() / scale[2],
        "empty_expert_grad": results["grouped"][2][3].abs().max().item(),
    }


def _print_table(rows: list[dict], keys: list[str]) -> None:
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [keys] + [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
    for i, row in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU-sized run (tiny preset, small MoE layer)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, unless --quick)")
    parser.add_argument("--presets", default=None, help="comma-separated presets for the model table")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: up to 2)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu" and not (args.quick and args.device is None)
    device = torch.device("cuda" if cuda else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("dit_bench: --device cuda but no CUDA device is visible.", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    presets = (args.presets or ("tiny,tiny_dense" if device.type == "cpu" else "small,h100_1b")).split(",")
    unknown = [p for p in presets if p not in GEOMETRY]
    if unknown:
        print(f"dit_bench: no benchmark geometry for presets {unknown}; choose from {list(GEOMETRY)}.", file=sys.stderr)
        return 2
    iters = args.iters or (5 if device.type == "cpu" else 10)
    warmup = 2 if device.type == "cpu" else 3
    if device.type == "cpu":
        torch.set_num_threads(args.threads or min(2, torch.get_num_threads()))

    print(f"device: {torch.cuda.get_device_name() if cuda else platform.processor() or 'cpu'}; "
          f"dtype {dtype}; torch {torch.__version__}\n")
    model_rows = []
    for preset in presets:
        model_rows += bench_model(preset, device, dtype, warmup, iters)
        if cuda:
            torch.cuda.empty_cache()
    _print_table(model_rows, ["preset", "dispatch", "batch", "tokens_per_sample", "ms_per_step", "tokens_per_s",
                              "tflops"] + (["mfu", "peak_mem_gb"] if cuda else []))
    moe_rows = bench_moe(device, dtype, args.quick or not cuda, warmup, iters)
    _print_table(moe_rows, ["tokens", "width", "hidden", "experts", "top_k", "skew", "max_load_ratio", "dispatch",
                            "ms", "tflops"])
    check = check_equivalence(device, dtype)
    _print_table([check], list(check))
    payload = {
        "device": torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu"),
        "cpu_threads": torch.get_num_threads(), "dtype": str(dtype), "torch": torch.__version__,
        "command": "python benchmarks/dit_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": model_rows + moe_rows + [check],
    }
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
