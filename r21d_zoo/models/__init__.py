"""Model families (importing them registers their entrypoints) and the registry/builder API."""

from . import video_resnet as video_resnet
from ._factory import create_model as create_model, from_pretrained as from_pretrained
from ._features import FeatureListNet as FeatureListNet, feature_take_indices as feature_take_indices
from ._hub import (
    WeightsError as WeightsError,
    adapt_input_conv as adapt_input_conv,
    push_to_hub as push_to_hub,
    read_state_dict as read_state_dict,
    save_pretrained as save_pretrained,
)
from ._pretrained import PretrainedCfg as PretrainedCfg, load_label_names as load_label_names
from ._registry import (
    get_pretrained_cfg as get_pretrained_cfg,
    is_model as is_model,
    list_aliases as list_aliases,
    list_models as list_models,
    list_pretrained as list_pretrained,
    model_entrypoint as model_entrypoint,
    split_model_name_tag as split_model_name_tag,
)
from .video_resnet import VideoResNet as VideoResNet
