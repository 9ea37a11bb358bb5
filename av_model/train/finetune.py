"""Fine-tuning from a trained generator: weights-only initialization, freezing, parameter groups.

All three are set from the `model` section of an `avgen fit` config (docs/training.md, "Fine-tuning"):

    model:
      init_from: runs/dit/tiny_moe/final.ckpt   # weights only; the optimizer starts fresh
      init_skip: [audio_in., audio_out.]        # weight-name prefixes that keep their fresh initialization
      freeze: ["video_*", "blocks.*.attn.*"]    # glob patterns of weights that do not train
      param_groups:                             # learning rates per group (first matching group wins)
        - {name: audio, params: ["audio_*"], lr: 1.0e-3}

Weight names are those of `AVDiT.state_dict()` (`blocks.0.attn.qkv.weight`, `audio_in.bias`, ...).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from av_model.train.meta_init import copy_full_into

__all__ = ["InitReport", "ParamGroupConfig", "assign_groups", "freeze_parameters", "load_init_weights"]


# ------------------------------------------------------------------------------ weights-only init
@dataclass
class InitReport:
    """What `load_init_weights` did.

    Attributes:
        path: the checkpoint the weights came from.
        sha256: its hash.
        loaded: names of the tensors copied from the checkpoint.
        skipped: model tensors under an `init_skip` prefix (they keep their fresh initialization).
        resized: those of `skipped` whose shape differs from the checkpoint's: name -> (checkpoint, model).
        ignored: checkpoint tensors under an `init_skip` prefix that the model does not have.
    """

    path: str
    sha256: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"model.init_from {self.path}: loaded {len(self.loaded)} tensors (sha256 {self.sha256[:12]})"]
        if self.skipped:
            lines.append(f"  kept fresh (init_skip): {_abbrev(self.skipped)}")
        for name, (have, want) in self.resized.items():
            lines.append(f"  resized: {name} {list(have)} in the checkpoint -> {list(want)} here (fresh)")
        if self.ignored:
            lines.append(f"  ignored checkpoint tensors (init_skip): {_abbrev(self.ignored)}")
        return "\n".join(lines)


def _abbrev(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _module_prefix(name: str) -> str:
    """`blocks.0.attn.qkv.weight` -> `blocks.0.attn.qkv.`: the prefix to suggest for `init_skip`."""
    return name.rsplit(".", 1)[0] + "." if "." in name else name


def load_init_weights(model: nn.Module, state: dict[str, torch.Tensor], skip: list[str], path: str,
                      sha256: str) -> InitReport:
    """Copy a checkpoint's weights into `model` by name, refusing anything that does not fit.

    Every model tensor must be in the checkpoint with the same shape, and every checkpoint tensor
    in the model, unless its name starts with one of the `skip` prefixes: such model tensors keep
    their fresh initialization and such checkpoint tensors are ignored.

    Args:
        model: the freshly built model (its state-dict names are the reference).
        state: the checkpoint's weights, named like `model.state_dict()`.
        skip: weight-name prefixes left out of the load.
        path, sha256: where `state` came from (for the messages and the report).

    Raises:
        ValueError: missing, unexpected or differently shaped tensors outside `skip` (all listed, with
            their shapes and the `init_skip` prefixes that would accept them), or a `skip` prefix
            that names nothing.
    """
    own = model.state_dict()
    for prefix in skip:
        if not any(k.startswith(prefix) for k in (*own, *state)):
            tops = sorted({k.split(".", 1)[0] + "." for k in own})
            raise ValueError(f"model.init_skip prefix {prefix!r} matches no weight of the model or of {path}; "
                             f"top-level prefixes are {tops} (e.g. 'audio_in.' or 'blocks.3.').")

    def skipped(name: str) -> bool:
        return any(name.startswith(p) for p in skip)

    missing = [k for k in own if k not in state and not skipped(k)]
    unexpected = [k for k in state if k not in own and not skipped(k)]
    mismatched = {k: (tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
                  if k in state and not skipped(k) and state[k].shape != v.shape}
    if missing or unexpected or mismatched:
        lines = [f"model.init_from {path} does not fit this model:"]
        for k, (have, want) in mismatched.items():
            lines.append(f"  shape differs: {k}: {list(have)} in the checkpoint, {list(want)} in the model")
        lines += [f"  missing from the checkpoint: {k} {list(own[k].shape)}" for k in missing[:20]]
        lines += [f"  not in the model: {k} {list(state[k].shape)}" for k in unexpected[:20]]
        if len(missing) > 20 or len(unexpected) > 20:
            lines.append(f"  ({len(missing)} missing and {len(unexpected)} unexpected in all)")
        prefixes = sorted({_module_prefix(k) for k in (*mismatched, *missing, *unexpected)})
        lines.append(
            "Either build the model the checkpoint was trained as (model.preset and model.overrides), or let "
            "these weights start fresh by adding their prefixes to model.init_skip, e.g. "
            f"`--model.init_skip '{_abbrev_list(prefixes)}'`."
        )
        raise ValueError("\n".join(lines))
    report = InitReport(path=path, sha256=sha256)
    with torch.no_grad():
        for k, v in own.items():
            if skipped(k):
                report.skipped.append(k)
                if k in state and state[k].shape != v.shape:
                    report.resized[k] = (tuple(state[k].shape), tuple(v.shape))
            else:
                copy_full_into(v, state[k])  # a sharded (FSDP2) model takes its own shard of the tensor
                report.loaded.append(k)
    report.ignored = [k for k in state if k not in own]
    return report


def _abbrev_list(prefixes: list[str], limit: int = 12) -> str:
    # A bracketed list as jsonargparse reads it on the command line.
    shown = prefixes if len(prefixes) <= limit else prefixes[:limit] + ["..."]
    return "[" + ", ".join(shown) + "]"


# ------------------------------------------------------------------------------------- freezing
def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _no_match_error(what: str, pattern: str, names: list[str]) -> ValueError:
    tops = sorted({n.split(".", 1)[0] for n in names})
    return ValueError(
        f"{what} pattern {pattern!r} matches no weight; patterns are globs over weight names such as "
        f"{names[0]!r} (`*` also crosses dots), and the top-level names are {tops}."
    )


def freeze_parameters(model: nn.Module, patterns: list[str]) -> list[str]:
    """Turn off the gradient of every parameter whose name matches one of the glob `patterns`.

    Returns:
        The names of the frozen parameters.

    Raises:
        ValueError: a pattern matches no parameter (a typo would otherwise train everything).
    """
    names = [n for n, _ in model.named_parameters()]
    for p in patterns:
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            raise _no_match_error("model.freeze", p, names)
    frozen = []
    for name, param in model.named_parameters():
        if _matches(name, patterns):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


# ----------------------------------------------------------------------------- parameter groups
@dataclass
class ParamGroupConfig:
    """A group of trainable weights with its own learning rate (and optionally weight decay).

    Attributes:
        name: the group's name (in the optimizer's param groups and the learning-rate logs).
        params: glob patterns over weight names (`audio_*`, `blocks.*.moe.*`); a weight belongs
            to the first group that matches it, the rest to the group "default".
        lr: peak learning rate of the group; None: `optimizer.lr`. Warm-up and cosine decay
            scale it like the default group's.
        weight_decay: None: `optimizer.weight_decay`. Biases, norms and embeddings never decay.
    """

    name: str
    params: list[str]
    lr: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        self.params = [str(p) for p in self.params]
        if not self.name or self.name == "default":
            raise ValueError(f"model.param_groups: a group needs a name other than 'default'; got {self.name!r}.")
        if not self.params:
            raise ValueError(f"model.param_groups[{self.name}]: `params` needs at least one pattern.")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"model.param_groups[{self.name}].lr must be > 0 or null; got {self.lr}.")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"model.param_groups[{self.name}].weight_decay must be >= 0; got {self.weight_decay}.")


def assign_groups(named: list[tuple[str, nn.Parameter]], groups: list[ParamGroupConfig]
                  ) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Split trainable `(name, parameter)` pairs by group: the first group whose patterns match wins.

    Returns:
        group name -> its pairs, in the order of `groups`, then "default" (possibly empty).

    Raises:
        ValueError: a group's patterns match no trainable weight, or two groups share a name.
    """
    if len({g.name for g in groups}) != len(groups):
        raise ValueError(f"model.param_groups: group names must differ; got {[g.name for g in groups]}.")
    out: dict[str, list[tuple[str, nn.Parameter]]] = {g.name: [] for g in groups}
    out["default"] = []
    for name, param in named:
        group = next((g.name for g in groups if _matches(name, g.params)), "default")
        out[group].append((name, param))
    for g in groups:
        if not out[g.name]:
            example = named[0][0] if named else "(no trainable weight)"
            raise ValueError(
                f"model.param_groups[{g.name}]: the patterns {g.params} match no trainable weight (frozen weights "
                f"and weights of an earlier group do not count); patterns are globs over names such as {example!r}."
            )
    return out


def file_exists(path: str | Path) -> Path:
    """`path` as a Path, or a FileNotFoundError saying what `model.init_from` expects."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"model.init_from {p} does not exist; give a checkpoint of `avgen fit` (final.ckpt, "
            "checkpoints/last.ckpt) or a file of `export_generator`."
        )
    return p
