"""r21d_zoo: R(2+1)D, R3D, MC3, R2D and CSN video networks with their released weights, behind one registry.

``import r21d_zoo`` is light (no torch until a name needs it): each public name below is imported from its layer the
first time it is used."""

from typing import TYPE_CHECKING

from . import models as models  # light: registers the architectures in timm's registry when timm is imported
from ._lazy import lazy_exports
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .deploy import (
        export as export,
        optimize_for_inference as optimize_for_inference,
        push_to_hub as push_to_hub,
        render_model_card as render_model_card,
        save_pretrained as save_pretrained,
    )
    from .infer.config import ExtractConfig as ExtractConfig
    from .infer.features import extract_features as extract_features
    from .infer.gradcam import grad_cam as grad_cam
    from .infer.timeline import Prediction as Prediction, Predictor as Predictor, predict as predict
    from .models import (
        ClipSpec as ClipSpec,
        FeatureListNet as FeatureListNet,
        PretrainedCfg as PretrainedCfg,
        VideoModel as VideoModel,
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

_EXPORTS = {
    "export": ".deploy",
    "optimize_for_inference": ".deploy",
    "push_to_hub": ".deploy",
    "render_model_card": ".deploy",
    "save_pretrained": ".deploy",
    "grad_cam": ".infer.gradcam",
    "Prediction": ".infer.timeline",
    "Predictor": ".infer.timeline",
    "predict": ".infer.timeline",
    "ExtractConfig": ".infer.config",
    "extract_features": ".infer.features",
    "ClipSpec": ".models",
    "FeatureListNet": ".models",
    "PretrainedCfg": ".models",
    "VideoModel": ".models",
    "VideoResNet": ".models",
    "WeightsError": ".models",
    "create_model": ".models",
    "from_pretrained": ".models",
    "get_pretrained_cfg": ".models",
    "inflate": ".models",
    "is_model": ".models",
    "list_models": ".models",
    "list_pretrained": ".models",
    "VideoClassificationTransform": ".video",
    "VideoDecodeError": ".video",
    "VideoReader": ".video",
    "create_transform": ".video",
    "open_video": ".video",
    "read_clip": ".video",
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
