"""The data layer: the videos a command is given, labelled datasets, WebDataset shards (pack, stream, statistics,
subsets), the synthetic dataset, per-example seeds, and the store of extracted features. Nothing here trains."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .features import (
        FEATURE_FORMATS as FEATURE_FORMATS,
        FeatureFormat as FeatureFormat,
        FeatureStore as FeatureStore,
        VideoFeatures as VideoFeatures,
        feature_format as feature_format,
        write_features as write_features,
    )
    from .inputs import VideoItem as VideoItem, default_workers as default_workers, discover_videos as discover_videos
    from .labelled import (
        EvalClips as EvalClips,
        LabelledVideos as LabelledVideos,
        Sample as Sample,
        TrainClips as TrainClips,
        read_labelled as read_labelled,
    )
    from .options import LabelOptions as LabelOptions
    from .seeds import epoch_seed as epoch_seed

_EXPORTS = {
    "FEATURE_FORMATS": ".features",
    "FeatureFormat": ".features",
    "FeatureStore": ".features",
    "VideoFeatures": ".features",
    "feature_format": ".features",
    "write_features": ".features",
    "VideoItem": ".inputs",
    "default_workers": ".inputs",
    "discover_videos": ".inputs",
    "EvalClips": ".labelled",
    "LabelledVideos": ".labelled",
    "LabelOptions": ".options",
    "Sample": ".labelled",
    "TrainClips": ".labelled",
    "read_labelled": ".labelled",
    "epoch_seed": ".seeds",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
