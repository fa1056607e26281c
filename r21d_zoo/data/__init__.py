"""The data layer: the videos a command is given, labelled datasets, WebDataset shards (pack, stream, statistics,
subsets), the synthetic dataset, per-example seeds, and the store of extracted features. Nothing here trains."""

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
    LabelOptions as LabelOptions,
    Sample as Sample,
    TrainClips as TrainClips,
    read_labelled as read_labelled,
)
from .seeds import epoch_seed as epoch_seed
