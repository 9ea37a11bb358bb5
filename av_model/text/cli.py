"""`avgen text`: list the text encoders available offline, encode prompts into the embedding cache."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TEXT_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "deberta-v2", "t5", "mt5", "umt5",
                    "clip", "clip_text_model", "siglip", "siglip_text_model"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen text",
        description="Frozen text encoders of the generator. Encoders load only from local files: the packaged "
        "MiniLM ('minilm'), a model folder, or a hub id already in the local Hugging Face cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list the text encoders usable offline")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    enc = sub.add_parser(
        "encode",
        help="encode prompts into the on-disk embedding cache",
        description="Encode prompts once into <cache-dir>/<encoder fingerprint>/, so training and sampling "
        "read the embeddings instead of running the encoder. Prompts already cached are skipped.",
    )
    enc.add_argument("--encoder", action="append", default=None, metavar="SPEC",
                     help="'minilm', a model folder, or a cached hub id; repeat for several encoders "
                     "(default: minilm)")
    enc.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    enc.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    enc.add_argument("--manifest", type=Path, help="a clip manifest (JSONL/CSV); its captions are encoded")
    enc.add_argument("--cache-dir", type=Path, required=True, help="folder of the embedding cache")
    enc.add_argument("--max-length", type=int, default=77, help="token limit per prompt (default 77)")
    enc.add_argument("--batch-size", type=int, default=64, help="prompts per encoder forward (default 64)")
    enc.add_argument("--device", default="cpu", help="device to run the encoder on (default cpu)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list(args.json)
    return _encode(args)


def _list(as_json: bool) -> int:
    from av_model.text.encoders import MINILM, resolve_encoder_path

    rows = []
    try:
        path = resolve_encoder_path(MINILM)
        rows.append(_row(MINILM, path, "packaged"))
    except ValueError as err:
        print(f"note: {err}", file=sys.stderr)
    rows += _cached_encoders()
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "type", "width", "source", "path")
    table = [header] + [tuple(str(r[k]) for k in ("name", "model_type", "width", "source", "path")) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if len(rows) == 1:
        print("\nNo other text encoders in the local Hugging Face cache; pass a model folder to use one.")
    return 0


def _row(name: str, path: Path, source: str) -> dict[str, object]:
    config = json.loads((path / "config.json").read_text())
    text_cfg = config.get("text_config", config)  # CLIP/SigLIP keep the text tower's size apart
    width = text_cfg.get("hidden_size") or text_cfg.get("d_model") or "?"
    return {"name": name, "model_type": config.get("model_type", "?"), "width": width, "source": source,
            "path": str(path)}


def _cached_encoders() -> list[dict[str, object]]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache folder at all is the common case on a fresh machine
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        snapshot = max(repo.revisions, key=lambda r: r.last_modified).snapshot_path
        if not (snapshot / "config.json").is_file():
            continue
        row = _row(repo.repo_id, snapshot, "hf-cache")
        if row["model_type"] in TEXT_MODEL_TYPES:
            rows.append(row)
    return rows


def _encode(args: argparse.Namespace) -> int:
    prompts = list(args.prompt)
    if args.prompts_file is not None:
        if not args.prompts_file.is_file():
            print(f"avgen text encode: prompts file {args.prompts_file} does not exist.", file=sys.stderr)
            return 2
        prompts += [line.strip() for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if args.manifest is not None:
        from avio import load_manifest

        try:
            prompts += [e.caption for e in load_manifest(args.manifest)]
        except (OSError, ValueError) as err:
            print(f"avgen text encode: cannot read the manifest: {err}", file=sys.stderr)
            return 2
    if not prompts:
        print("avgen text encode: no prompts; give --prompt, --prompts-file or --manifest.", file=sys.stderr)
        return 2
    from av_model.text.cache import CachedTextEncoder
    from av_model.text.encoders import load_text_encoder

    try:
        encoder = load_text_encoder(args.encoder or ["minilm"], max_length=args.max_length, device=args.device,
                                    cache_dir=args.cache_dir)
    except ValueError as err:
        print(f"avgen text encode: {err}", file=sys.stderr)
        return 2
    assert isinstance(encoder, CachedTextEncoder)
    encoder.batch_size = max(1, args.batch_size)
    unique = list(dict.fromkeys(prompts))
    new = encoder.prefill(unique, progress=True)
    print(
        f"{len(unique)} unique prompts: {new} encoded, {len(unique) - new} already cached\n"
        f"encoders: {', '.join(encoder.names)} (widths {encoder.dims})\n"
        f"fingerprint: {encoder.fingerprint}\ncache: {encoder.cache_dir}"
    )
    return 0
