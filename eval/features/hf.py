"""What the extractors backed by transformers models (CLIP, CLAP) share: loading a local folder,
their pooled outputs, and normalized text embeddings (`PretrainedFolderExtractor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eval.features.base import FeatureExtractor
from eval.features.weights import weights_hash
from eval.reader import EvalInputError


def load_pretrained_folder(path: Path, model_cls: Any, processor_cls: Any, device: torch.device) -> tuple[Any, Any]:
    """A transformers model (in eval mode, on `device`) and its processor from a local folder written
    by `save_pretrained`; never downloads. Raises `EvalInputError` naming what the folder lacks."""
    name = model_cls.__name__
    if not path.is_dir():
        raise EvalInputError(f"{path}: {name.removesuffix('Model').upper()} weights must be a folder written by "
                             "save_pretrained.")
    try:
        processor = processor_cls.from_pretrained(str(path), local_files_only=True)
        model = model_cls.from_pretrained(str(path), local_files_only=True).to(device).eval()
    except (OSError, ValueError) as err:
        raise EvalInputError(
            f"{path}: not a {name} folder with its processor ({err}); save both with save_pretrained."
        ) from err
    return model, processor


def pooled(out: Any) -> torch.Tensor:
    """transformers < 5 returns the embedding tensor, >= 5 an output whose pooler_output it is."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_embeddings(model: Any, processor: Any, device: torch.device, texts: list[str]) -> torch.Tensor:
    """Normalized text embeddings (B, D) of a CLIP-style model; texts longer than its context are cut."""
    tok = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
    with torch.inference_mode():
        out = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        return torch.nn.functional.normalize(pooled(out), dim=-1)


class PretrainedFolderExtractor(FeatureExtractor):
    """An extractor over a transformers model and its processor saved in a local folder.

    Args:
        path: the folder written by `save_pretrained`.
        device: where the model runs.

    A subclass names the transformers classes (`model_class`, `processor_class`: imported only when
    an extractor is built, transformers being heavy) and sets its `preprocessor`.
    """

    model_class: str
    processor_class: str

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        import transformers

        self.path = Path(path)
        self.device = torch.device(device)
        self.model, self.processor = load_pretrained_folder(
            self.path, getattr(transformers, self.model_class), getattr(transformers, self.processor_class), self.device)
        self.weight_hash = weights_hash(self.path)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Normalized text embeddings (B, D); texts longer than the model's context are cut."""
        return text_embeddings(self.model, self.processor, self.device, texts)
