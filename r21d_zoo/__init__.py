"""r21d_zoo: R(2+1)D, R3D, MC3, R2D and CSN video networks with their released weights, behind one registry."""

from ._version import __version__ as __version__
from .deploy import export as export, optimize_for_inference as optimize_for_inference
from .deploy import push_to_hub as push_to_hub, render_model_card as render_model_card
from .deploy import save_pretrained as save_pretrained
from .jobs.explain import grad_cam as grad_cam
from .jobs.predict import Prediction as Prediction, predict as predict
from .jobs.extract import ExtractConfig as ExtractConfig, extract_features as extract_features
from .models import (
    ClipSpec as ClipSpec,
    FeatureListNet as FeatureListNet,
    PretrainedCfg as PretrainedCfg,
    VideoResNet as VideoResNet,
    WeightsError as WeightsError,
    create_model as create_model,
    from_pretrained as from_pretrained,
    get_pretrained_cfg as get_pretrained_cfg,
    inflate as inflate,
    is_model as is_model,
    list_models as list_models,
    list_pretrained as list_pretrained,
)
from .video import (
    VideoClassificationTransform as VideoClassificationTransform,
    VideoDecodeError as VideoDecodeError,
    VideoReader as VideoReader,
    create_transform as create_transform,
    open_video as open_video,
    read_clip as read_clip,
)
