"""The inference layer: what turns clips into answers under a runtime, below every task that shows or stores them.
:mod:`.config` (which model, how clips become features, how a video's answer is made; no torch), :mod:`.features`
(the feature runner, decoding workers, one video), :mod:`.extraction` (a resumable folder of many, in this process
or on a Ray cluster: :mod:`.cluster`), :mod:`.scores` (clip and crop
averaging, two-stream fusion, evaluation metrics), :mod:`.timeline` (a video's top-k and its windows over time, and
their files), :mod:`.gradcam` (space-time Grad-CAM) and the evaluation figures."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .config import ExtractConfig as ExtractConfig, ModelSource as ModelSource, PredictConfig as PredictConfig
    from .features import FeatureRunner as FeatureRunner, extract_features as extract_features
    from .extraction import run_extraction as run_extraction
    from .gradcam import Explanation as Explanation, explain as explain, grad_cam as grad_cam
    from .scores import evaluate as evaluate, evaluate_two_stream as evaluate_two_stream, fuse_scores as fuse_scores
    from .scores import score_videos as score_videos
    from .timeline import Prediction as Prediction, Predictor as Predictor, predict as predict

_EXPORTS = {
    "ExtractConfig": ".config",
    "ModelSource": ".config",
    "PredictConfig": ".config",
    "FeatureRunner": ".features",
    "extract_features": ".features",
    "run_extraction": ".extraction",
    "Explanation": ".gradcam",
    "explain": ".gradcam",
    "grad_cam": ".gradcam",
    "evaluate": ".scores",
    "evaluate_two_stream": ".scores",
    "fuse_scores": ".scores",
    "score_videos": ".scores",
    "Prediction": ".timeline",
    "Predictor": ".timeline",
    "predict": ".timeline",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
