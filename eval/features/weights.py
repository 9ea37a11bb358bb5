"""Where the feature extractors' weights are found, and the hash recorded with every number.

Each extractor's weights are looked up, in this order:

1. the command-line option (`--i3d PATH`, ...) or `WeightPaths` field;
2. the extractor's environment variable (`AVGEN_I3D`, ...);
3. the documented file name inside `$AVGEN_WEIGHTS` (a folder holding all of them);
4. the same file name inside `~/.cache/avgen/weights`.

Nothing is ever downloaded. A metric whose weights are not found is reported as not computed,
with a reason that names the option, the variable and the expected file name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from pathlib import Path

from avio import update_with_file

__all__ = ["WEIGHTS", "WeightSpec", "WeightPaths", "WeightsMissing", "resolve_weights", "weights_hash",
           "default_weights_dir"]


class WeightsMissing(FileNotFoundError):
    """The weights of a feature extractor are not where they were looked for."""


@dataclass(frozen=True)
class WeightSpec:
    """How one extractor's weights are named and found.

    Attributes:
        key: short name, also the `WeightPaths` field.
        filename: expected file (or folder) name inside the weights folder.
        what: what the file is and where it comes from (for messages and docs).
    """

    key: str
    filename: str
    what: str

    @property
    def option(self) -> str:
        """The command-line option of `avgen eval` (`--<key>`)."""
        return f"--{self.key}"

    @property
    def env(self) -> str:
        """The environment variable holding a path (`AVGEN_<KEY>`)."""
        return f"AVGEN_{self.key.upper()}"


WEIGHTS: dict[str, WeightSpec] = {
    spec.key: spec
    for spec in (
        WeightSpec("i3d", "i3d_torchscript.pt",
                   "the TorchScript I3D detector of StyleGAN-V's FVD (i3d_torchscript.pt)"),
        WeightSpec("vggish", "vggish-10086976.pth",
                   "the VGGish state dict of torchvggish (vggish-10086976.pth)"),
        WeightSpec("panns", "Cnn14_mAP=0.431.pth",
                   "the PANNs CNN14 32 kHz checkpoint (Cnn14_mAP=0.431.pth)"),
        WeightSpec("clap", "clap",
                   "a transformers ClapModel folder (save_pretrained of e.g. laion/clap-htsat-unfused)"),
        WeightSpec("clip", "clip",
                   "a transformers CLIPModel folder (save_pretrained of e.g. openai/clip-vit-base-patch32)"),
        WeightSpec("codec", "codec.pt",
                   "an audio codec file written by `avgen codec fit` (codec.pt)"),
        WeightSpec("syncnet", "syncnet_v2.model",
                   "syncnet_python's SyncNet state dict (syncnet_v2.model)"),
        WeightSpec("synchformer", "synchformer_state_dict.pth",
                   "av-benchmark's Synchformer state dict (synchformer_state_dict.pth)"),
        WeightSpec("imagebind", "imagebind_huge.pth",
                   "ImageBind's state dict (imagebind_huge.pth)"),
    )
}


def default_weights_dir() -> Path:
    """`$AVGEN_WEIGHTS` if set, else `~/.cache/avgen/weights`."""
    env = os.environ.get("AVGEN_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avgen" / "weights"


@dataclass
class WeightPaths:
    """Explicit weight locations (None: look in the environment and the weights folder)."""

    i3d: str | None = None
    vggish: str | None = None
    panns: str | None = None
    clap: str | None = None
    clip: str | None = None
    codec: str | None = None
    syncnet: str | None = None
    synchformer: str | None = None
    imagebind: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, str | os.PathLike):
                raise ValueError(f"WeightPaths.{f.name} must be a path or None, got {value!r}.")


def resolve_weights(key: str, paths: WeightPaths | None = None) -> Path:
    """The path of extractor `key`'s weights.

    Raises:
        KeyError: unknown key.
        WeightsMissing: nothing at any of the places looked at; the message lists them.
    """
    if key not in WEIGHTS:
        raise KeyError(f"unknown weights {key!r}; known: {', '.join(WEIGHTS)}.")
    spec = WEIGHTS[key]
    explicit = getattr(paths, key, None) if paths is not None else None
    # A path the user named must exist: falling back to another place would score with other weights.
    for given, said in ((explicit, f"{spec.option} {{}} does not exist; pass the path of {spec.what}"),
                        (os.environ.get(spec.env), f"{spec.env}={{}} does not exist; point it at {spec.what}")):
        if given:
            p = Path(given).expanduser()
            if not p.exists():
                raise WeightsMissing(said.format(p))
            return p
    candidates = []
    if os.environ.get("AVGEN_WEIGHTS"):
        candidates.append(Path(os.environ["AVGEN_WEIGHTS"]).expanduser() / spec.filename)
    candidates.append(Path.home() / ".cache" / "avgen" / "weights" / spec.filename)
    for p in candidates:
        if p.exists():
            return p
    looked = " or ".join(str(c) for c in candidates)
    raise WeightsMissing(
        f"weights not found: pass {spec.option} PATH, set {spec.env}, or put {spec.what} at {looked}"
    )


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def weights_hash(path: str | Path) -> str:
    """`sha256:<first 16 hex digits>` of a weights file, or of every file of a folder (by relative
    path and content, in sorted order). Cached per path, size and modification time."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        update_with_file(h, f)
    digest = f"sha256:{h.hexdigest()[:16]}"
    _HASH_CACHE[key] = digest
    return digest

