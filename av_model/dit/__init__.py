"""The audio-video diffusion transformer: config and presets, the model, parameter counts."""

from av_model.dit.config import PRESETS, DiTConfig, get_preset
from av_model.dit.model import AVDiT, DiTOutput, MoEAux
from av_model.dit.params import ParamCount, count_params

__all__ = ["PRESETS", "AVDiT", "DiTConfig", "DiTOutput", "MoEAux", "ParamCount", "count_params", "get_preset"]
