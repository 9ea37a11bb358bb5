"""Feature extractors of the metrics, each loading its weights from a local path.

`WEIGHTS` names every extractor's weights (option, environment variable, file name);
`resolve_weights` finds them; `extract_features` runs an extractor over a set with a progress bar.
The extractors themselves (`eval.features.i3d`, `vggish`, `panns`, `clap`, `clip`, `codec`) are
imported on use, so a missing optional dependency of one does not affect the others. The learned
sync scores have their own: `syncnet` (LSE-C/LSE-D), `synchformer` and `desync` (DeSync),
`imagebind` (the ImageBind audio-video score); each loads the official state-dict layout.
"""

from eval.features.base import FeatureExtractor, Features, Preprocessor, extract_features
from eval.features.weights import (
    WEIGHTS,
    WeightPaths,
    WeightsMissing,
    WeightSpec,
    resolve_weights,
    weights_hash,
)

__all__ = [
    "WEIGHTS",
    "FeatureExtractor",
    "Features",
    "Preprocessor",
    "WeightPaths",
    "WeightSpec",
    "WeightsMissing",
    "extract_features",
    "resolve_weights",
    "weights_hash",
]
