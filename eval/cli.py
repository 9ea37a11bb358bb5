"""`avgen eval`: automatic metrics on generated vs reference clips, with a report.

Examples:
    avgen eval --generated runs/demo/samples --reference data/synth/manifest.jsonl \\
        --reference-split heldout --metrics av_align,events,flicker,motion --out runs/demo/eval
    avgen eval --generated base=samples/base --generated moe=samples/moe --reference data/real \\
        --metrics fvd,fad_vggish,clip_score --i3d weights/i3d_torchscript.pt --out reports/cmp
    avgen eval -c configs/eval/synthetic.yaml --generated runs/demo/samples --out runs/demo/eval

Clips that cannot be read (missing, corrupt, without the video or audio a metric needs) are left
out and listed, with reasons, at the end and in report.json's "skipped"; the exit status is 2 only
when no clip is usable, for bad options, or with --strict at the first bad clip.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eval.features.weights import WEIGHTS
from eval.metrics import METRICS
from eval.protocols import PROTOCOLS
from eval.reader import EvalInputError

__all__ = ["build_parser", "main"]

# option dest -> MetricOptions field (all default to None so that only given flags override a config)
_OPTION_FIELDS = {
    "device": "device", "batch_size": "batch_size", "num_workers": "num_workers", "bootstrap": "n_boot",
    "bootstrap_fd": "n_boot_fd", "seed": "seed", "fvd_frames": "fvd_frames", "fvd_size": "fvd_size",
    "fvd_fps": "fvd_fps", "panns_window": "panns_window", "clip_frames": "clip_frames", "task": "task",
    "pair_by": "pair_by", "event_tolerance": "event_tolerance", "event_window": "event_window",
    "av_align_tolerance": "av_align_tolerance", "attr_calibration": "attr_calibration",
    "attr_panel_rows": "attr_panel_rows", "desync_duration": "desync_duration", "floor_partners": "floor_partners",
}


def _metric_help() -> str:
    lines = []
    for name, cls in METRICS.items():
        need = f"needs {WEIGHTS[cls.weight_key].option}" if cls.weight_key else "weights-free"
        lines.append(f"  {name:<11} {cls.title} ({need})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avgen eval",
        description="Automatic metrics of generated audio-video clips against a reference set: FVD, FAD "
                    "(VGGish, PANNs, CLAP, codec latents), CLIP/CLAP scores, AV-Align, the event-sync measure, "
                    "DeSync (Synchformer), LSE-C/LSE-D (SyncNet), the ImageBind audio-video score, flicker and "
                    "motion; every sync score beside its mismatched-pair floor. Prints a table (a row per system) and writes report.csv, report.json "
                    "and report.html to --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="metrics:\n" + _metric_help() + "\n\nweights are looked up in: the option, then its environment "
               f"variable ({', '.join(spec.env for spec in WEIGHTS.values())}), then "
               "$AVGEN_WEIGHTS/<file>, then ~/.cache/avgen/weights/<file>. Missing weights: the metric is "
               "reported as not computed, with the reason.",
    )
    p.add_argument("-c", "--config", help="YAML EvalConfig (configs/eval/*.yaml); flags given here override it")
    p.add_argument("--generated", action="append", metavar="[NAME=]PATH",
                   help="a generated set: folder of mp4 files (+ JSON sidecars) or manifest; repeat per system")
    p.add_argument("--reference", metavar="PATH", help="reference folder or manifest (.jsonl/.csv)")
    p.add_argument("--reference-split", metavar="SPLIT", help="use only this split of the reference manifest")
    p.add_argument("--metrics", metavar="LIST", help=f"comma-separated metrics or 'all' (default all): {','.join(METRICS)}")
    p.add_argument("--out", metavar="DIR", help="write report.csv, report.json, report.html here")
    p.add_argument("--max-clips", type=int, metavar="N", help="evaluate only the first N clips of each set")
    p.add_argument("--task", choices=["t2av", "v2a", "a2v"],
                   help="the event measure: audio onsets against events seen in the same video (t2av, default), "
                        "generated audio against the reference's true events (v2a), or events seen in the generated "
                        "video against the reference's true events (a2v)")
    p.add_argument("--pair-by", choices=["id", "prompt"],
                   help="how generated clips find their reference clip (v2a, a2v)")
    p.add_argument("--conditioning", metavar="FILE",
                   help="conditioning.json of `avgen diagnose`: its gaps join report.csv/json/html")
    p.add_argument("--protocol", choices=list(PROTOCOLS),
                   help="a published protocol: its metrics (unless --metrics) and settings; the report lists every "
                        "deviation from it (see docs/metrics.md)")
    g = p.add_argument_group("weights (local files; nothing is downloaded)")
    for spec in WEIGHTS.values():
        g.add_argument(spec.option, metavar="PATH", help=f"{spec.what} [env {spec.env}]")
    g.add_argument("--weights", action="append", metavar="KEY=PATH",
                   help=f"the same as --KEY PATH, for any of: {', '.join(WEIGHTS)} (repeatable)")
    o = p.add_argument_group("protocol and compute")
    o.add_argument("--device", help="torch device for feature extractors: auto (GPU if present), cpu, cuda, cuda:N (default auto)")
    o.add_argument("--batch-size", type=int, help="units per forward pass (default 8)")
    o.add_argument("--num-workers", type=int, help="decoding worker processes (default 0)")
    o.add_argument("--jobs", type=int, metavar="N",
                   help="processes for the per-clip work: decoding, onsets, visual events, optical flow, attribute "
                        "features (default 1; 0: one per core); the figures are the same")
    o.add_argument("--bootstrap", type=int, metavar="N", help="bootstrap resamples of per-clip metrics (default 1000)")
    o.add_argument("--bootstrap-fd", type=int, metavar="N", help="bootstrap resamples of Fréchet distances (default 50)")
    o.add_argument("--seed", type=int, help="random seed (default 0)")
    o.add_argument("--fvd-frames", type=int, help="frames per I3D window (default 16)")
    o.add_argument("--fvd-size", type=int, help="I3D frame side (default 224)")
    o.add_argument("--fvd-fps", type=float, help="resample video for FVD (default: the file's rate)")
    o.add_argument("--panns-window", type=float, metavar="S", help="seconds per PANNs embedding (default 1.0)")
    o.add_argument("--clip-frames", type=int, help="frames per clip for the CLIP score (default 8)")
    o.add_argument("--event-tolerance", type=float, metavar="S", help="onset-event match tolerance (default 0.1 s)")
    o.add_argument("--event-window", type=float, metavar="S", help="window for measuring the audio lag (default 0.5 s)")
    o.add_argument("--av-align-tolerance", type=float, metavar="S", help="AV-Align window (default one frame)")
    o.add_argument("--attr-calibration", metavar="SPLITS|MANIFEST",
                   help="clips the attribute recognisers are fitted on: splits of the reference manifest "
                        "(default train,val; evaluated clips left out) or another manifest with params")
    o.add_argument("--attr-panel-rows", type=int, metavar="N", help="prompts in the attribute frame panel (default 8)")
    o.add_argument("--desync-duration", type=float, metavar="S",
                   help="seconds of each clip read for DeSync and the ImageBind score (default 8, as av-benchmark)")
    o.add_argument("--floor-partners", type=int, metavar="N",
                   help="mismatched partners per clip for the floors of LSE and DeSync (default 20)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first clip that cannot be read (exit 2); by default such clips are left out, "
                        "listed with their reasons at the end and under 'skipped' in report.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list-metrics", action="store_true", help="list the metrics and exit")
    return p


def _config(args: argparse.Namespace) -> Any:
    from eval.runner import EvalConfig

    data: dict[str, Any] = EvalConfig.from_yaml(args.config).to_dict() if args.config else {}
    if args.config and args.protocol and args.metrics is None:
        import yaml

        raw = yaml.safe_load(open(args.config, encoding="utf-8")) or {}
        if "metrics" not in raw:
            data.pop("metrics", None)  # the protocol's metrics, not the config's defaults
    opts: dict[str, Any] = dict(data.get("options") or {})
    weights: dict[str, Any] = dict(opts.get("weights") or {})
    if args.generated:
        data["generated"] = args.generated
    for key in ("reference", "reference_split", "out", "max_clips", "conditioning", "protocol", "jobs"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.metrics is not None:
        data["metrics"] = list(METRICS) if args.metrics.strip() == "all" else args.metrics
    if args.no_progress:
        data["progress"] = False
    if args.strict:
        data["strict"] = True
    for dest, name in _OPTION_FIELDS.items():
        if getattr(args, dest) is not None:
            opts[name] = getattr(args, dest)
    for key in WEIGHTS:
        if getattr(args, key) is not None:
            weights[key] = getattr(args, key)
    for item in args.weights or []:
        key, sep, path = item.partition("=")
        if not sep or key not in WEIGHTS or not path:
            raise EvalInputError(f"--weights {item!r}: use KEY=PATH with KEY one of {', '.join(WEIGHTS)}.")
        weights[key] = path
    opts["weights"] = weights
    data["options"] = opts
    return EvalConfig.from_dict(data, where="avgen eval")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen eval`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.list_metrics:
        print(_metric_help())
        return 0
    from eval.report import print_table, write_report
    from eval.runner import evaluate

    try:
        cfg = _config(args)
        report = evaluate(cfg)
    except EvalInputError as err:
        print(f"avgen eval: error: {err}", file=sys.stderr)
        return 2
    print_table(report)
    if cfg.out:
        paths = write_report(report, cfg.out)
        print("wrote " + ", ".join(str(v) for v in paths.values()))
    if report.skipped:
        counts = {s: sum(c.system == s for c in report.skipped) for s in dict.fromkeys(c.system for c in report.skipped)}
        print(f"skipped {len(report.skipped)} clips (" + ", ".join(f"{n} of {s}" for s, n in counts.items())
              + "); the numbers above leave them out:", file=sys.stderr)
        for c in report.skipped:
            print(f"  {c.system} / {c.id}: {c.reason}", file=sys.stderr)
    return 0
