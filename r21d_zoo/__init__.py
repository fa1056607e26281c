"""r21d_zoo: R(2+1)D, R3D, MC3, R2D and CSN video networks with their released weights, behind one registry."""

__version__ = "0.1.0"

from .models import (
    FeatureListNet as FeatureListNet,
    PretrainedCfg as PretrainedCfg,
    VideoResNet as VideoResNet,
    WeightsError as WeightsError,
    create_model as create_model,
    from_pretrained as from_pretrained,
    get_pretrained_cfg as get_pretrained_cfg,
    is_model as is_model,
    list_models as list_models,
    list_pretrained as list_pretrained,
    push_to_hub as push_to_hub,
    save_pretrained as save_pretrained,
)
from .features import ExtractConfig as ExtractConfig, extract_features as extract_features
from .inflate import inflate as inflate
from .optimize import optimize_for_inference as optimize_for_inference
from .transforms import VideoClassificationTransform as VideoClassificationTransform
from .transforms import create_transform as create_transform, resolve_data_config as resolve_data_config
from .video import VideoDecodeError as VideoDecodeError, VideoReader as VideoReader, read_clip as read_clip
