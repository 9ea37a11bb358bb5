"""Image-to-audio-video and long clips: first-frame fidelity, and continuity at the chunk seams.

On held-out clips of the synthetic dataset (lines "path<TAB>caption", e.g. the demo's
`heldout_videos.txt`), with a generator checkpoint and its codec and autoencoder:

- image (`--only image`): the first frame of each held-out clip, written as a PNG, is given with
  its caption (`avgen sample --image`). First-frame PSNR (dB) of the generated clip against the
  image, beside the ceiling (the autoencoder's own round trip of the image: what holding its latent
  can give at best) and the floor (text-to-audio-video from the same caption and seed, which never
  sees the image). Events after the first frame: audio onsets (`eval.onsets`) and visual events
  (`eval.metrics.visual_events`) per clip after the image's latent frame, beside the held-out
  clips' own (the data's rate).
- seams (`--only seams`): clips of `--duration` seconds made chunk by chunk (`--window`,
  `--history`) and, as the floor, the same prompts and seeds in one pass. Video: mean absolute
  difference of consecutive frames (0-255) across each seam (the first frame a chunk makes after
  its history) against the other latent-frame boundaries (where the decoder's own step between
  latent frames lies; every consecutive pair is printed too). Audio: spectral flux (mean |change of log
  magnitude| between 20 ms STFT frames) across each seam against elsewhere. A ratio near 1 is a
  seam no rougher than the rest of the clip; the one-pass row measures the same positions of a clip
  that has no seam.

    python benchmarks/sample_tasks_bench.py --ckpt runs/demo/dit_moe/final.ckpt \
        --heldout runs/demo/heldout_videos.txt --clips 4 --duration 8 --steps 25

Prints a table and writes benchmarks/results/sample_tasks_bench.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from av_model.sample.generator_file import load_generator  # noqa: E402
from av_model.sample.pipeline import AVPipeline, GeneratedClip  # noqa: E402
from av_model.sample.task_inputs import psnr  # noqa: E402
from avio import read_clip  # noqa: E402
from benchmarks._host import write_json  # noqa: E402
from eval.metrics.visual_events import detect_visual_events  # noqa: E402
from eval.onsets import detect_onsets  # noqa: E402


def _heldout(path: Path, n: int) -> list[tuple[Path, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[:n]:
        name, _, caption = line.partition("\t")
        p = Path(name)
        rows.append((p if p.is_absolute() else path.parent / p, caption.strip()))
    return rows


def _events_after(frames: torch.Tensor, audio: torch.Tensor, fps: float, sample_rate: int, after: float) -> dict:
    """Audio onsets and visual events per clip later than `after` seconds."""
    onsets = detect_onsets(audio.numpy(), sample_rate)
    visual = detect_visual_events(frames.numpy(), fps)
    return {"onsets": int((np.asarray(onsets) > after).sum()), "visual": sum(1 for e in visual if e.time > after)}


# ------------------------------------------------------------------------------------------ image
def bench_image(pipe: AVPipeline, rows: list[tuple[Path, str]], out: Path, steps: int, seed: int) -> dict[str, Any]:
    import cv2

    h, w = pipe.size
    first_latent_s = pipe.tc / pipe.fps
    images, prompts, refs = [], [], []
    for i, (path, caption) in enumerate(rows):
        clip = read_clip(path, fps=pipe.fps, size=(h, w), sample_rate=pipe.sample_rate, channels=pipe.codec.channels)
        png = out / f"first_{i:02d}.png"
        cv2.imwrite(str(png), clip.frames[0].numpy()[..., ::-1])
        images.append(png)
        prompts.append(caption)
        assert clip.audio is not None
        refs.append(_events_after(clip.frames, clip.audio, pipe.fps, pipe.sample_rate, first_latent_s))
    duration = float(pipe.window or 2.0)
    t0 = time.perf_counter()
    i2av = pipe(prompts, task="i2av", images=images, duration=duration, steps=steps, seed=seed, progress=False)
    t_i2av = time.perf_counter() - t0
    t2av = pipe(prompts, task="t2av", duration=duration, steps=steps, seed=seed, progress=False)
    per_clip = []
    for png, a, b, ref in zip(images, i2av, t2av, refs):
        image = torch.from_numpy(cv2.imread(str(png))[..., ::-1].copy())
        with torch.no_grad():  # the ceiling: the autoencoder's round trip of the still image
            z = pipe.vae.encode(image[None, None].permute(0, 4, 1, 2, 3).float().to(pipe.device) / 127.5 - 1)
            x = pipe.vae.decode(z)[:, :, 0]  # (1, 3, H, W): the first of the still clip's frames
        recon = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu()
        per_clip.append({
            "i2av_psnr": psnr(a.frames[0], image), "t2av_psnr": psnr(b.frames[0], image),
            "vae_psnr": psnr(recon, image),
            "i2av_events": _events_after(a.frames, a.audio, pipe.fps, pipe.sample_rate, first_latent_s),
            "t2av_events": _events_after(b.frames, b.audio, pipe.fps, pipe.sample_rate, first_latent_s),
            "data_events": ref,
        })

    def mean(key: str, sub: str | None = None) -> float:
        return statistics.fmean(c[key][sub] if sub else c[key] for c in per_clip)

    return {
        "clips": len(per_clip), "duration": duration, "seconds_i2av": t_i2av,
        "psnr_db": {"i2av": mean("i2av_psnr"), "t2av_floor": mean("t2av_psnr"), "vae_ceiling": mean("vae_psnr")},
        "events_after_first_latent": {k: {"onsets": mean(f"{k}_events", "onsets"), "visual": mean(f"{k}_events", "visual")}
                                      for k in ("i2av", "t2av", "data")},
        "per_clip": per_clip,
    }


# ------------------------------------------------------------------------------------------ seams
def _flux(audio: torch.Tensor, sample_rate: int, hop_s: float = 0.02) -> tuple[np.ndarray, int]:
    """(frames - 1,) spectral flux between consecutive STFT frames of a mono mix, and the hop in samples."""
    hop = round(hop_s * sample_rate)
    spec = torch.stft(audio.mean(0), n_fft=2 * hop, hop_length=hop, window=torch.hann_window(2 * hop),
                      center=False, return_complex=True).abs()  # (F, N)
    logmag = torch.log(spec + 1e-4)
    return (logmag[:, 1:] - logmag[:, :-1]).abs().mean(0).numpy(), hop


def _seam_stats(clip: GeneratedClip, seams_s: list[float], sample_rate: int, tc: int) -> dict[str, float]:
    """Frame difference and spectral flux across the seams at `seams_s` seconds and elsewhere.

    Seams fall on latent-frame boundaries (every `tc` frames), where the decoder's step from one
    latent frame to the next is larger than between frames decoded from one latent, so the video
    is compared with the other latent-frame boundaries ("inside"), and with every frame pair.
    """
    frames = clip.frames.float()
    diffs = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).numpy()  # diffs[i]: frames i -> i+1
    seam_idx = {round(s * clip.fps) - 1 for s in seams_s}
    at_v = [diffs[i] for i in seam_idx]
    in_v = [d for i, d in enumerate(diffs) if i not in seam_idx and (i + 1) % tc == 0]
    in_all = [d for i, d in enumerate(diffs) if i not in seam_idx]
    flux, hop = _flux(clip.audio, sample_rate)  # flux[j]: STFT frames j -> j+1, frame j spans [j hop, j hop + 2 hop)
    seam_j = set()
    for s in seams_s:
        n = round(s * sample_rate)
        seam_j |= {j for j in range(len(flux)) if j * hop <= n < (j + 3) * hop}  # pairs whose frames straddle it
    at_a = [flux[j] for j in seam_j]
    in_a = [f for j, f in enumerate(flux) if j not in seam_j]
    return {"video_seam": float(np.mean(at_v)), "video_inside": float(np.mean(in_v)),
            "video_all_pairs": float(np.mean(in_all)),
            "audio_seam": float(np.mean(at_a)), "audio_inside": float(np.mean(in_a))}


def bench_seams(pipe: AVPipeline, prompts: list[str], duration: float, window: float | None, history: float | None,
                steps: int, seed: int) -> dict[str, Any]:
    plan = pipe.long_clip(duration, window, history)
    if plan is None:
        raise SystemExit(f"--duration {duration} fits one window; ask for a longer clip.")
    t0 = time.perf_counter()
    chunked = pipe(prompts, duration=duration, window=window, history=history, steps=steps, seed=seed, progress=False)
    t_chunked = time.perf_counter() - t0
    seams = [c["start"] + c["history"] for c in chunked[0].info["chunks"][1:]]  # the first frame each chunk makes
    t0 = time.perf_counter()
    one = pipe(prompts, duration=duration, window=duration, steps=steps, seed=seed, progress=False)
    t_one = time.perf_counter() - t0
    rows = {}
    for name, clips in (("chunked", chunked), ("one_pass", one)):
        stats = [_seam_stats(c, seams, pipe.sample_rate, pipe.tc) for c in clips]
        avg = {k: statistics.fmean(s[k] for s in stats) for k in stats[0]}
        avg["video_ratio"] = avg["video_seam"] / max(avg["video_inside"], 1e-9)
        avg["audio_ratio"] = avg["audio_seam"] / max(avg["audio_inside"], 1e-9)
        rows[name] = {**avg, "per_clip": stats}
    return {"clips": len(prompts), "duration": duration, "window": plan[0], "history": plan[1], "seams_s": seams,
            "seconds": {"chunked": t_chunked, "one_pass": t_one}, "rows": rows}


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, required=True, help="generator checkpoint")
    p.add_argument("--codec", type=Path, help="codec (default: the cache's)")
    p.add_argument("--vae", type=Path, help="video autoencoder (default: the cache's)")
    p.add_argument("--heldout", type=Path, required=True, help="held-out clips: lines 'path<TAB>caption'")
    p.add_argument("--only", default="image,seams", help="comma-separated: image, seams (default both)")
    p.add_argument("--clips", type=int, default=4, help="held-out clips / prompts (default 4)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of the long clips (default 8)")
    p.add_argument("--window", type=float, help="seconds per chunk (default: the training clips' duration)")
    p.add_argument("--history", type=float, help="seconds of history per chunk (default: half the window)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/sample_tasks_bench.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    encoders = load_generator(args.ckpt, map_location="cpu").cache_meta["encoders"]
    pipe = AVPipeline.from_checkpoint(args.ckpt, args.codec or encoders["codec"], args.vae or encoders["vae"],
                                      device=args.device)
    rows = _heldout(args.heldout, args.clips)
    work = args.out.parent / "sample_tasks_inputs"
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    result: dict[str, Any] = {"ckpt": str(args.ckpt), "checkpoint_sha256": pipe.checkpoint_sha256, "steps": args.steps,
                              "solver": pipe.sampler.solver, "device": args.device, "threads": args.threads,
                              "host": platform.node(), "torch": torch.__version__}
    if "image" in only:
        img = bench_image(pipe, rows, work, args.steps, args.seed)
        result["image"] = img
        ps, ev = img["psnr_db"], img["events_after_first_latent"]
        print(f"\nimage to audio-video: {img['clips']} held-out first frames, {img['duration']:g} s clips")
        print(f"{'':24}{'first-frame PSNR dB':>20}{'onsets/clip':>14}{'visual ev/clip':>16}")
        print(f"{'i2av (image given)':24}{ps['i2av']:>20.2f}{ev['i2av']['onsets']:>14.2f}{ev['i2av']['visual']:>16.2f}")
        print(f"{'t2av floor (no image)':24}{ps['t2av_floor']:>20.2f}{ev['t2av']['onsets']:>14.2f}{ev['t2av']['visual']:>16.2f}")
        print(f"{'vae round trip ceiling':24}{ps['vae_ceiling']:>20.2f}{'':>14}{'':>16}")
        print(f"{'held-out data':24}{'':>20}{ev['data']['onsets']:>14.2f}{ev['data']['visual']:>16.2f}")
    if "seams" in only:
        seams = bench_seams(pipe, [c for _, c in rows], args.duration, args.window, args.history, args.steps,
                            args.seed)
        result["seams"] = seams
        print(f"\nlong clips: {seams['clips']} x {seams['duration']:g} s, window {seams['window']:g} s, history "
              f"{seams['history']:g} s, seams at {', '.join(f'{s:g}' for s in seams['seams_s'])} s")
        print(f"{'':10}{'frame diff seam':>16}{'inside':>9}{'ratio':>7}{'all pairs':>11}{'flux seam':>11}"
              f"{'inside':>9}{'ratio':>7}{'seconds':>9}")
        for name, r in seams["rows"].items():
            print(f"{name:10}{r['video_seam']:>16.2f}{r['video_inside']:>9.2f}{r['video_ratio']:>7.2f}"
                  f"{r['video_all_pairs']:>11.2f}"
                  f"{r['audio_seam']:>11.3f}{r['audio_inside']:>9.3f}{r['audio_ratio']:>7.2f}"
                  f"{seams['seconds'][name]:>9.1f}")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
