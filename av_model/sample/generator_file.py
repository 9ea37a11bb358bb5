"""The generator's files: Lightning checkpoints and exported weights, read for sampling without Lightning.

`avgen fit` writes Lightning checkpoints (`.ckpt`) in which `AVDiffusion.on_save_checkpoint` stores,
under `CHECKPOINT_KEY`, plain-data copies of the model config, the latent cache's metadata and the
sampler config; `export_generator` writes the sampling weights alone (`EXPORT_FORMAT`).
`load_generator` reads either, or a distributed checkpoint (the folder a sharded run writes), into a
`GeneratorBundle`, so sampling, diagnostics and the pipeline need neither Lightning nor the training
code. `avgen export` (`export_main`) writes any of them as one exported file.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from av_model.dit.config import DiTConfig
from av_model.dit.lora import LoRAConfig, apply_lora, merge_lora
from av_model.dit.model import AVDiT
from av_model.flow.sampling import SamplerConfig
from avio import atomic_path, sha256_file

if TYPE_CHECKING:
    from av_model.train.lit import AVDiffusion

__all__ = [
    "CHECKPOINT_KEY", "EXPORT_FORMAT", "GeneratorBundle", "export_generator", "export_main", "load_generator",
    "read_distributed_checkpoint", "read_generator_weights",
]

EXPORT_FORMAT = "avgen-dit"
CHECKPOINT_KEY = "avgen"  # where a Lightning checkpoint keeps what `load_generator` needs
META_FILE = "meta.pt"  # a distributed checkpoint's unsharded part (Lightning's `_METADATA_FILENAME`)


@dataclass
class GeneratorBundle:
    """A generator ready for sampling and what it was trained on.

    Attributes:
        model: `AVDiT` in eval mode (EMA weights when the checkpoint had them).
        cache_meta: the latent cache's metadata (geometry, rates, encoders, fingerprints).
        sampler: the sampler config stored with the model.
        sha256: hash of the checkpoint file.
        path: the checkpoint file.
    """

    model: AVDiT
    cache_meta: dict[str, Any]
    sampler: SamplerConfig
    sha256: str
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> GeneratorBundle:
    """Load a generator from a Lightning checkpoint (`.ckpt`), a distributed checkpoint (a folder, see
    `read_distributed_checkpoint`) or an exported file (`export_generator`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither (the message says what it holds).
    """
    path = Path(path)
    state, info, digest = _read(path, map_location=map_location)
    cfg = DiTConfig.from_dict(info["dit_config"])
    model = AVDiT(cfg)
    if info.get("lora"):  # a LoRA run: base weights and adapters, merged here into plain weights
        apply_lora(model, LoRAConfig(**info["lora"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the stored config (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}).")
    if info.get("lora"):
        merge_lora(model)
    model.to(map_location).eval().requires_grad_(False)
    extra = {"distill": info["distill"]} if info.get("distill") else {}  # a few-step student (`avgen distill`)
    return GeneratorBundle(model=model, cache_meta=info["cache_meta"], sampler=SamplerConfig(**info["sampler"]),
                           sha256=digest, path=path, extra=extra)


def read_generator_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """A generator file's weights (names as in `AVDiT.state_dict()`), its stored info and its sha256,
    without building a model: what a sharded model loads its shards from.

    Files are memory-mapped (`torch.load(mmap=True)`), so a tensor's bytes are read only where a rank
    copies its shard out of it; a distributed checkpoint (folder) is read whole (its weights only).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: not a generator checkpoint, or one with LoRA adapters (load those with
            `load_generator`, which merges them).
    """
    path = Path(path)
    state, info, digest = _read(path, map_location="cpu", mmap=True)
    if info.get("lora"):
        raise ValueError(f"{path} holds LoRA adapters; merge them first (`avgen export {path} merged.pt`).")
    return state, info, digest


def _read(path: Path, *, map_location: str | torch.device, mmap: bool = False,
          ) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The weights (`AVDiT` names), the stored info and the sha256 of a generator file or folder."""
    if path.is_dir():
        ckpt, digest = read_distributed_checkpoint(path), _sha256_folder(path)
    elif not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train with `avgen fit` (writes final.ckpt).")
    else:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
            raise ValueError(f"{path} is not a generator checkpoint: torch.load cannot read it ({err}).") from None
        digest = sha256_file(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a generator checkpoint (it holds a {type(ckpt).__name__}).")
    if ckpt.get("format") == EXPORT_FORMAT:
        info, state = ckpt, ckpt["state_dict"]
    elif CHECKPOINT_KEY in ckpt and "state_dict" in ckpt:
        info = ckpt[CHECKPOINT_KEY]
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    else:
        raise ValueError(
            f"{path} is neither an `avgen fit` checkpoint nor an exported generator (keys: {sorted(ckpt)[:8]})."
        )
    return state, {k: v for k, v in info.items() if k != "state_dict"}, digest


def read_distributed_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The model weights and metadata of a distributed checkpoint (a folder written by
    `ModelParallelStrategy` with `save_distributed_checkpoint: true`), as one unsharded dict shaped
    like a Lightning `.ckpt`: `state_dict` (full tensors) plus everything of its `meta.pt`.

    Optimizer states are not read, so this needs host memory for the weights only. The shards are
    read by `torch.distributed.checkpoint` without a process group, as its own `dcp_to_torch_save`
    and Lightning's `consolidate_checkpoint` read them (`_load_state_dict` with the
    `_EmptyStateDictLoadPlanner`, which builds the tensors from the checkpoint's metadata; the public
    `load` only fills keys the given dict already has), with `keys` selecting the weights.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder is not a distributed checkpoint of `avgen fit`.
    """
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"distributed checkpoint {folder} does not exist (it is a folder with a .metadata "
                                "file, one .distcp file per rank and meta.pt).")
    meta_file = folder / META_FILE
    if not (folder / ".metadata").is_file() or not meta_file.is_file():
        raise ValueError(f"{folder} is a folder but not a distributed checkpoint of `avgen fit` (it needs .metadata, "
                         f"the .distcp shards and {META_FILE}); give the checkpoint folder itself, e.g. "
                         "runs/dit/cluster_8b/final.ckpt.")
    weights: dict[str, Any] = {}
    _load_state_dict(weights, storage_reader=FileSystemReader(folder),
                     planner=_EmptyStateDictLoadPlanner(keys={"state_dict"}), no_dist=True)
    meta = torch.load(meta_file, map_location="cpu", weights_only=False)
    return {**meta, "state_dict": weights["state_dict"]}


def _sha256_folder(folder: Path) -> str:
    """One hash of a folder's files (names and contents, in name order)."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def export_generator(source: str | Path | AVDiffusion, out: str | Path) -> Path:
    """Write the sampling weights (EMA when present), config and cache metadata to one file.

    Args:
        source: a checkpoint path or a module (whose current weights are written).
        out: destination `.pt` file (written atomically).
    """
    if not isinstance(source, str | Path):  # a module
        state = {k: v.detach().cpu() for k, v in source.model.state_dict().items()}
        info = {"dit_config": source.dit_config.to_dict(), "cache_meta": source.cache_meta,
                "sampler": asdict(source.sampler_config)}
        if source.lora_config is not None:  # adapters unmerged: `load_generator` merges them
            info["lora"] = asdict(source.lora_config)
    else:
        bundle = load_generator(source)
        state = bundle.model.state_dict()
        info = {"dit_config": bundle.model.cfg.to_dict(), "cache_meta": bundle.cache_meta,
                "sampler": asdict(bundle.sampler)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save({"format": EXPORT_FORMAT, "version": 1, "state_dict": state, **info}, tmp)
    return out


def export_main(argv: list[str] | None = None) -> int:
    """`avgen export CKPT OUT`: one file with the sampling weights of any generator checkpoint."""
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="avgen export",
        description="Write a generator's sampling weights, config and cache metadata to one file (what `avgen sample "
                    "--ckpt` reads fastest). CKPT may be an `avgen fit` checkpoint, the folder of a distributed "
                    "(sharded) checkpoint, or an exported file.")
    p.add_argument("ckpt", type=Path, help="final.ckpt or checkpoints/*.ckpt of a run (file or folder)")
    p.add_argument("out", type=Path, help="the file to write, e.g. generator.pt")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        out = export_generator(args.ckpt, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"avgen export: {err}", file=sys.stderr)
        return 1
    print(f"exported {args.ckpt} -> {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
