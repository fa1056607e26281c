"""Model families (importing them registers their entrypoints) and the registry/builder API."""

from . import video_resnet as video_resnet
from ._factory import create_model as create_model, from_pretrained as from_pretrained
from ._features import FeatureListNet as FeatureListNet, feature_take_indices as feature_take_indices
from ._hub import (
    WeightsError as WeightsError,
    adapt_input_conv as adapt_input_conv,
    model_config as model_config,
    read_state_dict as read_state_dict,
)
from ._pretrained import (
    HF_HUB_ORG as HF_HUB_ORG,
    ClipSpec as ClipSpec,
    PretrainedCfg as PretrainedCfg,
    load_label_names as load_label_names,
    set_derived_cfg as set_derived_cfg,
)
from ._registry import (
    get_pretrained_cfg as get_pretrained_cfg,
    is_model as is_model,
    list_aliases as list_aliases,
    list_models as list_models,
    list_pretrained as list_pretrained,
    model_entrypoint as model_entrypoint,
    resolve_model_name as resolve_model_name,
    split_model_name_tag as split_model_name_tag,
)
from .video_resnet import VideoResNet as VideoResNet
from ._timm import register_in_timm

register_in_timm()
