"""LoRA for `AVDiT`: low-rank adapters on attention, feed-forward and expert weights.

Training (`avgen fit` with a `model.lora` section) freezes every weight of the generator and adds
trainable adapters; the adapters alone are written to `<default_root_dir>/lora.safetensors`, and
`avgen sample --ckpt BASE --lora lora.safetensors [--lora-scale s]` merges them into the base.

Two kinds of adapter, one per kind of weight:

- `nn.Linear` layers (attention projections, the shared experts' SwiGLU, or any Linear named in
  `targets`) get PEFT's `lora.Linear` through `peft.inject_adapter_in_model`:
  y = W x + (alpha / r) B(A(dropout(x))).
- The stacked expert tensors `w13_ED2F` (E, D, 2F) and `w2_EFD` (E, F, D) get `ExpertLoRA`, written
  here: each expert's matrix becomes W_e + (alpha / r) A_e B_e. PEFT 0.21 does offer
  `target_parameters` for such tensors, but its `ParamWrapper` registers and removes a
  parametrization around every forward pass, which re-inserts the weight at the end of its
  module's parameter list: after the first step `parameters()` runs in another order, and what
  pairs parameters by position (the EMA's `AveragedModel`, Lightning's EMA weight swap) pairs
  the wrong tensors. It also wraps the MoE layer, hiding `update_bias`. `ExpertLoRA` is a
  parametrization registered once, before the optimizer and the EMA exist.

Expert adapters have no dropout: the update is applied to the weight, where the input cannot be
dropped (PEFT refuses dropout for the same reason); `dropout` acts on the Linear adapters only.

Shapes (legend): E experts, I input width, O output width of one expert matrix, R rank.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from av_model.dit.config import DiTConfig
from av_model.dit.model import AVDiT

__all__ = ["ADAPTER_FORMAT", "ExpertLoRA", "LoRAConfig", "LoRAFile", "apply_lora", "has_lora", "lora_state_dict",
           "merge_lora", "merge_lora_file", "read_lora_file", "save_lora"]

ADAPTER_FORMAT = "avgen-lora"
ADAPTER_NAME = "default"  # PEFT's adapter name; one adapter per model
# Linear layers of each named target group, as suffixes of module names.
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("attn.qkv", "attn.proj", "cross.q", "cross.kv", "cross.proj"),
    "feed_forward": ("moe.shared.w13", "moe.shared.w2"),
    "experts": (),  # the stacked expert tensors (ExpertLoRA), not Linear layers
}
EXPERT_WEIGHTS = ("w13_ED2F", "w2_EFD")
_LORA_KEY = re.compile(r"\.lora_[AB](\.|$)")


@dataclass
class LoRAConfig:
    """Low-rank adapters trained instead of the generator's weights.

    Attributes:
        rank: r, the rank of each update.
        alpha: the update is scaled by alpha / rank (alpha = rank: scale 1).
        dropout: dropout on the input of the Linear adapters (the expert adapters have none).
        targets: what gets adapters: "attention" (self- and cross-attention projections),
            "feed_forward" (the shared experts' SwiGLU), "experts" (each routed expert's matrices,
            and the dense presets' one feed-forward), and/or names of other Linear layers of
            `AVDiT` (a name matches a module whose name ends with it: "video_in", "adaln.1").
    """

    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["attention", "feed_forward", "experts"])

    def __post_init__(self) -> None:
        self.targets = [str(t) for t in self.targets]
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1; got {self.rank}.")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0; got {self.alpha}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1); got {self.dropout}.")
        if not self.targets:
            raise ValueError(f"lora.targets needs at least one of {sorted(TARGET_GROUPS)} or a Linear layer's name.")


class ExpertLoRA(nn.Module):
    """Parametrization W_EIO -> W_EIO + scale * A_EIR @ B_ERO: a rank-R update of each expert's matrix.

    As PEFT initializes its Linear adapters: A uniform in +-1/sqrt(I) (kaiming-uniform with a=sqrt(5)),
    B zero, so training starts from the base model exactly.
    """

    def __init__(self, num_experts: int, d_in: int, d_out: int, rank: int, alpha: float,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(num_experts, d_in, rank, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, rank, d_out, device=device, dtype=dtype))
        nn.init.uniform_(self.lora_A, -1.0 / math.sqrt(d_in), 1.0 / math.sqrt(d_in))
        self.scaling = alpha / rank

    def forward(self, w_EIO: Tensor) -> Tensor:
        delta_EIO = torch.bmm(self.lora_A, self.lora_B)  # (E, I, O)
        return w_EIO + (self.scaling * delta_EIO).to(w_EIO.dtype)


# -------------------------------------------------------------------------------- adding adapters
def _linear_targets(model: AVDiT, targets: list[str]) -> list[str]:
    """Full names of the Linear modules the targets name; an unknown name is refused."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen: list[str] = []
    for target in targets:
        suffixes = TARGET_GROUPS.get(target, (target,))
        found = [n for n in linears if any(n == s or n.endswith("." + s) for s in suffixes)]
        if not found and target not in TARGET_GROUPS:
            raise ValueError(
                f"lora.targets: {target!r} is neither a group ({', '.join(TARGET_GROUPS)}) nor the name of a "
                f"Linear layer of the model; Linear layers are e.g. {linears[:6]}."
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


def apply_lora(model: AVDiT, cfg: LoRAConfig) -> list[str]:
    """Freeze every weight of `model` and add trainable adapters where `cfg.targets` say (in place).

    Returns:
        Names of the adapted modules (Linear layers) and weights (expert tensors).

    Raises:
        ValueError: a target names nothing, or the targets select nothing in this model.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    model.requires_grad_(False)
    linears = _linear_targets(model, cfg.targets)
    adapted = list(linears)
    if linears:
        peft_cfg = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,  # type: ignore[arg-type]
                                  target_modules=linears, bias="none")
        inject_adapter_in_model(peft_cfg, model, adapter_name=ADAPTER_NAME)
    if "experts" in cfg.targets:
        for i, block in enumerate(model.block_list()):
            for name in EXPERT_WEIGHTS:
                w = getattr(block.moe, name)
                e, d_in, d_out = w.shape
                lora = ExpertLoRA(e, d_in, d_out, cfg.rank, cfg.alpha, device=w.device, dtype=w.dtype)
                parametrize.register_parametrization(block.moe, name, lora)
                adapted.append(f"blocks.{i}.moe.{name}")
    if not adapted:
        raise ValueError(f"lora.targets {cfg.targets} select no weight of this model (a dense preset has no "
                         "shared experts: its feed-forward is the target 'experts').")
    return adapted


def has_lora(model: nn.Module) -> bool:
    return any(_LORA_KEY.search(name) for name, _ in model.named_parameters())


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter tensors of `model` (names as in its state dict), on the CPU."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if _LORA_KEY.search(k)}


def merge_lora(model: AVDiT, scale: float = 1.0) -> None:
    """Add `scale` times every adapter's update to its base weight and remove the adapters (in place).

    Afterwards `model` has the plain structure and state-dict names of `AVDiT` again.
    """
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.set_scale(ADAPTER_NAME, scale)  # scaling = scale * alpha / r
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        removed = []
        for pname in list(module.parametrizations):  # type: ignore[union-attr, arg-type]
            lora = module.parametrizations[pname][0]  # type: ignore[index]
            if isinstance(lora, ExpertLoRA):
                lora.scaling *= scale
                parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
                removed.append(pname)
        # Removal registers the merged weight last; moving the others behind it again restores the
        # order MoEFeedForward defines, for code that pairs parameters by position.
        for pname in [k for k in module._parameters if k not in removed]:
            module._parameters[pname] = module._parameters.pop(pname)
    if hasattr(model, "peft_config"):  # left by `inject_adapter_in_model`
        del model.peft_config


# ------------------------------------------------------------------------------------ the file
@dataclass
class LoRAFile:
    """An adapter file: its config, the generator shape it was trained on, its base and tensors."""

    path: Path
    sha256: str
    config: LoRAConfig
    dit_config: dict[str, Any]
    base: dict[str, Any]
    tensors: dict[str, Tensor]


def save_lora(path: str | Path, model: AVDiT, cfg: LoRAConfig, base: dict[str, Any] | None = None) -> Path:
    """Write the adapters of `model` alone to a safetensors file (atomically), with their config.

    Args:
        path: the file (conventionally `<run>/lora.safetensors`).
        model: a generator with adapters (`apply_lora`).
        cfg: their config.
        base: where the base weights came from (`{"path": ..., "sha256": ...}`), checked when merging.
    """
    from safetensors.torch import save_file

    tensors = lora_state_dict(model)
    if not tensors:
        raise ValueError("the model has no LoRA adapters to save.")
    meta = {"format": ADAPTER_FORMAT, "version": "1", "lora": json.dumps(asdict(cfg)),
            "dit_config": json.dumps(model.cfg.to_dict()), "base": json.dumps(base or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_lora_file(path: str | Path) -> LoRAFile:
    """Read an adapter file written by `save_lora` (`avgen fit` with `model.lora`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a safetensors file, or not an avgen LoRA adapter.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA adapter {path} does not exist; `avgen fit` with a `model.lora` section "
                                "writes <default_root_dir>/lora.safetensors.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a file it cannot parse
        raise ValueError(f"{path} is not a LoRA adapter file (not safetensors: {err}).") from None
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an avgen LoRA adapter (format "
                         f"{meta.get('format')!r}); adapters come from `avgen fit` with a `model.lora` section.")
    return LoRAFile(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                    config=LoRAConfig(**json.loads(meta["lora"])), dit_config=json.loads(meta["dit_config"]),
                    base=json.loads(meta.get("base") or "{}"), tensors=tensors)


def merge_lora_file(model: AVDiT, path: str | Path, scale: float = 1.0) -> LoRAFile:
    """Merge the adapter file `path`, times `scale`, into the plain generator `model` (in place).

    Raises:
        ValueError: the adapter was trained on a generator of another shape, or its tensors do not
            fit the adapters its config describes.
    """
    lora = read_lora_file(path)
    want = DiTConfig.from_dict(lora.dit_config).to_dict()
    have = model.cfg.to_dict()
    differ = [f"{k}: {want[k]} (adapter) vs {have[k]} (model)" for k in want if want[k] != have.get(k)]
    if differ:
        raise ValueError(f"the LoRA adapter {path} was trained on a generator of another shape: "
                         f"{'; '.join(differ)}. Merge it into the model it was trained from ({lora.base or 'see its run'}).")
    if has_lora(model):
        raise ValueError("the model already has LoRA adapters; merge them first (merge_lora).")
    apply_lora(model, lora.config)
    own = lora_state_dict(model)
    missing = sorted(set(own) - set(lora.tensors))
    unexpected = sorted(set(lora.tensors) - set(own))
    shapes = [f"{k}: {list(lora.tensors[k].shape)} vs {list(v.shape)}" for k, v in own.items()
              if k in lora.tensors and lora.tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"the LoRA adapter {path} does not fit its own config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shapes {shapes[:5]}; the file is damaged or was edited.")
    model.load_state_dict(lora.tensors, strict=False)
    merge_lora(model, scale)
    return lora
