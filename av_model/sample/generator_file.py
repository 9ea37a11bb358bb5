"""The generator's files: Lightning checkpoints and exported weights, read for sampling without Lightning.

`avgen fit` writes Lightning checkpoints (`.ckpt`) in which `AVDiffusion.on_save_checkpoint` stores,
under `CHECKPOINT_KEY`, plain-data copies of the model config, the latent cache's metadata and the
sampler config; `export_generator` writes the sampling weights alone (`EXPORT_FORMAT`).
`load_generator` reads either into a `GeneratorBundle`, so sampling, diagnostics and the pipeline
need neither Lightning nor the training code.
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

__all__ = ["CHECKPOINT_KEY", "EXPORT_FORMAT", "GeneratorBundle", "export_generator", "load_generator"]

EXPORT_FORMAT = "avgen-dit"
CHECKPOINT_KEY = "avgen"  # where a Lightning checkpoint keeps what `load_generator` needs


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
    """Load a generator from a Lightning checkpoint (`.ckpt`) or an exported file (`export_generator`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither (the message says what it holds).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a distributed checkpoint (a folder, one file per rank); gather it into one file with "
            f"`python -m lightning.pytorch.utilities.consolidate_checkpoint {path} --output_file final_full.ckpt`, "
            "or train with save_distributed_checkpoint: false."
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train with `avgen fit` (writes final.ckpt).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise ValueError(f"{path} is not a generator checkpoint: torch.load cannot read it ({err}).") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a generator checkpoint (it holds a {type(ckpt).__name__}).")
    if ckpt.get("format") == EXPORT_FORMAT:
        info, state = ckpt, ckpt["state_dict"]
    elif CHECKPOINT_KEY in ckpt and "state_dict" in ckpt:
        info = ckpt[CHECKPOINT_KEY]
        prefix = "model."
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    else:
        raise ValueError(
            f"{path} is neither an `avgen fit` checkpoint nor an exported generator (keys: {sorted(ckpt)[:8]})."
        )
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
                           sha256=sha256_file(path), path=path, extra=extra)


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
